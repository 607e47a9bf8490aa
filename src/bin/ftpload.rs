//! ftpload: many concurrent FTP sessions against one server, for the load
//! row of `scripts/bench`. Every session connects, logs in and waits until
//! all sessions are logged in (or have failed); at that moment the
//! processes given with `--watch` are measured (processes, threads, RSS,
//! PSS of each process tree); then every session uploads a small file
//! (EPSV + STOR), downloads it back (EPSV + RETR), compares, and quits.
//! Prints one `key=value` line. Bounded: every socket wait has a timeout
//! and the whole run a deadline.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "ftpload",
    about = "Concurrent FTP sessions for load measurements"
)]
struct Cli {
    /// Server control address.
    #[arg(long)]
    addr: SocketAddr,
    #[arg(long)]
    user: String,
    /// Environment variable holding the password.
    #[arg(long, default_value = "FTPLOAD_PASSWORD")]
    password_env: String,
    /// Concurrent sessions.
    #[arg(long, default_value_t = 1000)]
    sessions: usize,
    /// Bytes per uploaded file.
    #[arg(long, default_value_t = 4096)]
    size: usize,
    /// PIDs whose process trees are measured while all sessions are logged in.
    #[arg(long)]
    watch: Vec<u32>,
    /// Spread the sessions over this many source addresses (127.0.1.1, ...;
    /// loopback servers only), as users come from many hosts.
    #[arg(long, default_value_t = 1)]
    sources: u8,
    /// Give up on the whole run after this many seconds.
    #[arg(long, default_value_t = 120)]
    deadline: u64,
}

type Res<T> = Result<T, String>;

struct Ctl {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Ctl {
    fn reply(&mut self) -> Res<(u16, String)> {
        let mut first: Option<String> = None;
        loop {
            let mut line = String::new();
            match self.r.read_line(&mut line) {
                Ok(0) => return Err("connection closed".into()),
                Ok(_) => {}
                Err(e) => return Err(format!("read: {e}")),
            }
            let code = line.get(..3).unwrap_or("").to_string();
            let sep = line.as_bytes().get(3).copied();
            match &first {
                None if sep == Some(b'-') => first = Some(code),
                None => return Ok((code.parse().unwrap_or(0), line)),
                Some(c) if *c == code && sep == Some(b' ') => {
                    return Ok((code.parse().unwrap_or(0), line))
                }
                Some(_) => {}
            }
        }
    }

    fn cmd(&mut self, line: &str, want: u16) -> Res<String> {
        self.w
            .write_all(format!("{line}\r\n").as_bytes())
            .map_err(|e| format!("send: {e}"))?;
        let (code, text) = self.reply()?;
        if code != want {
            let shown = if line.starts_with("PASS") {
                "PASS"
            } else {
                line
            };
            return Err(format!("{shown}: {}", text.trim()));
        }
        Ok(text)
    }

    fn data(&mut self, addr: SocketAddr) -> Res<TcpStream> {
        let text = self.cmd("EPSV", 229)?;
        let port: u16 = text
            .split("|||")
            .nth(1)
            .and_then(|t| t.split('|').next())
            .and_then(|p| p.parse().ok())
            .ok_or("bad EPSV reply")?;
        // From the control connection's own address: servers accept data
        // connections only from it.
        let src = self.w.local_addr().map_err(|e| e.to_string())?;
        let to = SocketAddr::new(addr.ip(), port);
        let d = (|| -> std::io::Result<TcpStream> {
            use socket2::{Domain, Socket, Type};
            let s = Socket::new(Domain::for_address(to), Type::STREAM, None)?;
            s.bind(&SocketAddr::new(src.ip(), 0).into())?;
            s.connect_timeout(&to.into(), TIMEOUT)?;
            Ok(s.into())
        })()
        .map_err(|e| format!("data connect: {e}"))?;
        d.set_read_timeout(Some(TIMEOUT))
            .map_err(|e| e.to_string())?;
        Ok(d)
    }
}

const TIMEOUT: Duration = Duration::from_secs(30);

/// Counts of logged-in and failed sessions, for the "all logged in" moment,
/// and whether the sessions may go on (after the measurement).
struct Gate {
    state: Mutex<(usize, usize, bool)>,
    cv: Condvar,
    n: usize,
}

impl Gate {
    fn mark(&self, logged_in: bool) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if logged_in {
            s.0 += 1;
        } else {
            s.1 += 1;
        }
        self.cv.notify_all();
    }

