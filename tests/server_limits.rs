//! Bad input and limits against a real keyftpd: path traversal, symlinks
//! out of the root, NUL bytes, over-long names and lines, the session cap,
//! idle timeout, data connections from another host, and a full disk.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::FromRawFd;
use std::time::{Duration, Instant};

use support::keyftpd::{key_of, pattern, server, Ctrl, Keyftpd};

#[test]
fn traversal_and_absolute_paths_stay_in_the_root() {
    let (d, srv) = server(&[]);
    std::fs::write(d.path().join("secret"), b"outside").expect("write");
    let mut c = srv.login();
    assert_eq!(c.cmd("RETR ../secret").0, 550);
    assert_eq!(c.cmd("RETR ../../../../etc/passwd").0, 550);
    assert_eq!(c.cmd("SIZE /../secret").0, 550);
    assert_eq!(c.cmd("CWD ../../..").0, 250);
    assert_eq!(c.cmd("PWD").1.trim(), "257 \"/\" is the current directory");
    assert_eq!(c.upload("STOR ../escape", b"x").0, 226);
    assert!(!d.path().join("escape").exists());
    assert!(srv.root.join("escape").exists());
    assert_eq!(c.cmd("MKD /../../made").0, 257);
    assert!(srv.root.join("made").is_dir());
}

#[test]
fn symlinks_out_of_the_root_are_refused() {
    let (d, srv) = server(&[]);
    let outside = d.path().join("outside");
    std::fs::create_dir(&outside).expect("mkdir");
    std::fs::write(outside.join("f"), b"secret").expect("write");
    std::os::unix::fs::symlink(&outside, srv.root.join("out")).expect("symlink");
    std::os::unix::fs::symlink(outside.join("f"), srv.root.join("outf")).expect("symlink");
    std::fs::write(srv.root.join("in"), b"inside").expect("write");
    std::os::unix::fs::symlink("in", srv.root.join("inlink")).expect("symlink");
    let mut c = srv.login();
    assert_eq!(c.cmd("CWD out").0, 550);
    assert_eq!(c.cmd("RETR out/f").0, 550);
    assert_eq!(c.cmd("RETR outf").0, 550);
    assert_eq!(c.cmd("SIZE outf").0, 550);
    assert_eq!(c.cmd("XCRC outf").0, 550);
    let _d = c.data();
    assert_eq!(c.cmd("STOR out/new").0, 550);
    assert_eq!(c.cmd("STOR outf").0, 550);
    assert_eq!(c.cmd("MLSD out").0, 550);
    assert!(!outside.join("new").exists());
    assert_eq!(
        std::fs::read(outside.join("f")).ok(),
        Some(b"secret".to_vec())
    );
    let names = c.listing("NLST");
    assert!(
        !names.iter().any(|n| n == "out" || n == "outf"),
        "{names:?}"
    );
    // A symlink that stays inside works.
    let (got, code) = c.download("inlink");
    assert_eq!((got, code), (b"inside".to_vec(), 226));
}

