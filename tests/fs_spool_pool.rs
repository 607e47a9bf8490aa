//! The spool's pool of recycled files (`spool/free`) through the
//! filesystem core, without FUSE, against a real in-process keyftpd on
//! 127.0.0.1:0: uploaded files' inodes come back as new spool files, and
//! a reader of a file whose upload completed keeps its bytes while the
//! pool hands files out to new writers.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use keyfs::fs::{inode::ROOT, Core};

#[path = "support/core_rig.rs"]
mod core_rig;
use core_rig::{Rig, WAIT};

/// Inodes of the files in the spool's pool.
fn free_inodes(rig: &Rig) -> HashSet<u64> {
    inodes(&rig.spool.path().join("free"))
}

fn inodes(dir: &Path) -> HashSet<u64> {
    std::fs::read_dir(dir)
        .map(|rd| rd.map(|e| e.unwrap().metadata().unwrap().ino()).collect())
        .unwrap_or_default()
}

fn body(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
}

fn put(core: &Core, n: &str, data: &[u8]) {
    let (_, o) = core.create(ROOT, OsStr::new(n), libc::O_WRONLY).unwrap();
    core.write(o.fh, 0, data).unwrap();
    core.release(o.fh).unwrap();
}

/// Waits until nothing is pending and every `(name, body)` is on the server.
fn wait_uploaded(rig: &Rig, core: &Core, files: &[(String, Vec<u8>)]) {
    let deadline = Instant::now() + WAIT;
    loop {
        let done = core.uploader().status().is_empty()
            && files
                .iter()
                .all(|(n, b)| std::fs::read(rig.root.path().join(n)).ok().as_ref() == Some(b));
        if done {
            return;
        }
        assert!(Instant::now() < deadline, "uploads did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn fs_uploaded_files_come_back_as_new_spool_files() {
    let rig = Rig::new();
    let core = rig.core();
    let first: Vec<(String, Vec<u8>)> = (0..20)
        .map(|i| (format!("a{i}"), body(4096 + i, i as u8)))
        .collect();
    for (n, b) in &first {
        put(&core, n, b);
    }
    wait_uploaded(&rig, &core, &first);
    let data_dir = rig.spool.path().join("data");
    assert!(inodes(&data_dir).is_empty(), "spool data left");
    let pooled = free_inodes(&rig);
    assert!(
        pooled.len() >= 20,
        "uploaded data and records recycled: {} pooled",
        pooled.len()
    );
    // The pool empties a retired file at the next settle after its last
    // holder closed it (after an upload's completion callback); one still
    // open then stays "dirty" (never handed out) until a later settle.
    // So all but at most MAX_DIRTY pooled files are empty, and the new
    // file below must get an emptied one.
    let non_empty = std::fs::read_dir(rig.spool.path().join("free"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().metadata().unwrap().len() != 0)
        .count();
    assert!(
        non_empty <= keyfs::spool::pool::MAX_DIRTY && non_empty < pooled.len(),
        "pool files not emptied: {non_empty} of {}",
        pooled.len()
    );
    // A file being written lives in a recycled inode.
    let (_, o) = core.create(ROOT, OsStr::new("b"), libc::O_WRONLY).unwrap();
    let spooled = inodes(&data_dir);
    assert_eq!(spooled.len(), 1);
    assert!(
        spooled.is_subset(&pooled),
        "the new data file was not recycled"
    );
    let b = body(10_000, 0xAB);
    core.write(o.fh, 0, &b).unwrap();
    core.release(o.fh).unwrap();
    let all = vec![("b".to_string(), b)];
    wait_uploaded(&rig, &core, &all);
    core.shutdown();
    drop(core);
    // A new mount on the same spool: nothing pending, the pool kept.
    let core = rig.core();
    assert!(core.uploader().status().is_empty());
    assert!(core.kept_open.is_empty());
    assert!(free_inodes(&rig).len() >= 20);
    core.shutdown();
}

#[test]
fn fs_reader_of_an_uploaded_file_keeps_its_bytes() {
    let rig = Rig::new();
    // Slow uploads, so the reader opens the file while it is pending.
    let core = rig.core_bw(Some(64 * 1024));
    let a = body(96 * 1024, 0x5A);
    put(&core, "a", &a);
    let ino = core.lookup(ROOT, OsStr::new("a")).unwrap().ino;
    let reader = core.open(ino, libc::O_RDONLY).unwrap();
    assert!(
        !core.uploader().status().is_empty(),
        "uploaded before the reader opened it: the test proves nothing"
    );
    wait_uploaded(&rig, &core, &[("a".to_string(), a.clone())]);
    // New files take whatever the pool has; the one still being read must
    // not be handed out (nor emptied).
    let mut next = Vec::new();
    for i in 0..8 {
        let n = format!("n{i}");
        let b = body(4096, i as u8);
        put(&core, &n, &b);
        next.push((n, b));
    }
    let mut got = Vec::new();
    loop {
        let c = core.read(reader.fh, got.len() as u64, 16 * 1024).unwrap();
        if c.is_empty() {
            break;
        }
        got.extend_from_slice(&c);
    }
    core.release(reader.fh).unwrap();
    assert!(got == a, "the reader saw {} bytes, not its own", got.len());
    wait_uploaded(&rig, &core, &next);
    core.shutdown();
}