    /// Lets the sessions go on.
    fn open(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.2 = true;
        self.cv.notify_all();
    }

    /// Waits until the gate is opened, or `until`.
    fn wait_open(&self, until: Instant) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        while !s.2 {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            s = match self.cv.wait_timeout(s, left) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }

    /// Waits until every session is logged in or failed, or `until`.
    fn wait(&self, until: Instant) -> (usize, usize) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        while s.0 + s.1 < self.n {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            s = match self.cv.wait_timeout(s, left) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
        (s.0, s.1)
    }
}

fn pattern(len: usize, seed: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31) ^ seed.wrapping_mul(2_654_435_761)) as u8)
        .collect()
}

/// Connects from the `i`-th source address (see `--sources`).
fn connect(cli: &Cli, i: usize) -> std::io::Result<TcpStream> {
    if cli.sources <= 1 || !cli.addr.ip().is_loopback() || !cli.addr.is_ipv4() {
        return TcpStream::connect_timeout(&cli.addr, TIMEOUT);
    }
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    let host = 1 + (i % usize::from(cli.sources)) as u8;
    s.bind(&SocketAddr::from(([127, 0, 1, host], 0)).into())?;
    s.connect_timeout(&cli.addr.into(), TIMEOUT)?;
    Ok(s.into())
}

fn session(cli: &Cli, pass: &str, i: usize, gate: &Gate, end: Instant) -> Res<()> {
    let s = connect(cli, i);
    let s = match s {
        Ok(s) => s,
        Err(e) => {
            gate.mark(false);
            return Err(format!("connect: {e}"));
        }
    };
    let login = (|| -> Res<Ctl> {
        s.set_read_timeout(Some(TIMEOUT))
            .map_err(|e| e.to_string())?;
        let w = s.try_clone().map_err(|e| e.to_string())?;
        let mut c = Ctl {
            r: BufReader::new(s),
            w,
        };
        let (code, text) = c.reply()?;
        if code != 220 {
            return Err(format!("greeting: {}", text.trim()));
        }
        c.cmd(&format!("USER {}", cli.user), 331)?;
        c.cmd(&format!("PASS {pass}"), 230)?;
        c.cmd("TYPE I", 200)?;
        Ok(c)
    })();
    gate.mark(login.is_ok());
    let mut c = login?;
    // Everyone is logged in at once here: the measured moment.
    gate.wait_open(end);
    let data = pattern(cli.size, i);
    let name = format!("load-{i}.bin");
    let mut d = c.data(cli.addr)?;
    c.cmd(&format!("STOR {name}"), 150)?;
    d.write_all(&data).map_err(|e| format!("STOR data: {e}"))?;
    drop(d);
    let (code, text) = c.reply()?;
    if code != 226 {
        return Err(format!("STOR: {}", text.trim()));
    }
    let mut d = c.data(cli.addr)?;
    c.cmd(&format!("RETR {name}"), 150)?;
    let mut got = Vec::new();
    d.read_to_end(&mut got)
        .map_err(|e| format!("RETR data: {e}"))?;
    let (code, text) = c.reply()?;
    if code != 226 {
        return Err(format!("RETR: {}", text.trim()));
    }
    if got != data {
        return Err("downloaded bytes differ".into());
    }
    let _ = c.cmd("QUIT", 221);
    Ok(())
}

