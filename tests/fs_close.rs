//! close(2) and the upload queue, driven without FUSE against a real
//! in-process keyftpd over FTP and over HTTP: the opener's close queues a
//! file's upload before the kernel's release, so a daemon killed in
//! between still uploads it at the next mount.

use std::ffi::OsStr;
use std::time::Duration;

use keyfs::fs::inode::ROOT;

#[path = "support/core_rig.rs"]
#[macro_use]
mod core_rig;
use core_rig::{Rig, WAIT};

fn name(s: &str) -> &OsStr {
    OsStr::new(s)
}

over_both! {
    /// close(2) (flush) of a file's only writer queues its upload, so a daemon
    /// killed before the kernel's asynchronous release still uploads the file
    /// at the next mount; a later write through the same open file (a dup'd
    /// descriptor) starts a new version that release queues in turn.
    fn fs_close_queues_the_upload_before_release() {
        let rig = Rig::new();
        {
            let core = rig.core();
            let (_, o) = core.create(ROOT, name("closed"), libc::O_WRONLY).unwrap();
            core.write(o.fh, 0, b"closed by cp").unwrap();
            core.flush(o.fh, 0).unwrap();
            // No release: the daemon "dies" here.
            core.shutdown();
        }
        let core = rig.core();
        assert!(core.kept_open.is_empty(), "{:?}", core.kept_open);
        core.uploader().wait("closed", WAIT).unwrap();
        assert_eq!(rig.server_file("closed").unwrap(), b"closed by cp");

        let (_, o) = core.create(ROOT, name("dup"), libc::O_WRONLY).unwrap();
        core.write(o.fh, 0, b"first").unwrap();
        core.flush(o.fh, 0).unwrap();
        core.write(o.fh, 5, b" and more").unwrap();
        core.flush(o.fh, 0).unwrap();
        core.release(o.fh).unwrap();
        let deadline = std::time::Instant::now() + WAIT;
        while rig.server_file("dup").as_deref() != Some(b"first and more".as_slice())
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(rig.server_file("dup").unwrap(), b"first and more");

        // A close by another process (a child with an inherited descriptor)
        // leaves the version to its opener, whose close queues it.
        let (_, o) = core
            .create_by(ROOT, name("shared"), libc::O_WRONLY, 100)
            .unwrap();
        core.write(o.fh, 0, b"from the opener").unwrap();
        core.flush(o.fh, 200).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        assert!(rig.server_file("shared").is_none());
        core.write(o.fh, 15, b", then more").unwrap();
        core.flush(o.fh, 100).unwrap();
        core.uploader().wait("shared", WAIT).unwrap();
        assert_eq!(
            rig.server_file("shared").unwrap(),
            b"from the opener, then more"
        );
        core.release(o.fh).unwrap();

        // An empty version is left to release (a shell's `cmd > f` closes a
        // descriptor of `f` before `cmd` writes).
        let (_, o) = core.create(ROOT, name("empty"), libc::O_WRONLY).unwrap();
        core.flush(o.fh, 0).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        assert!(rig.server_file("empty").is_none());
        core.write(o.fh, 0, b"late").unwrap();
        core.release(o.fh).unwrap();
        core.uploader().wait("empty", WAIT).unwrap();
        assert_eq!(rig.server_file("empty").unwrap(), b"late");
        core.shutdown();
    }
}
