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
        if !is_mounted(&self.0) {
            return;
        }
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
        (vec!["mount", "sftp://x/", m], "pw", "bad URL"),
        (
            vec!["mount", "http://127.0.0.1:1/", m],
            "pw",
            "cannot reach",
        ),
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

/// Whether `pid` runs (a zombie does not count).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().next())
            .is_some_and(|st| st != "Z" && st != "X")
    })
}

fn status(spool: &Path) -> String {
    let out = keyfs(&["status", "--spool", spool.to_str().unwrap()], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `f` until it is true, failing with `what` after [`WAIT`].
fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn mount(rig: &Rig, spool: &Path, extra: &[&str]) -> Mounted {
    let mnt = rig.p("mnt");
    let url = rig.url();
    let mut args = vec![
        "mount",
        &url,
        mnt.to_str().unwrap(),
        "--spool",
        spool.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = keyfs(&args, "pw");
    assert!(
        out.status.success(),
        "mount failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(is_mounted(&mnt));
    Mounted(mnt)
}

#[test]
fn fs_mount_sigterm_unmounts_and_the_pending_upload_survives() {
    let rig = Rig::new();
    let spool = rig.p("spool");
    let mnt = rig.p("mnt");
    let body: Vec<u8> = (0..(1u32 << 20))
        .map(|i| (i * 13 + i / 777) as u8)
        .collect();
    // 1 MiB at 64 KiB/s: still uploading when SIGTERM comes.
    let guard = mount(&rig, &spool, &["--bwlimit", "64K"]);
    std::fs::write(mnt.join("big.bin"), &body).unwrap();
    // The live status names the daemon and shows the upload in flight.
    let mut pid = 0;
    wait_for("live status with progress", || {
        let s = status(&spool);
        pid = s
            .split("daemon: running (pid ")
            .nth(1)
            .and_then(|r| r.split(')').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        pid > 0 && s.contains("big.bin") && s.contains("uploading")
    });
    // SAFETY: a signal to the keyfs daemon we started, by its PID.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    wait_for("unmount and exit after SIGTERM", || {
        !is_mounted(&mnt) && !alive(pid)
    });
    drop(guard);
    assert!(std::fs::read(rig.p("root/big.bin")).map_or(true, |d| d != body));
    // Stopped: the journal still holds the job.
    let s = status(&spool);
    assert!(s.contains("daemon: not running"), "{s}");
    assert!(s.contains("big.bin") && s.contains("queued"), "{s}");
    // The next mount with the same spool finishes it.
    let _guard = mount(&rig, &spool, &[]);
    wait_for("upload completes after remount", || {
        std::fs::read(rig.p("root/big.bin")).is_ok_and(|d| d == body)
    });
    wait_for("status empties", || {
        status(&spool).contains("no pending uploads")
    });
    assert!(std::fs::read(mnt.join("big.bin")).unwrap() == body);
}

/// Runs `f` on a thread; its duration, or `None` if it took over `bound`
/// (the thread is then left to finish once the test unblocks it).
fn timed<T: Send + 'static>(
    bound: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<(Duration, T)> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let t = Instant::now();
        let v = f();
        let _ = tx.send((t.elapsed(), v));
    });
    rx.recv_timeout(bound).ok()
}

