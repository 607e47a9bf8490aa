//! The fault proxy against a real server (pure-ftpd, started here on a free
//! loopback port with a virtual user) and a real client (curl): byte counts
//! match the transfer, a cut truncates at exactly N bytes and curl resumes,
//! the throttle slows a transfer, and the binary exits by itself.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use keyfs::faultproxy::{FaultProxy, Faults};

const USER: &str = "alice";
const PASS: &str = "secret";

/// A pure-ftpd in the foreground on 127.0.0.1, killed on drop.
struct PureFtpd {
    child: Child,
    port: u16,
    root: PathBuf,
    _dir: tempfile::TempDir,
}

impl PureFtpd {
    fn start() -> PureFtpd {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        std::fs::create_dir(&root).expect("mkdir root");
        // pure-ftpd refuses uid 0 for a virtual user: map it to nobody.
        let chown = Command::new("chown")
            .args(["65534:65534", root.to_str().expect("utf8 path")])
            .status()
            .expect("chown");
        assert!(chown.success(), "chown failed");
        // A cheap SHA-512 crypt hash: pure-pw's default costs seconds per login.
        let hash = Command::new("openssl")
            .args(["passwd", "-6", PASS])
            .output()
            .expect("openssl passwd");
        assert!(hash.status.success(), "openssl passwd failed");
        let hash = String::from_utf8_lossy(&hash.stdout).trim().to_string();
        let passwd = dir.path().join("passwd");
        let pdb = dir.path().join("pdb");
        std::fs::write(
            &passwd,
            format!(
                "{USER}:{hash}:65534:65534::{}/./::::::::::::\n",
                root.display()
            ),
        )
        .expect("write passwd");
        let mk = Command::new("pure-pw")
            .arg("mkdb")
            .arg(&pdb)
            .arg("-f")
            .arg(&passwd)
            .status()
            .expect("pure-pw mkdb");
        assert!(mk.success(), "pure-pw mkdb failed");

        for _ in 0..10 {
            let port = free_port();
            let mut child = Command::new("/usr/sbin/pure-ftpd")
                .arg("-S")
                .arg(format!("127.0.0.1,{port}"))
                .arg("-l")
                .arg(format!("puredb:{}", pdb.display()))
                .args(["-E", "-A", "-H", "-4"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn pure-ftpd (is it installed? scripts/test installs it)");
            if wait_banner(port, Duration::from_secs(5)) {
                return PureFtpd {
                    child,
                    port,
                    root,
                    _dir: dir,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("pure-ftpd did not start");
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Drop for PureFtpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("local_addr").port()
}

/// True once the server at `port` sends its 220 banner.
fn wait_banner(port: u16, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut line = String::new();
            if BufReader::new(s).read_line(&mut line).is_ok() && line.starts_with("220") {
                return true;
            }
        }
        thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Deterministic pseudo-random bytes (xorshift), so no two files share a prefix.
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "60"])
        .args(args)
        .output()
        .expect("run curl")
}

fn url(proxy: SocketAddr, name: &str) -> String {
    format!("ftp://{USER}:{PASS}@{proxy}/{name}")
}

fn write_local(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write local file");
    p.to_str().expect("utf8 path").to_string()
}

#[test]
fn counts_match_uploads_and_downloads_through_pasv_and_epsv() {
    let srv = PureFtpd::start();
    let proxy = FaultProxy::start(
        "127.0.0.1:0".parse().unwrap(),
        srv.addr(),
        Faults::default(),
    )
    .expect("start proxy");
    let tmp = tempfile::tempdir().unwrap();
    let bytes = data(3_000_000, 1);
    let local = write_local(tmp.path(), "a.bin", &bytes);

    // EPSV (curl's default), then PASV.
    let out = curl(&["-T", &local, &url(proxy.addr(), "a.bin")]);
    assert!(out.status.success(), "upload: {:?}", out);
    let out = curl(&["--disable-epsv", "-T", &local, &url(proxy.addr(), "b.bin")]);
    assert!(out.status.success(), "PASV upload: {:?}", out);
    assert_eq!(std::fs::read(srv.root.join("a.bin")).unwrap(), bytes);
    assert_eq!(std::fs::read(srv.root.join("b.bin")).unwrap(), bytes);

    let out = curl(&[&url(proxy.addr(), "a.bin")]);
    assert!(out.status.success(), "download: {:?}", out.status);
    assert_eq!(out.stdout, bytes);

    let s = proxy.stats();
    assert_eq!(s.up_data, 2 * bytes.len() as u64, "{s:?}");
    assert_eq!(s.down_data, bytes.len() as u64, "{s:?}");
    assert_eq!(s.data_conns, 3, "{s:?}");
    assert_eq!(s.sessions, 3, "{s:?}");
    assert_eq!(s.cuts, 0);
    assert!(s.up_ctrl > 0 && s.down_ctrl > 0, "{s:?}");
}

#[test]
fn cut_after_n_forwards_n_and_resume_sends_only_the_rest() {
    let srv = PureFtpd::start();
    let n = 1_000_000u64;
    let proxy = FaultProxy::start(
        "127.0.0.1:0".parse().unwrap(),
        srv.addr(),
        Faults {
            cut_after: Some(n),
            cuts: 1,
            ..Faults::default()
        },
    )
    .expect("start proxy");
    let tmp = tempfile::tempdir().unwrap();
    let bytes = data(4_000_000, 2);
    let local = write_local(tmp.path(), "c.bin", &bytes);

    let out = curl(&["-T", &local, &url(proxy.addr(), "c.bin")]);
    assert!(!out.status.success(), "the cut upload must fail");
    // The proxy forwarded exactly N bytes, then closed the server side
    // cleanly. pure-ftpd may still drop bytes it had not read when curl
    // closes the control connection, so the server holds a prefix of at
    // most N bytes: wait until its size stops changing.
    let mut partial = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stable = 0;
    while Instant::now() < deadline && stable < 4 {
        let now = std::fs::read(srv.root.join("c.bin")).unwrap_or_default();
        stable = if now.len() == partial.len() && !now.is_empty() {
            stable + 1
        } else {
            0
        };
        partial = now;
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(proxy.stats().cuts, 1);
    assert_eq!(proxy.stats().up_data, n);
    assert!(
        !partial.is_empty() && partial.len() as u64 <= n,
        "partial of {} bytes after a cut at {n}",
        partial.len()
    );
    assert_eq!(&partial[..], &bytes[..partial.len()]);

    // Only one cut was asked for: curl's resume goes through and sends
    // exactly the rest.
    let out = curl(&["-C", "-", "-T", &local, &url(proxy.addr(), "c.bin")]);
    assert!(out.status.success(), "resume: {:?}", out);
    assert_eq!(std::fs::read(srv.root.join("c.bin")).unwrap(), bytes);
    let s = proxy.stats();
    let missing = (bytes.len() - partial.len()) as u64;
    assert_eq!(s.up_data, n + missing, "resume re-sent bytes: {s:?}");
    assert_eq!(s.cuts, 1);
}

#[test]
fn cut_control_also_resets_the_control_connection() {
    let srv = PureFtpd::start();
    let proxy = FaultProxy::start(
        "127.0.0.1:0".parse().unwrap(),
        srv.addr(),
        Faults {
            cut_after: Some(100_000),
            cuts: 0,
            cut_control: true,
            ..Faults::default()
        },
    )
    .expect("start proxy");
    let tmp = tempfile::tempdir().unwrap();
    let local = write_local(tmp.path(), "d.bin", &data(1_000_000, 3));
    let t0 = Instant::now();
    let out = curl(&["-T", &local, &url(proxy.addr(), "d.bin")]);
    assert!(!out.status.success());
    // curl did not hang waiting for a reply on a dead control connection.
    assert!(t0.elapsed() < Duration::from_secs(20));
    assert_eq!(proxy.stats().cuts, 1);
    // cuts: 0 means every upload is cut.
    let out = curl(&["-T", &local, &url(proxy.addr(), "e.bin")]);
    assert!(!out.status.success());
    assert_eq!(proxy.stats().cuts, 2);
}

#[test]
fn throttle_slows_uploads_and_can_be_lifted() {
    let srv = PureFtpd::start();
    let rate = 1u64 << 20;
    let proxy = FaultProxy::start(
        "127.0.0.1:0".parse().unwrap(),
        srv.addr(),
        Faults {
            throttle: Some(rate),
            ..Faults::default()
        },
    )
    .expect("start proxy");
    let tmp = tempfile::tempdir().unwrap();
    let bytes = data(1_500_000, 4);
    let local = write_local(tmp.path(), "t.bin", &bytes);

    let t0 = Instant::now();
    let out = curl(&["-T", &local, &url(proxy.addr(), "t.bin")]);
    let slow = t0.elapsed();
    assert!(out.status.success(), "{out:?}");
    // 1.5 MB at 1 MiB/s: at least ~1.4 s.
    assert!(slow >= Duration::from_millis(1300), "took only {slow:?}");
    assert_eq!(std::fs::read(srv.root.join("t.bin")).unwrap(), bytes);

    proxy.set_faults(Faults::default());
    let t0 = Instant::now();
    let out = curl(&["-T", &local, &url(proxy.addr(), "t2.bin")]);
    assert!(out.status.success(), "{out:?}");
    assert!(t0.elapsed() < slow, "unthrottled upload was not faster");
}

#[test]
fn binary_prints_its_address_keeps_stats_and_exits_by_itself() {
    let srv = PureFtpd::start();
    let tmp = tempfile::tempdir().unwrap();
    let stats = tmp.path().join("stats");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ftpfault"))
        .args(["--listen", "127.0.0.1:0", "--upstream"])
        .arg(srv.addr().to_string())
        .args(["--max-seconds", "3", "--stats"])
        .arg(&stats)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ftpfault");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .unwrap();
    let bytes = data(200_000, 5);
    let local = write_local(tmp.path(), "s.bin", &bytes);
    let out = curl(&["-T", &local, &url(addr, "s.bin")]);
    assert!(out.status.success(), "{out:?}");

    let t0 = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            assert!(st.success());
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "ftpfault did not exit"
        );
        thread::sleep(Duration::from_millis(50));
    }
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("up_data=200000"), "summary: {err}");
    let st = std::fs::read_to_string(&stats).unwrap();
    assert!(
        st.starts_with("up_data=200000 down_data=0 "),
        "stats file: {st}"
    );
    assert!(st.contains(" cuts=0 "), "stats file: {st}");
}