#[test]
fn nul_control_bytes_and_long_names_are_refused() {
    let (_d, srv) = server(&[]);
    let mut c = srv.login();
    c.send_raw(b"MKD a\0b\r\n");
    assert_eq!(c.read_reply().0, 553);
    c.send_raw(b"RETR x\0../../etc/passwd\r\n");
    assert_eq!(c.read_reply().0, 553);
    c.send_raw(b"MKD a\x01b\r\n");
    assert_eq!(c.read_reply().0, 553);
    assert_eq!(c.cmd(&format!("MKD {}", "n".repeat(256))).0, 553);
    assert_eq!(c.cmd(&format!("MKD {}", "n".repeat(255))).0, 257);
    assert_eq!(c.cmd("NOOP").0, 200);
    // Only the one good directory (metadata lives in attributes now).
    assert_eq!(
        std::fs::read_dir(&srv.root).map(|d| d.count()).ok(),
        Some(1)
    );
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

#[test]
fn an_over_long_line_gets_500_without_memory_growth() {
    let (_d, srv) = server(&[]);
    let mut c = srv.login();
    assert_eq!(c.cmd("NOOP").0, 200);
    let before = rss_kb(srv.pid());
    let chunk = vec![b'A'; 1 << 20];
    let mut w = c.w.try_clone().expect("clone");
    let writer = std::thread::spawn(move || {
        for _ in 0..32 {
            if w.write_all(&chunk).is_err() {
                return;
            }
        }
        let _ = w.write_all(b"\r\nNOOP\r\n");
    });
    assert_eq!(c.read_reply().0, 500);
    let _ = writer.join();
    assert_eq!(c.read_reply().0, 200);
    let after = rss_kb(srv.pid());
    assert!(
        after < before + 8 * 1024,
        "RSS grew from {before} kB to {after} kB"
    );
    // And the server is still up for others.
    let mut c2 = srv.login();
    assert_eq!(c2.cmd("NOOP").0, 200);
}

#[test]
fn sessions_are_capped() {
    let (_d, srv) = server(&["--max-sessions", "2"]);
    let a = srv.login();
    let _b = srv.login();
    let s = TcpStream::connect(srv.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut buf = String::new();
    let _ = (&s).read_to_string(&mut buf);
    assert!(buf.starts_with("421 "), "{buf:?}");
    drop(a);
    // The slot frees up once a session ends.
    let t = Instant::now();
    loop {
        let s = TcpStream::connect(srv.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut greeting = [0u8; 4];
        let _ = (&s).read_exact(&mut greeting);
        if &greeting == b"220 " {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "slot never freed");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn idle_sessions_time_out() {
    let (_d, srv) = server(&["--idle-timeout", "1"]);
    let mut c = srv.login();
    let t = Instant::now();
    let (code, _) = c.read_reply();
    assert_eq!(code, 421);
    assert!(t.elapsed() >= Duration::from_millis(900));
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert!(c.try_read_reply().is_err(), "closed after 421");
}

/// Connects from 127.0.0.2 (another host as far as the server can tell).
fn connect_from(src: [u8; 4], to: SocketAddr) -> Option<TcpStream> {
    // SAFETY: plain socket calls on a fresh fd that we own, handed to TcpStream.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        if fd < 0 {
            return None;
        }
        let stream = TcpStream::from_raw_fd(fd);
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        sa.sin_family = libc::AF_INET as libc::sa_family_t;
        sa.sin_addr.s_addr = u32::from_ne_bytes(src);
        if libc::bind(
            fd,
            &sa as *const libc::sockaddr_in as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        ) != 0
        {
            return None;
        }
        let SocketAddr::V4(to) = to else { return None };
        sa.sin_port = to.port().to_be();
        sa.sin_addr.s_addr = u32::from_ne_bytes(to.ip().octets());
        if libc::connect(
            fd,
            &sa as *const libc::sockaddr_in as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        ) != 0
        {
            return None;
        }
        Some(stream)
    }
}

#[test]
fn data_connections_from_another_host_are_refused() {
    let (_d, srv) = server(&[]);
    let mut c = srv.login();
    let port = c.epsv_port();
    let data_addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Some(mut thief) = connect_from([127, 0, 0, 2], data_addr) else {
        eprintln!("cannot bind 127.0.0.2; skipping");
        return;
    };
    c.send_raw(b"RETR nothing-yet\r\n");
    assert_eq!(c.read_reply().0, 550);
    c.send_raw(b"STOR stolen\r\n");
    let _ = thief.write_all(b"injected");
    std::thread::sleep(Duration::from_millis(300));
    let mut d = TcpStream::connect(data_addr).expect("connect");
    assert_eq!(c.read_reply().0, 150);
    d.write_all(b"genuine").expect("send");
    drop(d);
    assert_eq!(c.read_reply().0, 226);
    drop(thief);
    assert_eq!(
        std::fs::read(srv.root.join("stolen")).ok(),
        Some(b"genuine".to_vec())
    );
    assert!(support::keyftpd::wait_log(
        &srv,
        "refused data connection from 127.0.0.2"
    ));
}

#[test]
fn disk_full_gets_452_and_a_recorded_partial() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).expect("mkdir");
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&mnt)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("cannot mount tmpfs (not root?); skipping");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mnt.clone());
    let root = mnt.join("root");
    std::fs::create_dir(&root).expect("mkdir root");
    let srv = Keyftpd::start(&root, &[]);
    let data = pattern(3 << 20, 9);
    let mut c = srv.login();
    assert_eq!(c.cmd(&format!("KEY {}", key_of(&data))).0, 230);
    let mut d = c.data();
    assert_eq!(c.cmd("STOR big.bin").0, 150);
    let _ = d.write_all(&data);
    drop(d);
    let (code, text) = c.read_reply();
    assert_eq!(code, 452, "{text}");
    let (code, text) = c.cmd("MLST big.bin");
    assert_eq!(code, 250);
    assert!(text.contains("x.keystate=partial;"), "{text}");
    let size = std::fs::metadata(root.join("big.bin"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert!(size > 0 && size < 1 << 20, "{size}");
    // The server is fine: the partial's CRC matches its bytes, and DELE frees the space.
    let (_, text) = c.cmd("XCRC big.bin");
    assert_eq!(
        keyfs::key::parse_xcrc_reply(&text).ok(),
        Some(crc32fast::hash(&data[..size as usize]))
    );
    assert_eq!(c.cmd("DELE big.bin").0, 250);
    assert_eq!(c.upload("STOR small", b"fits").0, 226);
    drop(c);
    drop(srv);
}

#[test]
fn clients_that_never_log_in_are_closed_even_while_talking() {
    let (_d, srv) = server(&["--login-timeout", "1", "--idle-timeout", "60"]);
    let mut c = Ctrl::connect(srv.addr);
    let t = Instant::now();
    // NOOPs keep an idle timer happy; the login timer counts from connect.
    let mut closed = None;
    while t.elapsed() < Duration::from_secs(10) {
        let (code, _) = c.cmd("NOOP");
        if code == 421 {
            closed = Some(t.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let at = closed.expect("421 within 10 s");
    assert!(at >= Duration::from_millis(800), "{at:?}");
    assert!(c.try_read_reply().is_err(), "closed after 421");
    // A logged-in session is not bound by it.
    let mut ok = srv.login();
    std::thread::sleep(Duration::from_millis(1600));
    assert_eq!(ok.cmd("NOOP").0, 200);
}

#[test]
fn cwd_tells_a_missing_directory_from_a_file() {
    let (_d, srv) = server(&[]);
    std::fs::write(srv.root.join("f"), b"x").expect("write");
    let mut c = srv.login();
    let (code, text) = c.cmd("CWD nowhere");
    assert_eq!(code, 550);
    assert!(text.contains("No such directory"), "{text}");
    let (code, text) = c.cmd("CWD f");
    assert_eq!(code, 550);
    assert!(text.contains("Not a directory"), "{text}");
}
