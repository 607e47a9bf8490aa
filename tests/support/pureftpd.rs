//! A real pure-ftpd for tests: foreground, on 127.0.0.1 with a free port, a
//! virtual user in a puredb (SHA-512 crypt hash: pure-pw's default argon2
//! costs about 2 s per login), chrooted to a temp root, killed by PID on drop.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keyfs::transport::Endpoint;

pub const USER: &str = "tuser";
pub const PASSWORD: &str = "secret";
/// The uid pure-ftpd runs the virtual user as (nobody).
const UID: u32 = 65534;

pub struct PureFtpd {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn run(cmd: &mut Command) -> std::io::Result<()> {
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(())
}

impl PureFtpd {
    /// Starts a server with an empty root.
    pub fn start() -> std::io::Result<PureFtpd> {
        let dir = tempfile::tempdir()?;
        let root = dir.path().join("root");
        std::fs::create_dir(&root)?;
        std::os::unix::fs::chown(&root, Some(UID), Some(UID))?;
        let hash = Command::new("openssl")
            .args(["passwd", "-6", "-salt", "keyfstst", PASSWORD])
            .output()?;
        let hash = String::from_utf8_lossy(&hash.stdout).trim().to_string();
        let line = format!(
            "{USER}:{hash}:{UID}:{UID}::{}/./::::::::::::\n",
            root.display()
        );
        let passwd = dir.path().join("passwd");
        std::fs::write(&passwd, line)?;
        let db = dir.path().join("users.pdb");
        run(Command::new("pure-pw")
            .arg("mkdb")
            .arg(&db)
            .arg("-f")
            .arg(&passwd))?;
        let mut s = PureFtpd {
            child: None,
            port: 0,
            dir,
        };
        s.spawn()?;
        Ok(s)
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        let db = self.dir.path().join("users.pdb");
        let mut last_err = None;
        for _ in 0..5 {
            let port = if self.port != 0 {
                self.port
            } else {
                free_port()?
            };
            // A passive range per instance, derived from the port, so parallel
            // tests rarely share one.
            let base = 20000 + (port as u32 % 200) * 100;
            let mut child = Command::new("/usr/sbin/pure-ftpd")
                .arg("-S")
                .arg(format!("127.0.0.1,{port}"))
                .arg("-l")
                .arg(format!("puredb:{}", db.display()))
                .args(["-E", "-A", "-H", "-u", "1"])
                .arg("-p")
                .arg(format!("{}:{}", base, base + 99))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()?;
            if wait_ready(port, &mut child, Duration::from_secs(10)) {
                self.child = Some(child);
                self.port = port;
                return Ok(());
            }
            kill_group(&mut child);
            last_err = Some(std::io::Error::other(format!(
                "pure-ftpd did not start on {port}"
            )));
        }
        Err(last_err.unwrap_or_else(|| std::io::Error::other("pure-ftpd did not start")))
    }

    /// Kills the server (by PID) and starts it again on the same port and root.
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.spawn() {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    /// Kills the server: the process we started and its per-session
    /// children (its own process group, whose id is that PID).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill_group(&mut c);
        }
    }

    /// Sends `sig` (e.g. SIGSTOP/SIGCONT) to the server's process group.
    pub fn signal(&self, sig: i32) {
        if let Some(pgid) = self.child.as_ref().and_then(|c| i32::try_from(c.id()).ok()) {
            // SAFETY: kill(2) on the process group of a server we started.
            unsafe {
                libc::kill(-pgid, sig);
            }
        }
    }

    /// The directory served as the user's root.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// The server-side path of `rel`.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    pub fn endpoint(&self) -> Endpoint {
        Endpoint {
            scheme: Default::default(),
            host: "127.0.0.1".into(),
            port: self.port,
            user: USER.into(),
            password: PASSWORD.into(),
            root: "/".into(),
            tls: Default::default(),
        }
    }

    /// Writes a file directly into the served tree (owned by the FTP user).
    pub fn put_local(&self, rel: &str, data: &[u8]) -> std::io::Result<()> {
        let p = self.path(rel);
        std::fs::write(&p, data)?;
        std::os::unix::fs::chown(&p, Some(UID), Some(UID))
    }

    pub fn dir_path(&self) -> &Path {
        self.dir.path()
    }
}

fn kill_group(c: &mut Child) {
    if let Ok(pgid) = i32::try_from(c.id()) {
        // SAFETY: kill(2) with the negative PID of a process group we created.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
    let _ = c.kill();
    let _ = c.wait();
}

/// True once the server greets with 220.
fn wait_ready(port: u16, child: &mut Child, max: Duration) -> bool {
    let deadline = Instant::now() + max;
    while Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return false;
        }
        if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut line = String::new();
            if BufReader::new(s).read_line(&mut line).is_ok() && line.starts_with("220") {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

impl Drop for PureFtpd {
    fn drop(&mut self) {
        self.stop();
    }
}
