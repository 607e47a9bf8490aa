//! Remote reads through the filesystem core (no FUSE) against a real
//! in-process keyftpd, over FTP and over HTTP, through the fault proxy
//! (which counts connections and bytes): the read-ahead thread of a stream serves concurrent
//! out-of-order requests from one transfer, resumes after its connection
//! is cut, and stops when its handle is released, when the core shuts
//! down, and never starts for a handle that is not read.
//!
//! The tests share the process-wide count of read-ahead threads, so they
//! run one at a time (`SERIAL`).

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keyfs::faultproxy::{FaultProxy, Faults};
use keyfs::fs::reader::live_producers;
use keyfs::fs::{inode::ROOT, Core};
use keyfs::transport::Scheme;

static SERIAL: Mutex<()> = Mutex::new(());
const MIB: usize = 1 << 20;

#[path = "support/core_rig.rs"]
#[macro_use]
mod core_rig;
use core_rig::{data, Rig};

/// A fault proxy on `listen` in front of the rig's server (relaying
/// plain TCP for HTTP).
fn proxy_at(rig: &Rig, listen: SocketAddr, faults: Faults) -> FaultProxy {
    let up = format!("127.0.0.1:{}", rig.port).parse().unwrap();
    match rig.scheme {
        Scheme::Ftp => FaultProxy::start(listen, up, faults),
        Scheme::Http => FaultProxy::start_tcp(listen, up, faults),
    }
    .expect("proxy")
}

/// A core with one upload worker that talks to the server through `port`.
fn core_via(rig: &Rig, port: u16) -> Arc<Core> {
    rig.core_with(port, 1, None)
}

/// A server file of `n` bytes; returns its content.
fn put(rig: &Rig, name: &str, n: usize, seed: u32) -> Vec<u8> {
    let body = data(n, seed);
    std::fs::write(rig.root.path().join(name), &body).unwrap();
    body
}

fn open(core: &Core, name: &str) -> u64 {
    let a = core.lookup(ROOT, OsStr::new(name)).unwrap();
    core.open(a.ino, libc::O_RDONLY).unwrap().fh
}

