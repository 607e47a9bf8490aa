//! A full disk, on a small tmpfs root (mounted here, unmounted after):
//! no 226 without a recorded state, and after a kill -9 keyftpd starts and
//! serves, with the recorded states as the clients were told.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};

use support::keyftpd::Keyftpd;

/// A tmpfs mounted for the test; unmounted on drop (after the servers).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, opts: &str) -> Tmpfs {
        std::fs::create_dir_all(at).expect("mkdir");
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", opts, "keyftpd-test"])
            .arg(at)
            .status()
            .expect("run mount");
        assert!(st.success(), "mount tmpfs (needs root)");
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// The recorded state of `path` (`p` or `c`, from the user.keyftpd
/// attribute), read directly.
fn state_on_disk(path: &Path) -> Option<char> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    let mut buf = [0u8; 256];
    // SAFETY: valid NUL-terminated strings and a buffer of the given size.
    let n = unsafe {
        libc::getxattr(
            c.as_ptr(),
            c"user.keyftpd".as_ptr(),
            buf.as_mut_ptr() as *mut libc::c_void,
            buf.len(),
        )
    };
    if n < 0 {
        return None;
    }
    let text = std::str::from_utf8(&buf[..n as usize]).ok()?;
    text.split(' ').nth(2)?.chars().next()
}

/// Sets a `size`-byte attribute `name` on `path`; false if it fails.
fn set_xattr(path: &Path, name: &str, size: usize) -> bool {
    let (Ok(p), Ok(n)) = (
        std::ffi::CString::new(path.as_os_str().as_encoded_bytes()),
        std::ffi::CString::new(name),
    ) else {
        return false;
    };
    let v = vec![1u8; size];
    // SAFETY: valid NUL-terminated strings and a buffer of the given size.
    unsafe {
        libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            v.as_ptr() as *const libc::c_void,
            size,
            0,
        ) == 0
    }
}

fn remove_xattr(path: &Path, name: &str) {
    if let (Ok(p), Ok(n)) = (
        std::ffi::CString::new(path.as_os_str().as_encoded_bytes()),
        std::ffi::CString::new(name),
    ) {
        // SAFETY: valid NUL-terminated strings.
        unsafe { libc::removexattr(p.as_ptr(), n.as_ptr()) };
    }
}

#[test]
fn full_disk_never_says_226_without_a_recorded_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    // Few inodes: the attribute space of tmpfs runs out with them, so some
    // files can be created but not recorded.
    let _fs = Tmpfs::mount(&root, "size=1m,nr_inodes=24");
    // Fill the blocks.
    let mut filler = std::fs::File::create(root.join("filler")).expect("filler");
    let chunk = vec![7u8; 64 * 1024];
    while filler.write_all(&chunk).is_ok() {}
    drop(filler);
    // Attribute space set aside now, freed bit by bit below.
    let filler_path = root.join("filler");
    for i in 0..4 {
        assert!(set_xattr(
            &filler_path,
            &format!("user.a{i}"),
            1000 + 60 * i
        ));
    }

    let mut srv = Keyftpd::start(&root, &[]);
    let mut c = srv.login();
    let mut told = Vec::new();
    for i in 0..60 {
        let name = format!("e{i:02}");
        let mut d = c.data();
        let (code, text) = c.cmd(&format!("STOR {name}"));
        let code = if code == 150 {
            drop(d.flush());
            drop(d);
            c.read_reply().0
        } else {
            assert!((400..600).contains(&code), "{text}");
            code
        };
        told.push((name, code));
    }
    // Now also the attribute space: fill it with attributes on the filler,
    // then free a little at a time, so that files can be created but their
    // records may not fit (tmpfs keeps attributes in the inode space).
    let mut size = 64 * 1024;
    let mut n = 0;
    while size > 0 {
        if !set_xattr(&filler_path, &format!("user.f{n}"), size) {
            size /= 2;
        }
        n += 1;
    }
    for i in 0..4 {
        remove_xattr(&filler_path, &format!("user.a{i}"));
        for j in 0..3 {
            let name = format!("x{i}{j}");
            let d = c.data();
            let (code, text) = c.cmd(&format!("KEY {}", support::keyftpd::key_of(b"")));
            assert_eq!(code, 230, "{text}");
            let (code, text) = c.cmd(&format!("STOR {name}"));
            let code = if code == 150 {
                drop(d);
                c.read_reply().0
            } else {
                assert!((400..600).contains(&code), "{text}");
                code
            };
            told.push((name, code));
        }
    }
    // A data upload on the full disk is refused too.
    let mut d = c.data();
    if c.cmd("STOR big").0 == 150 {
        let _ = d.write_all(&chunk);
        drop(d);
        assert_ne!(c.read_reply().0, 226);
    }
    let ok = told.iter().filter(|(_, code)| *code == 226).count();
    assert!(ok < 60, "the disk was never full: {told:?}");
    for (name, code) in &told {
        let st = state_on_disk(&root.join(name));
        if *code == 226 {
            assert_eq!(st, Some('c'), "{name} said 226 without a state");
        } else {
            assert_ne!(st, Some('c'), "{name} said {code} but is complete");
        }
    }
    drop(c);

    // kill -9, then a restart on the still full disk: it serves.
    srv.kill();
    let srv = Keyftpd::start(&root, &[]);
    let mut c = srv.login();
    let listed = c.listing("NLST");
    assert!(listed.iter().any(|n| n == "filler"), "{listed:?}");
    for (name, code) in told.iter().filter(|(_, code)| *code == 226) {
        let (_, text) = c.cmd(&format!("MLST {name}"));
        assert!(
            text.contains("x.keystate=complete;"),
            "{name} ({code}): {text}"
        );
    }
    let (data, code) = c.download(&told[0].0);
    assert_eq!((data.len(), code), (0, 226));
    assert_eq!(c.cmd("DELE filler").0, 250);
    assert!(!root.join("filler").exists());
    // With space again, an upload is recorded as usual.
    assert_eq!(c.upload("STOR after", b"room again").0, 226);
    assert_eq!(state_on_disk(&root.join("after")), Some('c'));
    drop(c);
    drop(srv);
}
