//! The store confined by construction, against a real keyftpd: a symlink
//! swapped between an inside and an outside directory while a client
//! reads, checksums and writes through it; special files; the old
//! metadata directory name; MFMT; a root that cannot hold attributes.

mod support;

use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::keyftpd::{key_of, pattern, server};

/// Points `link` at `target` atomically (a new symlink renamed over it).
fn point(link: &Path, target: &Path) {
    let tmp = link.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    if std::os::unix::fs::symlink(target, &tmp).is_ok() {
        let _ = std::fs::rename(&tmp, link);
    }
}

/// A local user flips ROOT/swap between `in` (inside) and a directory
/// outside the root for 5 s while a client loops RETR, XCRC and STOR
/// through it: nothing is ever read from or written outside.
#[test]
fn symlink_swap_never_leads_outside() {
    let (d, srv) = server(&[]);
    let outside = d.path().join("outside");
    std::fs::create_dir(&outside).expect("mkdir");
    let secret_out = b"OUTSIDE-SECRET-0123456789".to_vec();
    let secret_in = b"inside-content-0123456789".to_vec();
    std::fs::write(outside.join("secret"), &secret_out).expect("write");
    std::fs::create_dir(srv.root.join("in")).expect("mkdir");
    std::fs::write(srv.root.join("in/secret"), &secret_in).expect("write");
    let link = srv.root.join("swap");
    point(&link, Path::new("in"));

    let stop = Arc::new(AtomicBool::new(false));
    let flipper = {
        let (stop, link, outside) = (stop.clone(), link.clone(), outside.clone());
        std::thread::spawn(move || {
            let mut flips = 0u64;
            while !stop.load(Ordering::SeqCst) {
                point(&link, &outside);
                point(&link, Path::new("in"));
                flips += 1;
            }
            flips
        })
    };
    let mut c = srv.login();
    let out_crc = format!("{:08X}", crc32fast::hash(&secret_out));
    let (mut reads, mut crcs, mut writes) = (0, 0, 0);
    let t0 = Instant::now();
    let mut n = 0;
    while t0.elapsed() < Duration::from_secs(5) {
        n += 1;
        // RETR: whatever succeeds must be the inside file.
        let mut dc = c.data();
        let (code, _) = c.cmd("RETR swap/secret");
        if code == 150 {
            let mut buf = Vec::new();
            let _ = dc.read_to_end(&mut buf);
            let _ = c.read_reply();
            assert_ne!(buf, secret_out, "RETR read the outside file");
            reads += 1;
        }
        drop(dc);
        let (code, text) = c.cmd("XCRC swap/secret");
        if code == 250 {
            assert!(!text.contains(&out_crc), "XCRC of the outside file: {text}");
            crcs += 1;
        }
        let mut dc = c.data();
        let (code, _) = c.cmd(&format!("STOR swap/w{n}"));
        if code == 150 {
            let _ = dc.write_all(b"written");
            drop(dc);
            let _ = c.read_reply();
            writes += 1;
        }
    }
    stop.store(true, Ordering::SeqCst);
    let flips = flipper.join().expect("flipper");
    let names: Vec<_> = std::fs::read_dir(&outside)
        .expect("read outside")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        names,
        vec![std::ffi::OsString::from("secret")],
        "written outside"
    );
    assert_eq!(std::fs::read(outside.join("secret")).ok(), Some(secret_out));
    assert!(
        flips > 0 && reads + crcs + writes > 0,
        "{flips} {reads} {crcs} {writes}"
    );
    eprintln!("{n} rounds, {flips} flips: {reads} RETR, {crcs} XCRC, {writes} STOR inside");
}

/// A FIFO in the root: every command on it answers 550 at once, and the
/// session goes on (no read of the client's blocks on it).
#[test]
fn fifo_gets_550_and_never_blocks() {
    let (_d, srv) = server(&[]);
    let fifo = srv.root.join("pipe");
    let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o644) }, 0);
    let mut c = srv.login();
    let _dc = c.data();
    for cmd in [
        "RETR pipe",
        "XCRC pipe",
        "STOR pipe",
        "APPE pipe",
        "SIZE pipe",
        "MDTM pipe",
        "MLST pipe",
        "MFMT 20200101000000 pipe",
    ] {
        assert_eq!(c.cmd(cmd).0, 550, "{cmd}");
    }
    let names = c.listing("NLST");
    assert!(!names.iter().any(|n| n == "pipe"), "{names:?}");
    assert_eq!(c.cmd("NOOP").0, 200);
}

