//! Real-mount smoke tests: the built `keyfs` binary mounts a real keyftpd
//! (in-process, 127.0.0.1:0) with FUSE; a copy lands byte-identical on the
//! server; the pre-mount checks fail with one line and a non-zero exit.
//! Every mount is unmounted by a guard, even when an assertion fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use keyfs::server::{Server, ServerConfig, ServerHandle};

const WAIT: Duration = Duration::from_secs(30);

struct Rig {
    dir: tempfile::TempDir,
    server: Option<ServerHandle>,
    port: u16,
}

impl Rig {
    fn new() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        for d in ["root", "mnt"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        let cfg = ServerConfig::new(dir.path().join("root"), "127.0.0.1:0".parse().unwrap())
            .with_user("u", "pw");
        let server = Server::bind(cfg).expect("bind keyftpd");
        let port = server.local_addr().port();
        Rig {
            dir,
            server: Some(server.spawn()),
            port,
        }
    }
    fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    fn url(&self) -> String {
        format!("ftp://u@127.0.0.1:{}/", self.port)
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if let Some(h) = self.server.take() {
            h.shutdown();
        }
    }
}

/// Unmounts on drop (lazily as a last resort) so a failed test leaves no mount.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let ok = Command::new("fusermount3")
            .arg("-u")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("fusermount3").arg("-uz").arg(&self.0).status();
        }
    }
}

fn keyfs(args: &[&str], password: &str) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_keyfs"));
    c.args(args)
        .env("KEYFS_PASSWORD", password)
        .env("HOME", "/nonexistent-keyfs-test-home");
    // Bounded: the parent returns when the daemon is ready or has failed.
    let child = c
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(WAIT);
        // Only our own child, by PID, if it is somehow still running.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    });
    let out = child.wait_with_output().unwrap();
    drop(killer);
    out
}

fn is_mounted(p: &Path) -> bool {
    let m = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let p = p.to_string_lossy();
    m.lines().any(|l| l.split(' ').nth(1) == Some(&*p))
}

#[test]
fn fs_mount_cp_ls_cat_then_unmount() {
    let rig = Rig::new();
    let mnt = rig.p("mnt");
    let spool = rig.p("spool");
    std::fs::write(rig.p("root/hello.txt"), b"hello\n").unwrap();
    let out = keyfs(
        &[
            "mount",
            &rig.url(),
            mnt.to_str().unwrap(),
            "--spool",
            spool.to_str().unwrap(),
        ],
        "pw",
    );
    assert!(
        out.status.success(),
        "mount failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _guard = Mounted(mnt.clone());
    assert!(is_mounted(&mnt));
    assert_eq!(std::fs::read(mnt.join("hello.txt")).unwrap(), b"hello\n");
    let body: Vec<u8> = (0..(3u32 << 20))
        .map(|i| (i * 7 + i / 4096) as u8)
        .collect();
    std::fs::write(rig.p("src.bin"), &body).unwrap();
    let cp = Command::new("cp")
        .arg(rig.p("src.bin"))
        .arg(mnt.join("copy.bin"))
        .status()
        .unwrap();
    assert!(cp.success());
    // Visible at once with its local size, readable back.
    assert_eq!(
        std::fs::metadata(mnt.join("copy.bin")).unwrap().len(),
        body.len() as u64
    );
    assert!(std::fs::read(mnt.join("copy.bin")).unwrap() == body);
    let names: Vec<String> = std::fs::read_dir(&mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.contains(&"copy.bin".to_string()), "{names:?}");
    let deadline = Instant::now() + WAIT;
    loop {
        if std::fs::read(rig.p("root/copy.bin")).is_ok_and(|d| d == body) {
            break;
        }
        assert!(Instant::now() < deadline, "upload did not land");
        std::thread::sleep(Duration::from_millis(100));
    }
    let st = keyfs(&["status", "--spool", spool.to_str().unwrap()], "");
    assert!(st.status.success());
}

#[test]
fn fs_mount_errors_are_one_line_and_nonzero() {
    let rig = Rig::new();
    let mnt = rig.p("mnt");
    let m = mnt.to_str().unwrap();
    // A port nobody listens on: bind, read the port, close.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead_url = format!("ftp://u@127.0.0.1:{dead}/");
    let missing = rig.p("no-such-dir");
    let url = rig.url();
    let cases: Vec<(Vec<&str>, &str, &str)> = vec![
        (vec!["mount", "http://x/", m], "pw", "bad URL"),
        (
            vec!["mount", &url, missing.to_str().unwrap()],
            "pw",
            "mountpoint",
        ),
        (vec!["mount", &url, m], "wrong", "login"),
        (vec!["mount", &dead_url, m], "pw", "cannot reach"),
    ];
    for (args, pw, want) in cases {
        let out = keyfs(&args, pw);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!is_mounted(&mnt), "{args:?} mounted");
    }
}