/// Waits (at most 10 s) until no read-ahead thread is alive.
fn producers_gone() -> bool {
    let until = Instant::now() + Duration::from_secs(10);
    while live_producers() != 0 {
        if Instant::now() > until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

over_both! {
/// The kernel's readahead pattern: 1 MiB requests, three in flight from
/// three threads, answered in any order (the last of each group first),
/// plus a few 4 KiB reads behind the stream: one transfer, right bytes.
fn reader_concurrent_out_of_order_requests_share_one_transfer() {
    let _s = serial();
    let rig = Rig::new();
    let px = proxy_at(&rig, "127.0.0.1:0".parse().unwrap(), Faults::default());
    let body = Arc::new(put(&rig, "big.bin", 24 * MIB + 12345, 7));
    let core = core_via(&rig, px.addr().port());
    let fh = open(&core, "big.bin");
    let before = px.stats();
    let mut got = vec![0u8; body.len()];
    let chunks = body.len().div_ceil(MIB);
    // The first read is at 0 (a fresh handle starts its transfer there).
    let r = core.read(fh, 0, MIB as u32).unwrap();
    assert!(r == body[..MIB]);
    got[..MIB].copy_from_slice(&r);
    for group in (1..chunks).collect::<Vec<_>>().chunks(3) {
        let handles: Vec<_> = group
            .iter()
            .rev()
            .enumerate()
            .map(|(k, &i)| {
                let core = core.clone();
                std::thread::spawn(move || {
                    // Stagger so the later chunks tend to be asked first.
                    std::thread::sleep(Duration::from_millis(2 * k as u64));
                    (i, core.read(fh, (i * MIB) as u64, MIB as u32))
                })
            })
            .collect();
        for h in handles {
            let (i, r) = h.join().unwrap();
            let r = r.unwrap_or_else(|e| panic!("read of chunk {i}: {e}"));
            let want = &body[i * MIB..((i + 1) * MIB).min(body.len())];
            assert_eq!(r.len(), want.len(), "chunk {i} length");
            assert!(r == want, "chunk {i} bytes");
            got[i * MIB..i * MIB + r.len()].copy_from_slice(&r);
        }
        // A small read behind the stream is served from the window.
        let back = group[0] * MIB + 100;
        let r = core.read(fh, back as u64, 4096).unwrap();
        assert!(r == body[back..back + 4096], "read back at {back}");
    }
    assert!(got == *body);
    // At the end: empty.
    assert!(core.read(fh, body.len() as u64, 4096).unwrap().is_empty());
    // One transfer for the whole file: over FTP one RETR; over HTTP one
    // GET, perhaps on a kept-alive connection; never the file twice.
    let after = px.stats();
    if rig.scheme == Scheme::Ftp {
        assert_eq!(after.data_conns - before.data_conns, 1, "one RETR");
    }
    let down = after.down_data - before.down_data;
    assert!(
        down < (body.len() + MIB) as u64,
        "{down} bytes went down for a file of {}",
        body.len()
    );
    core.release(fh).unwrap();
    assert!(producers_gone(), "read-ahead thread still alive");
    core.shutdown();
}

/// The proxy goes away mid-stream (every connection closed) and comes
/// back on the same port: the read-ahead thread reconnects and resumes at
/// its position (REST, or a Range GET), and the reads give the server's bytes.
fn reader_resumes_after_its_connection_is_cut() {
    let _s = serial();
    let rig = Rig::new();
    let mut px = proxy_at(&rig, "127.0.0.1:0".parse().unwrap(), Faults::default());
    let addr = px.addr();
    let body = put(&rig, "cut.bin", 16 * MIB, 11);
    let core = core_via(&rig, addr.port());
    let fh = open(&core, "cut.bin");
    let mut got = Vec::new();
    while got.len() < 5 * MIB {
        let r = core.read(fh, got.len() as u64, 128 * 1024).unwrap();
        got.extend_from_slice(&r);
    }
    px.shutdown();
    drop(px);
    let px2 = proxy_at(&rig, addr, Faults::default());
    loop {
        let r = core.read(fh, got.len() as u64, 128 * 1024).unwrap();
        if r.is_empty() {
            break;
        }
        got.extend_from_slice(&r);
        assert!(got.len() <= body.len());
    }
    assert_eq!(got.len(), body.len());
    assert!(got == body, "bytes differ after the cut");
    let st = px2.stats();
    assert!(st.data_conns >= 1, "no reconnect: {st:?}");
    // The resumed transfer sent the rest only, not the file again.
    assert!(
        st.down_data < (body.len() - 3 * MIB) as u64,
        "re-sent too much: {st:?}"
    );
    core.release(fh).unwrap();
    assert!(producers_gone());
    core.shutdown();
}

/// A release in the middle of a slow stream stops its read-ahead thread
/// (and closes the transfer); so does a shutdown with a handle still open;
/// a handle that is never read starts none.
fn reader_release_and_shutdown_stop_the_read_ahead() {
    let _s = serial();
    let rig = Rig::new();
    let px = proxy_at(
        &rig,
        "127.0.0.1:0".parse().unwrap(),
        Faults {
            throttle: Some(512 * 1024),
            ..Faults::default()
        },
    );
    let body = put(&rig, "slow.bin", 16 * MIB, 3);
    let core = core_via(&rig, px.addr().port());
    assert_eq!(live_producers(), 0);

    let idle = open(&core, "slow.bin");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(live_producers(), 0, "a handle never read started a thread");
    core.release(idle).unwrap();

    let fh = open(&core, "slow.bin");
    let r = core.read(fh, 0, 64 * 1024).unwrap();
    assert!(r == body[..64 * 1024]);
    assert_eq!(live_producers(), 1);
    let t = Instant::now();
    core.release(fh).unwrap();
    assert!(t.elapsed() < Duration::from_secs(1), "release waited");
    assert!(producers_gone(), "release left the read-ahead running");

    let fh = open(&core, "slow.bin");
    let r = core.read(fh, MIB as u64, 4096).unwrap();
    assert!(r == body[MIB..MIB + 4096]);
    assert_eq!(live_producers(), 1);
    core.shutdown();
    assert!(producers_gone(), "shutdown left the read-ahead running");
    // The proxy saw the transfers end: far less than the file went down.
    assert!(px.stats().down_data < 8 * MIB as u64, "{:?}", px.stats());
}

/// A file gone from the server: the read fails with an errno (ENOENT from
/// the 550), again on the next read, and no thread is left behind.
fn reader_missing_file_is_an_errno() {
    let _s = serial();
    let rig = Rig::new();
    let px = proxy_at(&rig, "127.0.0.1:0".parse().unwrap(), Faults::default());
    put(&rig, "gone.bin", 3 * MIB, 5);
    let core = core_via(&rig, px.addr().port());
    let fh = open(&core, "gone.bin");
    std::fs::remove_file(rig.root.path().join("gone.bin")).unwrap();
    for at in [0u64, 4096] {
        let e = core.read(fh, at, 4096).expect_err("read of a removed file");
        assert_eq!(e.errno(), libc::ENOENT, "{e}");
    }
    assert!(producers_gone());
    core.release(fh).unwrap();
    core.shutdown();
}
}