/// With metadata in attributes there is no `.keyftpd` to reach: a
/// symlink to that name dangles, and the name itself stays refused.
#[test]
fn meta_symlink_attack_is_moot() {
    let (_d, srv) = server(&[]);
    let mut c = srv.login();
    assert_eq!(c.upload("STOR f", b"data").0, 226);
    assert!(!srv.root.join(".keyftpd").exists());
    std::os::unix::fs::symlink(".keyftpd", srv.root.join("meta")).expect("symlink");
    assert_eq!(c.cmd("CWD meta").0, 550);
    assert_eq!(c.cmd("RETR meta/meta.log").0, 550);
    let _dc = c.data();
    assert_eq!(c.cmd("STOR meta/meta.log").0, 550);
    assert_eq!(c.cmd("MKD .keyftpd").0, 553);
    assert!(!srv.root.join(".keyftpd").exists());
}

/// MFMT sets the modification time (seen in MLST and on disk), keeps a
/// trusted key, and refuses bad arguments with 501.
#[test]
fn mfmt_sets_the_mtime() {
    let (_d, srv) = server(&[]);
    let mut c = srv.login();
    let (_, feat) = c.cmd("FEAT");
    assert!(feat.lines().any(|l| l.trim() == "MFMT"), "{feat}");
    let data = pattern(5000, 1);
    assert_eq!(c.cmd(&format!("KEY {}", key_of(&data))).0, 230);
    assert_eq!(c.upload("STOR t.bin", &data).0, 226);
    let (code, text) = c.cmd("MFMT 20200102030405 t.bin");
    assert_eq!(code, 213, "{text}");
    assert!(text.contains("Modify=20200102030405; t.bin"), "{text}");
    let (_, text) = c.cmd("MLST t.bin");
    assert!(text.contains("modify=20200102030405;"), "{text}");
    assert!(
        text.contains(&format!("x.key={};", key_of(&data))),
        "{text}"
    );
    let mtime = std::fs::metadata(srv.root.join("t.bin"))
        .and_then(|m| m.modified())
        .expect("mtime");
    assert_eq!(
        mtime.duration_since(std::time::UNIX_EPOCH).ok(),
        Some(Duration::from_secs(1_577_934_245))
    );
    assert_eq!(c.cmd("MDTM t.bin").1.trim(), "213 20200102030405");
    for bad in [
        "MFMT",
        "MFMT 20200102030405",
        "MFMT 2020010203040 t.bin",
        "MFMT 20201302030405 t.bin",
        "MFMT 20200230030405 t.bin",
        "MFMT 2020010203040x t.bin",
    ] {
        assert_eq!(c.cmd(bad).0, 501, "{bad}");
    }
    assert_eq!(c.cmd("MFMT 20200102030405 none.bin").0, 550);
}

/// A root on a filesystem without user extended attributes (ramfs) is
/// refused at start with one line naming the filesystem.
#[test]
fn root_without_xattrs_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mnt = dir.path().join("ramfs");
    std::fs::create_dir(&mnt).expect("mkdir");
    let st = std::process::Command::new("mount")
        .args(["-t", "ramfs", "none"])
        .arg(&mnt)
        .status()
        .expect("run mount");
    assert!(st.success(), "mount ramfs (needs root)");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keyftpd"))
        .arg("--root")
        .arg(&mnt)
        .args(["--listen", "127.0.0.1:0", "--user", "u"])
        .env("KEYFTPD_PASSWORD", "pw")
        .env("RUST_LOG", "off")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run keyftpd");
    let _ = std::process::Command::new("umount").arg(&mnt).status();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("ramfs") && err.contains("extended attributes"),
        "{err}"
    );
}