/// Processes, threads, RSS and PSS (KiB) of the tree rooted at `root`.
fn tree_usage(root: u32) -> (u64, u64, u64, u64) {
    let mut parent: HashMap<u32, u32> = HashMap::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // The fields after the command name, which is in parentheses.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            parent.insert(pid, ppid);
        }
    }
    let in_tree = |mut p: u32| {
        for _ in 0..64 {
            if p == root {
                return true;
            }
            match parent.get(&p) {
                Some(&pp) if pp != 0 => p = pp,
                _ => return false,
            }
        }
        false
    };
    let field = |text: &str, key: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let (mut procs, mut threads, mut rss, mut pss) = (0, 0, 0, 0);
    for &pid in parent.keys() {
        if !in_tree(pid) {
            continue;
        }
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let smaps =
            std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
        procs += 1;
        threads += field(&status, "Threads:");
        rss += field(&status, "VmRSS:");
        pss += field(&smaps, "Pss:");
    }
    (procs, threads, rss, pss)
}

fn main() -> ExitCode {
    let cli = Arc::new(Cli::parse());
    let Ok(pass) = std::env::var(&cli.password_env) else {
        eprintln!("ftpload: set the password in {}", cli.password_env);
        return ExitCode::FAILURE;
    };
    let pass = Arc::new(pass);
    // The servers before any session: the base for the per-session figures.
    let before: Vec<_> = cli.watch.iter().map(|&p| tree_usage(p)).collect();
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs(cli.deadline);
    let gate = Arc::new(Gate {
        state: Mutex::new((0, 0, false)),
        cv: Condvar::new(),
        n: cli.sessions,
    });
    let ok = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
    let mut threads = Vec::new();
    for i in 0..cli.sessions {
        let (cli, pass, g, ok, errors) = (
            cli.clone(),
            pass.clone(),
            gate.clone(),
            ok.clone(),
            errors.clone(),
        );
        let t = std::thread::Builder::new()
            .stack_size(128 << 10)
            .spawn(move || match session(&cli, &pass, i, &g, end) {
                Ok(()) => {
                    ok.fetch_add(1, Ordering::SeqCst);
                }
                Err(e) => {
                    let mut m = errors.lock().unwrap_or_else(|p| p.into_inner());
                    *m.entry(e).or_insert(0) += 1;
                }
            });
        match t {
            Ok(t) => threads.push(t),
            Err(e) => {
                eprintln!("ftpload: thread {i}: {e}");
                gate.mark(false);
            }
        }
    }
    let (logged_in, _) = gate.wait(end);
    let login_secs = t0.elapsed().as_secs_f64();
    let mut usage = String::new();
    for (&pid, (_, _, base_rss, base_pss)) in cli.watch.iter().zip(&before) {
        let (procs, thr, rss, pss) = tree_usage(pid);
        usage.push_str(&format!(
            " pid{pid}_procs={procs} pid{pid}_threads={thr} pid{pid}_rss_kib={rss} pid{pid}_pss_kib={pss} pid{pid}_idle_rss_kib={base_rss} pid{pid}_idle_pss_kib={base_pss}"
        ));
    }
    gate.open();
    for t in threads {
        let _ = t.join();
    }
    let errors = errors.lock().unwrap_or_else(|p| p.into_inner());
    let mut errs: Vec<_> = errors.iter().collect();
    errs.sort_by(|a, b| b.1.cmp(a.1));
    println!(
        "sessions={} logged_in_at_once={logged_in} served={} failed={} login_secs={login_secs:.2} total_secs={:.2}{usage}",
        cli.sessions,
        ok.load(Ordering::SeqCst),
        cli.sessions - ok.load(Ordering::SeqCst),
        t0.elapsed().as_secs_f64()
    );
    for (e, n) in errs.iter().take(5) {
        eprintln!("ftpload: {n} x {e}");
    }
    ExitCode::SUCCESS
}
