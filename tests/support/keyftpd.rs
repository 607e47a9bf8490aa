//! Test support: run the real `keyftpd` binary on 127.0.0.1:0, and a tiny
//! raw FTP client for byte-level tests.
#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

/// The account every spawned server has.
pub const USER: &str = "u";
/// Its password.
pub const PASS: &str = "pw";

/// A temp dir holding an empty `root/` to serve (a sibling path outside
/// the root stays available for escape tests). Keep the TempDir alive.
pub fn temp_root() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    std::fs::create_dir(&root).expect("mkdir root");
    (dir, root)
}

/// keyftpd with `extra` args on a fresh [`temp_root`].
pub fn server(extra: &[&str]) -> (tempfile::TempDir, Keyftpd) {
    let (dir, root) = temp_root();
    let srv = Keyftpd::start(&root, extra);
    (dir, srv)
}

/// A running keyftpd; killed (by PID) on drop.
pub struct Keyftpd {
    child: Child,
    pub addr: SocketAddr,
    pub root: PathBuf,
    pub log: PathBuf,
}

impl Keyftpd {
    /// Starts keyftpd on `root` with `--user u` (password `pw`) and `extra` args.
    pub fn start(root: &Path, extra: &[&str]) -> Keyftpd {
        let mut args = vec!["--user", USER, "--auth-delay-ms", "200"];
        args.extend_from_slice(extra);
        Keyftpd::start_raw(root, &args)
    }

    /// Starts keyftpd on `root`, 127.0.0.1:0, with exactly `args` besides.
    pub fn start_raw(root: &Path, args: &[&str]) -> Keyftpd {
        static N: AtomicUsize = AtomicUsize::new(0);
        let log = std::env::temp_dir().join(format!(
            "keyftpd-test-{}-{}.log",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let log_file = std::fs::File::create(&log).expect("create log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_keyftpd"))
            .arg("--root")
            .arg(root)
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("KEYFTPD_PASSWORD", PASS)
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .spawn()
            .expect("spawn keyftpd");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("keyftpd did not print its address");
            }
        };
        let Some(addr) = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
        else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "unexpected first line {line:?}; log: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        Keyftpd {
            child,
            addr,
            root: root.to_path_buf(),
            log,
        }
    }

    /// The PID of the server process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the server hard (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits (bounded) for a clean exit; returns its success.
    pub fn terminate(&mut self) -> bool {
        // SAFETY: signalling our own child by PID.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        for _ in 0..200 {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
        false
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A logged-in raw client.
    pub fn login(&self) -> Ctrl {
        let mut c = Ctrl::connect(self.addr);
        assert_eq!(c.cmd(&format!("USER {USER}")).0, 331);
        assert_eq!(c.cmd(&format!("PASS {PASS}")).0, 230);
        c
    }

    /// A logged-in suppaftp client in binary mode.
    pub fn suppaftp(&self) -> suppaftp::FtpStream {
        let mut ftp = suppaftp::FtpStream::connect_timeout(self.addr, Duration::from_secs(10))
            .expect("connect");
        ftp.get_ref()
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        ftp.login(USER, PASS).expect("login");
        ftp.transfer_type(suppaftp::types::FileType::Binary)
            .expect("TYPE I");
        ftp
    }
}

impl Drop for Keyftpd {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A raw control connection.
pub struct Ctrl {
    pub r: BufReader<TcpStream>,
    pub w: TcpStream,
}

impl Ctrl {
    /// Connects and reads the 220 greeting.
    pub fn connect(addr: SocketAddr) -> Ctrl {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let w = s.try_clone().expect("clone");
        let mut c = Ctrl {
            r: BufReader::new(s),
            w,
        };
        let (code, text) = c.read_reply();
        assert_eq!(code, 220, "{text}");
        c
    }

    /// Reads one (possibly multi-line) reply: code and full text.
    pub fn read_reply(&mut self) -> (u16, String) {
        self.try_read_reply().expect("read reply")
    }

