//! Strangers cannot lock users out: idle sockets, password guessing from
//! many connections, bans, and bursts of connections, against a real keyftpd.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use support::keyftpd::{
    connect_from_addr, ctrl_from, pattern, raise_nofile, server, temp_root, threads_of, Ctrl,
    Keyftpd, PASS, USER,
};

/// Idle connections held open by a thread: never a command, reopened when
/// the server closes them (if asked), for at most two minutes.
struct Holder {
    stop: Arc<AtomicBool>,
    held: Arc<AtomicUsize>,
    greeted: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl Holder {
    fn start(to: SocketAddr, sources: Vec<Ipv4Addr>, n: usize, reopen: bool) -> Holder {
        let stop = Arc::new(AtomicBool::new(false));
        let held = Arc::new(AtomicUsize::new(0));
        let greeted = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let (st, he, gr, cl) = (stop.clone(), held.clone(), greeted.clone(), closed.clone());
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            let mut socks: Vec<Option<(TcpStream, bool)>> = (0..n).map(|_| None).collect();
            let mut first = true;
            while !st.load(Ordering::SeqCst) && Instant::now() < deadline {
                let mut reopened = 0;
                for (i, slot) in socks.iter_mut().enumerate() {
                    match slot {
                        None if first || (reopen && reopened < 200) => {
                            if let Ok(s) = connect_from_addr(sources[i % sources.len()], to) {
                                let _ = s.set_nonblocking(true);
                                *slot = Some((s, false));
                                reopened += 1;
                            }
                        }
                        None => {}
                        Some((s, greeted)) => {
                            let mut buf = [0u8; 256];
                            match s.read(&mut buf) {
                                Ok(0) => {
                                    *slot = None;
                                    cl.fetch_add(1, Ordering::SeqCst);
                                }
                                Ok(k) => {
                                    if !*greeted && buf[..k].starts_with(b"220") {
                                        *greeted = true;
                                        gr.fetch_add(1, Ordering::SeqCst);
                                    }
                                }
                                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                                Err(_) => {
                                    *slot = None;
                                    cl.fetch_add(1, Ordering::SeqCst);
                                }
                            }
                        }
                    }
                }
                first = false;
                he.store(socks.iter().flatten().count(), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Holder {
            stop,
            held,
            greeted,
            closed,
            thread: Some(thread),
        }
    }

    /// Waits (bounded) until `f` holds for the counters.
    fn wait(&self, what: &str, f: impl Fn(&Holder) -> bool) {
        let t = Instant::now();
        while !f(self) {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "{what}: held {} greeted {} closed {}",
                self.held.load(Ordering::SeqCst),
                self.greeted.load(Ordering::SeqCst),
                self.closed.load(Ordering::SeqCst)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Logs in from 127.0.0.1, uploads and downloads `len` bytes.
fn real_user_round_trip(srv: &Keyftpd, name: &str, len: usize) {
    let data = pattern(len, len as u32);
    let mut c = srv.login();
    assert_eq!(c.upload(&format!("STOR {name}"), &data).0, 226);
    let (got, code) = c.download(name);
    assert_eq!(code, 226);
    assert!(got == data, "{name}: downloaded bytes differ");
    assert_eq!(c.cmd("QUIT").0, 221);
}

fn loopback(a: u8, b: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, a, b)
}

#[test]
fn a_thousand_idle_sockets_take_no_threads_and_lock_no_one_out() {
    raise_nofile();
    let (_d, srv) = server(&["--max-pending", "1100", "--max-pending-per-ip", "1100"]);
    let holder = Holder::start(srv.addr, vec![loopback(0, 1)], 1000, false);
    // Every one of them is served (greeted), not left in the kernel's queue.
    holder.wait("1000 greeted", |h| h.greeted.load(Ordering::SeqCst) >= 1000);
    let threads = threads_of(srv.pid());
    assert!(threads <= 8, "{threads} threads for 1000 idle sockets");
    real_user_round_trip(&srv, "f.bin", 1 << 20);
    assert_eq!(holder.held.load(Ordering::SeqCst), 1000);
    assert_eq!(holder.closed.load(Ordering::SeqCst), 0);
}

#[test]
fn idle_sockets_reopened_from_many_addresses_do_not_lock_out_a_user() {
    raise_nofile();
    // Default caps: 256 waiting to log in, 16 per address.
    let (_d, srv) = server(&[]);
    let sources: Vec<Ipv4Addr> = (1..=100).map(|i| loopback(1, i)).collect();
    let holder = Holder::start(srv.addr, sources, 1000, true);
    // The server keeps 256 of them and closes the rest, which are reopened.
    holder.wait("idle ones closed", |h| {
        h.closed.load(Ordering::SeqCst) >= 700
    });
    let before = holder.closed.load(Ordering::SeqCst);
    for i in 0..3 {
        real_user_round_trip(&srv, &format!("f{i}.bin"), 64 << 10);
    }
    // The holder kept reopening meanwhile, and the server stayed small.
    holder.wait("reopened", |h| h.closed.load(Ordering::SeqCst) > before);
    let threads = threads_of(srv.pid());
    assert!(threads <= 8, "{threads} threads");
}

#[test]
fn sixty_four_idle_connections_do_not_get_users_421() {
    let (_d, srv) = server(&[]);
    let idle: Vec<TcpStream> = (0..64)
        .filter_map(|_| TcpStream::connect(srv.addr).ok())
        .collect();
    assert_eq!(idle.len(), 64);
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..5 {
        let mut c = srv.login();
        assert_eq!(c.cmd("NOOP").0, 200);
    }
    // Logged-in users at once, too.
    let users: Vec<Ctrl> = (0..8).map(|_| srv.login()).collect();
    assert_eq!(users.len(), 8);
    drop(idle);
}

#[test]
fn commands_sent_with_the_password_are_served_after_login() {
    let (_d, srv) = server(&[]);
    let mut c = Ctrl::connect(srv.addr);
    c.send_raw(format!("USER {USER}\r\nPASS {PASS}\r\nPWD\r\nNOOP\r\n").as_bytes());
    assert_eq!(c.read_reply().0, 331);
    assert_eq!(c.read_reply().0, 230);
    assert_eq!(c.read_reply().0, 257);
    assert_eq!(c.read_reply().0, 200);
    // Before login, only the session commands.
    let mut c = Ctrl::connect(srv.addr);
    assert_eq!(c.cmd("FEAT").0, 211);
    assert_eq!(c.cmd("HELP").0, 214);
    assert_eq!(c.cmd("EPSV").0, 530);
}

/// keyftpd with its own `--auth-delay-ms` among `args`.
fn server_with_delay(args: &[&str]) -> (tempfile::TempDir, Keyftpd) {
    let (d, root) = temp_root();
    let mut all = vec!["--user", USER];
    all.extend_from_slice(args);
    (d, Keyftpd::start_raw(&root, &all))
}

/// Failed password checks from `src` in the server log.
fn checks_from(srv: &Keyftpd, src: Ipv4Addr) -> usize {
    let needle = format!("from {src}:");
    srv.log_text()
        .lines()
        .filter(|l| l.contains("failed login for") && l.contains(&needle))
        .count()
}

/// True when `s` has data (or EOF) within `ms`.
fn readable(s: &TcpStream, ms: i32) -> bool {
    use std::os::fd::AsRawFd;
    let mut p = libc::pollfd {
        fd: s.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd on the stack.
    unsafe { libc::poll(&mut p, 1, ms) > 0 }
}

/// Guesses passwords from `src` on `conns` parallel connections (each
/// reconnects when closed) until `end`.
fn guess(srv: &Keyftpd, src: Ipv4Addr, conns: usize, end: Instant) {
    std::thread::scope(|s| {
        for _ in 0..conns {
            s.spawn(move || {
                while Instant::now() < end {
                    let Ok(mut c) = ctrl_from(src, srv.addr) else {
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    };
                    // Every wait ends at `end` (in short slices: a long socket
                    // timeout fires up to a quarter second late), so no
                    // connection outlives the window.
                    let reply = |c: &mut Ctrl| {
                        while c.r.buffer().is_empty() && !readable(c.r.get_ref(), 20) {
                            if Instant::now() >= end {
                                return 0;
                            }
                        }
                        c.try_read_reply().map(|r| r.0).unwrap_or(0)
                    };
                    while Instant::now() < end {
                        if c.w
                            .write_all(format!("USER {USER}\r\n").as_bytes())
                            .is_err()
                            || reply(&mut c) != 331
                            || c.w.write_all(b"PASS guess\r\n").is_err()
                            || reply(&mut c) != 530
                        {
                            break;
                        }
                    }
                }
            });
        }
    });
}

/// The bound the issue asks for: fifty connections of one address get no
/// more password checks in a window than one connection does.
#[test]
fn fifty_parallel_connections_guess_no_faster_than_one() {
    // All fifty are admitted (no per-address cap): the gate alone limits them.
    let (_d, srv) = server_with_delay(&["--auth-delay-ms", "100", "--max-pending-per-ip", "64"]);
    let (one, fifty) = (loopback(0, 2), loopback(0, 3));
    if connect_from_addr(one, srv.addr).is_err() {
        eprintln!("cannot bind 127.0.0.2; skipping");
        return;
    }
    // One connection first, then fifty, each for the same window.
    let window = Duration::from_secs(3);
    guess(&srv, one, 1, Instant::now() + window);
    guess(&srv, fifty, 50, Instant::now() + window);
    std::thread::sleep(Duration::from_millis(200));
    let (n1, n50) = (checks_from(&srv, one), checks_from(&srv, fifty));
    // Checks at 0, 0.1, 0.3, 0.7, 1.5 s (the wait doubles from 100 ms);
    // the next is due at 3.1 s: at most 5 in 3 s, plus one in flight.
    eprintln!("password checks in {window:?}: one connection {n1}, fifty {n50}");
    assert!(n1 >= 3, "one connection: {n1} checks");
    assert!(n50 <= 6, "50 connections: {n50} checks in {window:?}");
    assert!(n50 <= n1 + 1, "one: {n1}, fifty: {n50}");
    // A user from another address is not slowed down.
    let t = Instant::now();
    let mut c = srv.login();
    assert_eq!(c.cmd("NOOP").0, 200);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

#[test]
fn an_address_is_banned_after_repeated_failures() {
    let (_d, srv) = server_with_delay(&[
        "--auth-delay-ms",
        "10",
        "--ban-after",
        "3",
        "--ban-secs",
        "60",
    ]);
    let bad = loopback(0, 4);
    let Ok(mut c) = ctrl_from(bad, srv.addr) else {
        eprintln!("cannot bind 127.0.0.4; skipping");
        return;
    };
    for _ in 0..2 {
        assert_eq!(c.cmd(&format!("USER {USER}")).0, 331);
        assert_eq!(c.cmd("PASS wrong").0, 530);
    }
    assert_eq!(c.cmd(&format!("USER {USER}")).0, 331);
    assert_eq!(c.cmd("PASS wrong").0, 421);
    // New connections from it are refused at once, even with the right password.
    let s = connect_from_addr(bad, srv.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut text = String::new();
    let _ = (&s).read_to_string(&mut text);
    assert!(
        text.starts_with("421 ") && text.contains("banned"),
        "{text}"
    );
    // Others are not.
    let mut ok = srv.login();
    assert_eq!(ok.cmd("NOOP").0, 200);
}

/// The backlog of the listening socket, from `ss` (Send-Q of a LISTEN socket).
fn listen_backlog(port: u16) -> Option<u64> {
    let out = std::process::Command::new("ss")
        .args(["-ltnH", &format!("sport = :{port}")])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace().nth(2)?.parse().ok()
}

#[test]
fn a_burst_of_500_connections_is_greeted() {
    raise_nofile();
    let (_d, srv) = server(&["--max-sessions", "1000", "--max-pending", "1000"]);
    let somaxconn: u64 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(4096);
    assert_eq!(listen_backlog(srv.addr.port()), Some(somaxconn));
    // 500 non-blocking connects at once, from 50 addresses (10 each).
    use socket2::{Domain, Socket, Type};
    let mut socks = Vec::new();
    for i in 0..500u32 {
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        s.bind(&SocketAddr::from((loopback(2, 1 + (i / 10) as u8), 0)).into())
            .expect("bind");
        s.set_nonblocking(true).expect("nonblocking");
        match s.connect(&srv.addr.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => panic!("connect {i}: {e}"),
        }
        socks.push((TcpStream::from(s), Vec::new()));
    }
    let t = Instant::now();
    let bound = Duration::from_secs(20);
    loop {
        let mut waiting = 0;
        for (s, got) in socks.iter_mut() {
            if got.ends_with(b"\r\n") {
                continue;
            }
            let mut buf = [0u8; 128];
            match s.read(&mut buf) {
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == ErrorKind::NotConnected => {}
                Err(e) => panic!("read: {e}"),
            }
            if !got.ends_with(b"\r\n") {
                waiting += 1;
            }
        }
        if waiting == 0 {
            break;
        }
        assert!(
            t.elapsed() < bound,
            "{waiting} of 500 not greeted in {bound:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    for (_, got) in &socks {
        assert!(got.starts_with(b"220 "), "{}", String::from_utf8_lossy(got));
    }
    let mut w = socks.pop().map(|(s, _)| s).expect("one");
    let _ = w.write_all(b"QUIT\r\n");
}

#[test]
fn the_limits_have_their_documented_defaults() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keyftpd"))
        .arg("--help")
        .output()
        .expect("keyftpd --help");
    let help = String::from_utf8_lossy(&out.stdout).replace('\n', " ");
    for (flag, default) in [
        ("--login-timeout", "10"),
        ("--max-pending", "256"),
        ("--max-pending-per-ip", "16"),
        ("--ban-after", "10"),
        ("--ban-secs", "600"),
        ("--login-rate", "10"),
    ] {
        let at = help
            .find(&format!("{flag} <"))
            .unwrap_or_else(|| panic!("{flag} missing: {help}"));
        let rest = &help[at..];
        let end = rest.find("[default: ").map(|i| &rest[i + 10..]);
        assert!(
            end.is_some_and(|e| e.starts_with(&format!("{default}]"))),
            "{flag}: {rest:.200}"
        );
    }
}
