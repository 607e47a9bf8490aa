//! Names the server cannot take are refused when they are made, with
//! ENAMETOOLONG: a path that would not fit in an FTP command line (before,
//! a file was spooled and its upload failed for good with `500 Command line
//! too long`, and a mkdir gave ENOSYS), and a name over 255 bytes. A path
//! right at the limit works, upload included.

use std::ffi::OsStr;

use keyfs::fs::{inode::ROOT, names::MAX_REMOTE_PATH};

#[path = "support/core_rig.rs"]
mod core_rig;
use core_rig::{Rig, WAIT};

fn errno_of<T: std::fmt::Debug>(r: keyfs::fs::FsResult<T>) -> i32 {
    r.expect_err("should fail").errno()
}

#[test]
fn fs_too_long_paths_are_refused_when_made() {
    let rig = Rig::new();
    let core = rig.core();
    // Nested directories of 200-byte names, up to about 3,800 bytes.
    let mut parent = ROOT;
    let mut path = String::new();
    for i in 0..19 {
        let name = format!("{i:02}{}", "d".repeat(198));
        parent = core.mkdir(parent, OsStr::new(&name)).unwrap().ino;
        path = if path.is_empty() {
            name
        } else {
            format!("{path}/{name}")
        };
    }
    let room = MAX_REMOTE_PATH - 1 - path.len() - 1; // "/" + path + "/" + name
    assert!(room > 10 && room < 255, "{room}");
    let fits = "f".repeat(room);
    let over = "g".repeat(room + 1);
    // mkdir, create and rename of a name one byte too long: ENAMETOOLONG.
    assert_eq!(
        errno_of(core.mkdir(parent, OsStr::new(&over))),
        libc::ENAMETOOLONG
    );
    assert_eq!(
        errno_of(core.create(parent, OsStr::new(&over), libc::O_WRONLY)),
        libc::ENAMETOOLONG
    );
    // One that fits is written and uploaded: every command keyfs sends
    // with it fits in the server's line.
    let (_, o) = core
        .create(parent, OsStr::new(&fits), libc::O_WRONLY)
        .unwrap();
    core.write(o.fh, 0, b"long").unwrap();
    core.release(o.fh).unwrap();
    let rel = format!("{path}/{fits}");
    core.uploader().wait(&rel, WAIT).unwrap();
    assert_eq!(rig.server_file(&rel).unwrap(), b"long");
    assert_eq!(
        errno_of(core.rename(parent, OsStr::new(&fits), parent, OsStr::new(&over), 0)),
        libc::ENAMETOOLONG
    );
    assert_eq!(rig.server_file(&rel).unwrap(), b"long");
    core.mkdir(parent, OsStr::new(&fits[1..])).unwrap();
    core.shutdown();
}

#[test]
fn fs_names_over_255_bytes_are_enametoolong() {
    let rig = Rig::new();
    let core = rig.core();
    let long = "n".repeat(256);
    let n = OsStr::new(&long);
    assert_eq!(errno_of(core.lookup(ROOT, n)), libc::ENAMETOOLONG);
    assert_eq!(errno_of(core.mkdir(ROOT, n)), libc::ENAMETOOLONG);
    assert_eq!(
        errno_of(core.create(ROOT, n, libc::O_WRONLY)),
        libc::ENAMETOOLONG
    );
    core.mkdir(ROOT, OsStr::new(&long[1..])).unwrap();
    core.shutdown();
}