    /// Reads one reply; Err on EOF or timeout.
    pub fn try_read_reply(&mut self) -> io::Result<(u16, String)> {
        let mut all = String::new();
        let mut first: Option<String> = None;
        loop {
            let mut line = String::new();
            if self.r.read_line(&mut line)? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "eof"));
            }
            all.push_str(&line);
            let code = line.get(..3).unwrap_or("").to_string();
            let sep = line.as_bytes().get(3).copied();
            match &first {
                None => {
                    if sep == Some(b'-') {
                        first = Some(code);
                    } else {
                        return Ok((code.parse().unwrap_or(0), all));
                    }
                }
                Some(c) => {
                    if *c == code && sep == Some(b' ') {
                        return Ok((code.parse().unwrap_or(0), all));
                    }
                }
            }
        }
    }

    /// Sends raw bytes.
    pub fn send_raw(&mut self, b: &[u8]) {
        self.w.write_all(b).expect("send");
    }

    /// Sends a command line and reads the reply.
    pub fn cmd(&mut self, line: &str) -> (u16, String) {
        self.send_raw(format!("{line}\r\n").as_bytes());
        self.read_reply()
    }

    /// EPSV: the data port the server announces.
    pub fn epsv_port(&mut self) -> u16 {
        let (code, text) = self.cmd("EPSV");
        assert_eq!(code, 229, "{text}");
        text.split("|||")
            .nth(1)
            .and_then(|t| t.split('|').next())
            .and_then(|p| p.parse().ok())
            .expect("EPSV port")
    }

    /// EPSV and connect the data socket.
    pub fn data(&mut self) -> TcpStream {
        let port = self.epsv_port();
        let addr = SocketAddr::new(self.w.peer_addr().expect("peer").ip(), port);
        let d = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("data connect");
        d.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        d
    }

    /// Uploads `data` with `verb` (`STOR name`/`APPE name`); returns the final reply.
    pub fn upload(&mut self, verb_and_name: &str, data: &[u8]) -> (u16, String) {
        let mut d = self.data();
        let (code, text) = self.cmd(verb_and_name);
        assert_eq!(code, 150, "{verb_and_name}: {text}");
        d.write_all(data).expect("send data");
        drop(d);
        self.read_reply()
    }

    /// Downloads `RETR name`; returns the bytes and the final reply code.
    pub fn download(&mut self, name: &str) -> (Vec<u8>, u16) {
        let mut d = self.data();
        let (code, text) = self.cmd(&format!("RETR {name}"));
        assert_eq!(code, 150, "RETR {name}: {text}");
        let mut buf = Vec::new();
        d.read_to_end(&mut buf).expect("read data");
        (buf, self.read_reply().0)
    }

    /// Runs a listing command (MLSD/LIST/NLST [path]) and returns its lines.
    pub fn listing(&mut self, cmd: &str) -> Vec<String> {
        let mut d = self.data();
        let (code, text) = self.cmd(cmd);
        assert_eq!(code, 150, "{cmd}: {text}");
        let mut s = String::new();
        d.read_to_string(&mut s).expect("read listing");
        assert_eq!(self.read_reply().0, 226);
        s.lines().map(str::to_string).collect()
    }
}

/// Deterministic pseudo-random bytes.
pub fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 8) as u8
        })
        .collect()
}

/// The `0x%08X` key of `data`.
pub fn key_of(data: &[u8]) -> String {
    format!("0x{:08X}", crc32fast::hash(data))
}

/// Sets SO_LINGER 0 so that dropping the socket sends a RST (a broken connection).
pub fn reset_on_close(s: &TcpStream) {
    use std::os::fd::AsRawFd;
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: valid fd and a linger struct of the right size.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// Parses the size out of a 350 same-name prompt.
pub fn prompt_size(text: &str) -> u64 {
    keyfs::key::parse_same_name_prompt(text).unwrap_or_else(|| panic!("not a prompt: {text}"))
}

/// Waits for the server log to contain `needle` (bounded).
pub fn wait_log(srv: &Keyftpd, needle: &str) -> bool {
    for _ in 0..100 {
        if srv.log_text().contains(needle) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A TCP connection to `to` from the loopback address `src` (any of
/// 127.0.0.0/8 works on Linux): another host, as far as the server can tell.
pub fn connect_from_addr(src: std::net::Ipv4Addr, to: SocketAddr) -> io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    s.bind(&SocketAddr::from((src, 0)).into())?;
    s.connect_timeout(&to.into(), Duration::from_secs(10))?;
    Ok(s.into())
}

/// A raw client connected from `src` (greeting read).
pub fn ctrl_from(src: std::net::Ipv4Addr, to: SocketAddr) -> io::Result<Ctrl> {
    let s = connect_from_addr(src, to)?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut c = Ctrl {
        r: BufReader::new(s.try_clone()?),
        w: s,
    };
    let (code, text) = c.try_read_reply()?;
    if code != 220 {
        return Err(io::Error::other(format!("greeting: {text}")));
    }
    Ok(c)
}

/// Raises this process's open-file limit to its hard limit (tests that
/// hold a thousand sockets).
pub fn raise_nofile() {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: get/set our own limits with a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// The number of threads of process `pid`.
pub fn threads_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Threads:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}
