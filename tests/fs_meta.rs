//! setattr's mtime, mode and owner through the fs core (no FUSE), against
//! keyftpd over FTP (MFMT) and over HTTP (PROPPATCH), which keep times but
//! not modes: the times and modes a program sets show at once on a file
//! being written or waiting for upload, go with its upload job (they
//! survive a remount) and the time lands on the server after the upload;
//! on a file only on the server the time is set at once and the mode is
//! accepted without effect (rclone mount's rule); a chown to another owner
//! is EPERM. The SITE CHMOD side is `scripts/tests/keyfs_times_modes.sh`
//! (pure-ftpd).

use std::ffi::OsStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use keyfs::fs::inode::ROOT;
use keyfs::fs::meta::{MtimeSet, SetMeta};

#[path = "support/core_rig.rs"]
#[macro_use]
mod core_rig;
use core_rig::{data, Rig, WAIT};

fn name(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn at(secs: u64, nanos: u32) -> SystemTime {
    UNIX_EPOCH + Duration::new(secs, nanos)
}

over_both! {
    fn owner_changes_are_refused_no_ops_accepted() {
        let rig = Rig::new();
        std::fs::write(rig.root.path().join("o.txt"), b"x").unwrap();
        let core = rig.core();
        let a = core.lookup(ROOT, name("o.txt")).unwrap();
        let chown = |uid, gid| SetMeta {
            uid,
            gid,
            ..SetMeta::default()
        };
        let e = core
            .setattr_with(a.ino, None, chown(Some(12345), None))
            .unwrap_err();
        assert_eq!(e.errno(), libc::EPERM);
        let e = core
            .setattr_with(a.ino, None, chown(None, Some(12345)))
            .unwrap_err();
        assert_eq!(e.errno(), libc::EPERM);
        core.setattr_with(a.ino, None, chown(Some(a.uid), Some(a.gid)))
            .expect("a chown to the owner shown");
        core.shutdown();
    }
}

over_both! {
    fn keyftpd_keeps_a_server_files_mtime_and_its_mode_as_it_is() {
        // keyftpd sets times (MFMT, PROPPATCH) but keeps no modes: the time
        // is kept on the server, the mode request is accepted and changes
        // nothing.
        let rig = Rig::new();
        std::fs::write(rig.root.path().join("s.txt"), b"server").unwrap();
        let core = rig.core();
        let a = core.lookup(ROOT, name("s.txt")).unwrap();
        let got = core
            .setattr_with(
                a.ino,
                None,
                SetMeta {
                    mtime: Some(MtimeSet::At(at(978_307_200, 0))),
                    mode: Some(0o600),
                    ..SetMeta::default()
                },
            )
            .expect("accepted");
        assert_eq!(got.perm, 0o644, "the mode is the server's");
        let md = std::fs::metadata(rig.root.path().join("s.txt")).unwrap();
        assert_eq!(
            md.modified().unwrap(),
            at(978_307_200, 0),
            "the time reached the server"
        );
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&md.permissions()) & 0o777,
            0o644
        );
        assert_eq!(got.mtime, at(978_307_200, 0));
        core.shutdown();
    }
}

over_both! {
    fn a_pending_file_shows_what_was_set_and_its_job_keeps_it_across_a_remount() {
        let rig = Rig::new();
        let t = at(1_000_000_000, 123_456_789);
        let d = data(600_000, 5);
        {
            // A slow upload (50 kB/s) keeps the file pending.
            let core = rig.core_bw(Some(50_000));
            let (a, o) = core.create(ROOT, name("p.bin"), libc::O_WRONLY).unwrap();
            core.write(o.fh, 0, &d).unwrap();
            // cp -p: time and mode set while the file is open for writing.
            let meta = SetMeta {
                mtime: Some(MtimeSet::At(t)),
                mode: Some(0o100640),
                ..SetMeta::default()
            };
            let got = core.setattr_with(a.ino, None, meta).unwrap();
            assert_eq!((got.mtime, got.perm), (t, 0o640));
            core.release(o.fh).unwrap();
            // Sealed: still what was set, not the time of the close.
            let got = core.getattr(a.ino).unwrap();
            assert_eq!((got.mtime, got.perm), (t, 0o640));
            // Set again while queued: goes to the job's record.
            let t2 = at(1_100_000_000, 5);
            let meta = SetMeta {
                mtime: Some(MtimeSet::At(t2)),
                ..SetMeta::default()
            };
            let got = core.setattr_with(a.ino, None, meta).unwrap();
            assert_eq!((got.mtime, got.perm), (t2, 0o640));
            core.shutdown();
        }
        let core = rig.core();
        let a = core.lookup(ROOT, name("p.bin")).unwrap();
        assert_eq!((a.mtime, a.perm), (at(1_100_000_000, 5), 0o640));
        core.uploader().wait("p.bin", WAIT).unwrap();
        assert_eq!(rig.server_file("p.bin").unwrap(), d);
        // The time follows the verified upload (whole seconds).
        let deadline = std::time::Instant::now() + WAIT;
        let server_mtime = || {
            std::fs::metadata(rig.root.path().join("p.bin"))
                .and_then(|m| m.modified())
                .ok()
        };
        while server_mtime() != Some(at(1_100_000_000, 0)) {
            assert!(
                std::time::Instant::now() < deadline,
                "server mtime {:?} over {:?}",
                server_mtime(),
                rig.scheme
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        core.shutdown();
    }
}
