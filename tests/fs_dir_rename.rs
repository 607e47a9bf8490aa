//! Directory renames in the filesystem core, driven without FUSE against a
//! real in-process keyftpd over FTP and HTTP: `mv d e` while the files
//! under `d` upload, or right after the last one landed, leaves every file
//! complete under `e`, once, and nothing under `d`.

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::Duration;

use keyfs::fs::{inode::ROOT, Core};

#[path = "support/core_rig.rs"]
#[macro_use]
mod core_rig;
use core_rig::{data, put_in, read_path, wait_in_flight, Rig, WAIT};

fn name(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// Names in the server's directory `rel` (`None` when it does not exist).
fn server_dir(rig: &Rig, rel: &str) -> Option<Vec<String>> {
    let rd = std::fs::read_dir(rig.root.path().join(rel)).ok()?;
    let mut v: Vec<String> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    Some(v)
}

/// After a directory rename settled: the server holds `e/<each>` exactly,
/// nothing under `d` (gone or empty: no partial, no old copy), reads
/// through the core agree, nothing stays pending and a new core on the
/// same spool has nothing to upload.
fn check_dir_renamed(rig: &Rig, core: Arc<Core>, files: &[(&str, Vec<u8>)]) {
    for (n, _) in files {
        core.uploader().wait(&format!("e/{n}"), WAIT).unwrap();
    }
    let deadline = std::time::Instant::now() + WAIT;
    while !core.uploader().status().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "jobs stay pending: {:?}",
            core.uploader()
                .status()
                .iter()
                .map(|j| j.record.remote_path.clone())
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Let a stopped upload's late chunk or partial cleanup show, if any.
    std::thread::sleep(Duration::from_millis(300));
    let mut want: Vec<String> = files.iter().map(|(n, _)| n.to_string()).collect();
    want.sort();
    assert_eq!(server_dir(rig, "e"), Some(want));
    for (n, body) in files {
        let got = rig.server_file(&format!("e/{n}")).unwrap();
        assert!(got == *body, "server e/{n}: {} bytes differ", got.len());
        let got = read_path(&core, &format!("e/{n}")).unwrap();
        assert!(got == *body, "core e/{n}: {} bytes differ", got.len());
        assert_eq!(read_path(&core, &format!("d/{n}")), None);
    }
    let left = server_dir(rig, "d");
    assert!(
        left.as_ref().is_none_or(|v| v.is_empty()),
        "left under d on the server: {left:?}"
    );
    if left.is_none() {
        assert_eq!(
            core.lookup(ROOT, name("d")).unwrap_err().errno(),
            libc::ENOENT
        );
    }
    let spooled = rig.spool.path().join("data");
    assert_eq!(std::fs::read_dir(&spooled).unwrap().count(), 0);
    core.shutdown();
    drop(core);
    // A new mount on the same spool: nothing pending, nothing re-uploaded.
    let core = rig.core();
    assert!(core.uploader().status().is_empty());
    assert!(core.kept_open.is_empty());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(core.uploader().bytes_sent(), 0);
    for (n, body) in files {
        assert!(rig.server_file(&format!("e/{n}")).unwrap() == *body);
    }
    core.shutdown();
}

over_both! {
    /// `mv d e` while the files under `d` upload (one in flight at 256 KiB/s,
    /// the others queued): every file lands complete under `e`, once, and
    /// nothing is left under `d`.
    fn fs_rename_directory_with_pending_uploads() {
        let rig = Rig::new();
        let core = rig.core_bw(Some(256 * 1024));
        let d = core.mkdir(ROOT, name("d")).unwrap().ino;
        let files: Vec<(&str, Vec<u8>)> = ["f1", "f2", "f3"]
            .iter()
            .enumerate()
            .map(|(i, n)| (*n, data(512 * 1024, 20 + i as u32)))
            .collect();
        for (n, body) in &files {
            put_in(&core, d, n, body);
        }
        wait_in_flight(&core, "d/f1");
        // Nothing has finished yet: each file is in flight or queued.
        assert_eq!(core.uploader().status().len(), files.len());
        core.rename(ROOT, name("d"), ROOT, name("e"), 0).unwrap();
        assert_eq!(
            core.lookup(ROOT, name("d")).unwrap_err().errno(),
            libc::ENOENT
        );
        for (n, body) in &files {
            assert!(
                read_path(&core, &format!("e/{n}")).unwrap() == *body,
                "e/{n}"
            );
        }
        check_dir_renamed(&rig, core, &files);
    }
}

over_both! {
    /// `mv d e` right after the upload of `d/f1` committed but before the fs
    /// heard of it (held by `hold_upload_completions`): `f1` is on the server
    /// under `d` and moves with the directory; the others follow as jobs.
    fn fs_rename_directory_right_after_an_upload_finished() {
        let rig = Rig::new();
        let core = rig.core_bw(Some(256 * 1024));
        let d = core.mkdir(ROOT, name("d")).unwrap().ino;
        let files: Vec<(&str, Vec<u8>)> = [("f1", 4096usize), ("f2", 512 * 1024), ("f3", 512 * 1024)]
            .iter()
            .enumerate()
            .map(|(i, (n, len))| (*n, data(*len, 30 + i as u32)))
            .collect();
        {
            let _held = core.hold_upload_completions();
            put_in(&core, d, "f1", &files[0].1);
            // Committed: f1 complete on the server, its spooled data dropped.
            let spooled = rig.spool.path().join("data");
            let deadline = std::time::Instant::now() + WAIT;
            while std::fs::read_dir(&spooled).unwrap().next().is_some()
                || rig.server_file("d/f1").as_ref() != Some(&files[0].1)
            {
                assert!(std::time::Instant::now() < deadline, "f1 never committed");
                std::thread::sleep(Duration::from_millis(10));
            }
            for (n, body) in &files[1..] {
                put_in(&core, d, n, body);
            }
            wait_in_flight(&core, "d/f2");
            core.rename(ROOT, name("d"), ROOT, name("e"), 0).unwrap();
            for (n, body) in &files {
                assert!(
                    read_path(&core, &format!("e/{n}")).unwrap() == *body,
                    "e/{n}"
                );
                assert_eq!(read_path(&core, &format!("d/{n}")), None);
            }
        }
        check_dir_renamed(&rig, core, &files);
    }
}
