//! The in-process API (`Server::bind`, `local_addr`, `spawn`, `shutdown`)
//! that other modules' tests use, including a shutdown in the middle of a
//! streaming upload.

mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use keyfs::key;
use keyfs::server::{Server, ServerConfig};
use support::keyftpd::{key_of, pattern, prompt_size, Ctrl};

fn config(root: &std::path::Path) -> ServerConfig {
    let mut cfg = ServerConfig::new(root.to_path_buf(), "127.0.0.1:0".parse().expect("addr"))
        .with_user("u", "pw");
    cfg.gate.fail_delay = Duration::from_millis(10);
    cfg
}

fn login(addr: std::net::SocketAddr) -> Ctrl {
    let mut c = Ctrl::connect(addr);
    assert_eq!(c.cmd("USER u").0, 331);
    assert_eq!(c.cmd("PASS pw").0, 230);
    c
}

#[test]
fn bind_spawn_and_shutdown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::bind(config(dir.path())).expect("bind");
    let addr = server.local_addr();
    assert_ne!(addr.port(), 0);
    let handle = server.spawn();
    assert_eq!(handle.local_addr(), addr);
    let mut c = login(addr);
    assert_eq!(c.upload("STOR f", b"data").0, 226);
    let t = Instant::now();
    handle.shutdown();
    assert!(t.elapsed() < Duration::from_secs(5));
    let (code, _) = c.try_read_reply().unwrap_or((0, String::new()));
    assert!(code == 421 || code == 0, "{code}");
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "no longer listening"
    );
}

#[test]
fn bind_fails_cleanly_on_a_missing_root() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(Server::bind(config(&dir.path().join("missing"))).is_err());
}

#[test]
fn shutdown_during_a_streaming_upload_records_a_partial() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = pattern(32 << 20, 1);
    let k = key_of(&data);
    let server = Server::bind(config(dir.path())).expect("bind");
    let addr = server.local_addr();
    let handle = server.spawn();
    let mut c = login(addr);
    assert_eq!(c.cmd(&format!("KEY {k}")).0, 230);
    let mut d = c.data();
    assert_eq!(c.cmd("STOR s.bin").0, 150);
    let writer = std::thread::spawn(move || {
        // Keep the data flowing until the server stops reading.
        for chunk in data.chunks(64 << 10) {
            if d.write_all(chunk).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(3));
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    handle.shutdown();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let _ = writer.join();
    let size = std::fs::metadata(dir.path().join("s.bin"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert!(size > 0 && size < 32 << 20, "{size}");

    let server = Server::bind(config(dir.path())).expect("bind again");
    let handle = server.spawn();
    let mut c = login(handle.local_addr());
    assert_eq!(c.cmd(&format!("KEY {k}")).0, 230);
    let (code, text) = c.cmd("STOR s.bin");
    assert_eq!(code, 350, "{text}");
    assert_eq!(prompt_size(&text), size);
    let (_, text) = c.cmd("KEY NULL");
    assert_eq!(
        key::parse_key_null_reply(&text)
            .ok()
            .flatten()
            .map(|k| k.to_string()),
        Some(k)
    );
    handle.shutdown();
}

/// A client that opens the data connection of a large listing and never
/// reads it must not pin its session thread forever: the listing's writes
/// time out after the data timeout and the control connection gets 426.
#[test]
fn a_listing_nobody_reads_times_out() {
    use std::os::fd::AsRawFd;
    let dir = tempfile::tempdir().expect("tempdir");
    let long = "n".repeat(245);
    for i in 0..16_000 {
        std::fs::write(dir.path().join(format!("{long}{i:05}")), b"").expect("file");
    }
    let mut cfg = config(dir.path());
    cfg.data_timeout = Duration::from_secs(1);
    let handle = Server::bind(cfg).expect("bind").spawn();
    let mut c = login(handle.local_addr());
    let d = c.data();
    // A small receive window so the listing (~5 MB) cannot fit in socket buffers.
    let small: libc::c_int = 4096;
    // SAFETY: valid fd, pointer to a c_int of the given size.
    unsafe {
        libc::setsockopt(
            d.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&small as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    assert_eq!(c.cmd("MLSD").0, 150);
    let t = Instant::now();
    // Ctrl reads time out after 20 s; the server must answer well before.
    let (code, text) = c.try_read_reply().expect("426 after the data timeout");
    assert_eq!(code, 426, "{text}");
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    assert_eq!(c.cmd("NOOP").0, 200, "session still usable");
    drop(d);
    handle.shutdown();
}