#[test]
fn fs_mount_ls_and_stat_answer_while_remote_reads_crawl() {
    use keyfs::faultproxy::{FaultProxy, Faults};
    let rig = Rig::new();
    let readers = 6;
    for i in 0..readers {
        std::fs::write(rig.p(&format!("root/slow{i}.bin")), vec![i as u8; 2 << 20]).unwrap();
    }
    std::fs::write(rig.p("root/small.txt"), b"small").unwrap();
    // Every data connection shares 32 KiB/s: six 2 MiB downloads crawl.
    let mut proxy = FaultProxy::start(
        "127.0.0.1:0".parse().unwrap(),
        format!("127.0.0.1:{}", rig.port).parse().unwrap(),
        Faults {
            throttle: Some(32 * 1024),
            ..Faults::default()
        },
    )
    .unwrap();
    let mnt = rig.p("mnt");
    let spool = rig.p("spool");
    let url = format!("ftp://u@127.0.0.1:{}/", proxy.addr().port());
    let out = keyfs(
        &[
            "mount",
            &url,
            mnt.to_str().unwrap(),
            "--spool",
            spool.to_str().unwrap(),
        ],
        "pw",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let guard = Mounted(mnt.clone());
    // More readers than FUSE request threads (4).
    let mut kids: Vec<std::process::Child> = (0..readers)
        .map(|i| {
            Command::new("dd")
                .arg(format!("if={}", mnt.join(format!("slow{i}.bin")).display()))
                .arg("of=/dev/null")
                .arg("bs=1M")
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let bound = Duration::from_secs(10);
    let m = mnt.clone();
    let ls = timed(bound, move || {
        std::fs::read_dir(&m).map(|d| d.count()).unwrap_or(0)
    });
    let m = mnt.clone();
    let stat = timed(bound, move || {
        std::fs::metadata(m.join("small.txt")).map(|a| a.len()).ok()
    });
    let m = mnt.clone();
    let missing = timed(bound, move || std::fs::metadata(m.join("nope")).is_err());
    // Readers still crawling (none can have finished 2 MiB at 32 KiB/s shared).
    let mut still = 0;
    for k in &mut kids {
        if matches!(k.try_wait(), Ok(None)) {
            still += 1;
        }
    }
    for k in &mut kids {
        let _ = k.kill();
        let _ = k.wait();
    }
    proxy.shutdown();
    drop(guard);
    let (t_ls, n) = ls.expect("ls hung while remote reads were slow");
    assert_eq!(n, readers + 1);
    let (t_stat, len) = stat.expect("stat hung while remote reads were slow");
    assert_eq!(len, Some(5));
    assert!(missing.expect("stat of a missing name hung").1);
    assert_eq!(
        still, readers,
        "the reads were not slow: test proves nothing"
    );
    eprintln!("ls {t_ls:?}, stat {t_stat:?} with {readers} reads crawling");
}

/// Server files read through the mount: `read`, `pread` at an offset and
/// `mmap` all give the server's bytes (reads stay in the page cache rather
/// than direct I/O, which would break neither but makes a slow read
/// unkillable: fuser does not implement FUSE_INTERRUPT).
#[test]
fn fs_mount_server_files_read_and_mmap() {
    use std::os::unix::fs::FileExt;
    use std::os::unix::io::AsRawFd;
    let rig = Rig::new();
    let body: Vec<u8> = (0..(5u32 << 20) + 123)
        .map(|i| (i * 13 + i / 8191) as u8)
        .collect();
    std::fs::write(rig.p("root/remote.bin"), &body).unwrap();
    let _m = mount(&rig, &rig.p("spool"), &[]);
    let f = rig.p("mnt/remote.bin");
    assert!(std::fs::read(&f).unwrap() == body, "read differs");
    let file = std::fs::File::open(&f).unwrap();
    let mut buf = vec![0u8; 70_000];
    let off = 3 << 20;
    file.read_exact_at(&mut buf, off).unwrap();
    assert!(
        buf[..] == body[off as usize..off as usize + buf.len()],
        "pread differs"
    );
    // SAFETY: a read-only private mapping of an open file, unmapped below;
    // the slice is used only while the mapping exists.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            body.len(),
            libc::PROT_READ,
            libc::MAP_PRIVATE,
            file.as_raw_fd(),
            0,
        );
        assert_ne!(
            p,
            libc::MAP_FAILED,
            "mmap: {}",
            std::io::Error::last_os_error()
        );
        let mapped = std::slice::from_raw_parts(p as *const u8, body.len());
        let same = mapped == &body[..];
        libc::munmap(p, body.len());
        assert!(same, "mmap differs");
    }
}

/// A shared or private writable mapping of `len` bytes of `file`.
fn map_rw(file: &std::fs::File, len: usize, shared: bool) -> *mut u8 {
    use std::os::unix::io::AsRawFd;
    let flags = if shared {
        libc::MAP_SHARED
    } else {
        libc::MAP_PRIVATE
    };
    // SAFETY: a fresh mapping of an open file; callers unmap it.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            flags,
            file.as_raw_fd(),
            0,
        )
    };
    assert_ne!(
        p,
        libc::MAP_FAILED,
        "mmap (shared: {shared}): {}",
        std::io::Error::last_os_error()
    );
    p as *mut u8
}

/// Files open for writing map like any other (before: ENODEV, as writable
/// opens use direct I/O): a shared mapping's stores reach the file and its
/// upload (through msync, or munmap and close), a private one's do not.
#[test]
fn fs_mount_mmap_of_files_open_for_writing() {
    let rig = Rig::new();
    let body: Vec<u8> = (0..256u32 << 10).map(|i| (i * 7 + i / 991) as u8).collect();
    std::fs::write(rig.p("root/m.bin"), &body).unwrap();
    let _m = mount(&rig, &rig.p("spool"), &[]);
    let rw = |name: &str| {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(rig.p("mnt").join(name))
            .unwrap()
    };
    // A server file, opened read-write: the mapping shows its content.
    let file = rw("m.bin");
    let p = map_rw(&file, body.len(), true);
    let mut want = body.clone();
    // SAFETY: `p` maps body.len() bytes until the munmap below.
    unsafe {
        let m = std::slice::from_raw_parts_mut(p, body.len());
        assert!(m[..] == body[..], "the mapping differs from the file");
        m[100_000..100_005].copy_from_slice(b"HELLO");
        assert_eq!(libc::msync(p.cast(), body.len(), libc::MS_SYNC), 0);
        libc::munmap(p.cast(), body.len());
    }
    want[100_000..100_005].copy_from_slice(b"HELLO");
    // A private mapping of the same descriptor changes nothing.
    let p = map_rw(&file, body.len(), false);
    // SAFETY: as above.
    unsafe {
        let m = std::slice::from_raw_parts_mut(p, body.len());
        m[0..7].copy_from_slice(b"PRIVATE");
        libc::munmap(p.cast(), body.len());
    }
    drop(file);
    assert!(std::fs::read(rig.p("mnt/m.bin")).unwrap() == want);
    wait_for("m.bin uploaded with the mapped store", || {
        std::fs::read(rig.p("root/m.bin")).is_ok_and(|d| d == want)
    });
    // A new file, sized, stored into, unmapped and closed without msync.
    let created = std::fs::File::create(rig.p("mnt/n.bin")).unwrap();
    created.set_len(64 << 10).unwrap();
    drop(created);
    let file = rw("n.bin");
    let p = map_rw(&file, 64 << 10, true);
    // SAFETY: as above.
    unsafe {
        std::slice::from_raw_parts_mut(p, 64 << 10)[60_000..60_003].copy_from_slice(b"END");
        libc::munmap(p.cast(), 64 << 10);
    }
    drop(file);
    let mut want = vec![0u8; 64 << 10];
    want[60_000..60_003].copy_from_slice(b"END");
    wait_for("n.bin uploaded with the mapped store", || {
        std::fs::read(rig.p("root/n.bin")).is_ok_and(|d| d == want)
    });
}
