//! A server file opened for writing (no O_TRUNC) is not downloaded at
//! open: its old bytes are fetched when a read needs them and before the
//! version is sealed, never when a write or a truncate has replaced them.
//! A fault proxy in front of a real keyftpd counts the bytes fetched, over
//! FTP and over HTTP.

use std::ffi::OsStr;
use std::sync::Arc;

use keyfs::faultproxy::{FaultProxy, Faults};
use keyfs::fs::{inode::ROOT, Core};
use keyfs::transport::Scheme;

#[path = "support/core_rig.rs"]
#[macro_use]
mod core_rig;
use core_rig::{data, Rig, WAIT};

const MIB: usize = 1 << 20;

fn via_proxy(rig: &Rig) -> (FaultProxy, Arc<Core>) {
    let listen = "127.0.0.1:0".parse().unwrap();
    let up = format!("127.0.0.1:{}", rig.port).parse().unwrap();
    let proxy = match rig.scheme {
        Scheme::Ftp => FaultProxy::start(listen, up, Faults::default()),
        Scheme::Http => FaultProxy::start_tcp(listen, up, Faults::default()),
    }
    .expect("proxy");
    let core = rig.core_with(proxy.addr().port(), 1, None);
    (proxy, core)
}

fn put(rig: &Rig, name: &str, n: usize, seed: u32) -> Vec<u8> {
    let body = data(n, seed);
    std::fs::write(rig.root.path().join(name), &body).unwrap();
    body
}

/// Download bytes the proxy relayed (FTP: data connections only; HTTP:
/// everything, answers to PROPFIND and the rest too).
fn fetched(p: &FaultProxy) -> u64 {
    p.stats().down_data
}

/// FTP only: over HTTP the proxy counts every answer, and under load the
/// socket buffers a stopped transfer leaves in flight blur the bound.
#[test]
fn fs_open_for_writing_fetches_nothing_until_needed() {
    let rig = Rig::new();
    let old = put(&rig, "big.bin", 32 * MIB, 1);
    let (proxy, core) = via_proxy(&rig);
    let a = core.lookup(ROOT, OsStr::new("big.bin")).unwrap();
    let base = fetched(&proxy);
    let o = core.open(a.ino, libc::O_RDWR).unwrap();
    assert_eq!(core.getattr(a.ino).unwrap().size, 32 * MIB as u64);
    assert!(fetched(&proxy) - base < 64 << 10, "open fetched the file");
    // A read in the middle fetches about that part (plus read-ahead and
    // what the server had in flight when the transfer stopped).
    let r = core.read(o.fh, (8 * MIB) as u64, 4096).unwrap();
    assert_eq!(r, &old[8 * MIB..8 * MIB + 4096]);
    let after_read = fetched(&proxy) - base;
    assert!(
        after_read < (4 * MIB) as u64,
        "a 4 KiB read fetched {after_read}"
    );
    // Overwrite the first 2 MiB, truncate to 10 MiB: only [2, 8) and
    // [9, 10) MiB are still needed at close.
    let new = data(2 * MIB, 9);
    assert_eq!(core.write(o.fh, 0, &new).unwrap() as usize, 2 * MIB);
    core.setattr(a.ino, Some((10 * MIB) as u64), None).unwrap();
    core.release(o.fh).unwrap();
    core.uploader().wait("big.bin", WAIT).unwrap();
    let mut want = old[..10 * MIB].to_vec();
    want[..2 * MIB].copy_from_slice(&new);
    assert_eq!(rig.server_file("big.bin").unwrap(), want);
    let total = fetched(&proxy) - base;
    assert!(
        total < (20 * MIB) as u64,
        "fetched {total} bytes for 7 MiB of old content still needed (all of it: 32 MiB)"
    );
    core.shutdown();
}

over_both! {
    fn fs_truncate_to_zero_after_open_fetches_nothing() {
        let rig = Rig::new();
        put(&rig, "f.bin", 8 * MIB, 2);
        let (proxy, core) = via_proxy(&rig);
        let a = core.lookup(ROOT, OsStr::new("f.bin")).unwrap();
        let base = fetched(&proxy);
        let o = core.open(a.ino, libc::O_WRONLY).unwrap();
        core.setattr(a.ino, Some(0), None).unwrap();
        core.write(o.fh, 0, b"new").unwrap();
        core.release(o.fh).unwrap();
        core.uploader().wait("f.bin", WAIT).unwrap();
        assert_eq!(rig.server_file("f.bin").unwrap(), b"new");
        assert!(fetched(&proxy) - base < 64 << 10);
        core.shutdown();
    }
}

over_both! {
    fn fs_lazy_version_survives_rename_and_unlink_while_open() {
        let rig = Rig::new();
        let old = put(&rig, "r.bin", 3 * MIB, 3);
        put(&rig, "u.bin", 3 * MIB, 4);
        let core = rig.core();
        // Renamed while open: the old content moves with it.
        let a = core.lookup(ROOT, OsStr::new("r.bin")).unwrap();
        let o = core.open(a.ino, libc::O_WRONLY | libc::O_APPEND).unwrap();
        core.write(o.fh, 0, b"tail").unwrap();
        core.rename(ROOT, OsStr::new("r.bin"), ROOT, OsStr::new("s.bin"), 0)
            .unwrap();
        core.release(o.fh).unwrap();
        core.uploader().wait("s.bin", WAIT).unwrap();
        let mut want = old.clone();
        want.extend_from_slice(b"tail");
        assert_eq!(rig.server_file("s.bin").unwrap(), want);
        assert_eq!(rig.server_file("r.bin"), None);
        // Unlinked while open: still readable through the open handle.
        let u = core.lookup(ROOT, OsStr::new("u.bin")).unwrap();
        let o = core.open(u.ino, libc::O_RDWR).unwrap();
        core.unlink(ROOT, OsStr::new("u.bin")).unwrap();
        let body = data(3 * MIB, 4);
        assert_eq!(
            core.read(o.fh, MIB as u64, 100).unwrap(),
            &body[MIB..MIB + 100]
        );
        core.release(o.fh).unwrap();
        assert_eq!(rig.server_file("u.bin"), None);
        core.shutdown();
    }
}
