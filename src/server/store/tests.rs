//! The store's API on a real directory (the temp dir's filesystem must
//! hold user extended attributes, as keyftpd's roots must).

use std::io::Read;

use super::*;
use crate::key::Key;

fn v(p: &str) -> VPath {
    VPath::root().resolve(p).unwrap_or_default()
}

fn mode(start: Start, key: Option<u32>, owner: &str) -> Mode {
    Mode {
        start,
        key: key.map(Key),
        owner: owner.into(),
        claim: None,
    }
}

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::open(dir.path(), false).expect("open store");
    (dir, s)
}

#[test]
fn upload_lifecycle_records_partial_then_complete() -> Result<(), StoreError> {
    let (dir, s) = store();
    let data = b"hello, store";
    let k = crc32fast::hash(data);
    let mut up = s.begin_upload(&v("a/../f"), mode(Start::Replace, Some(k), "u"))?;
    assert_eq!(s.meta(&v("f"))?.map(|m| m.state), Some(KeyState::Partial));
    up.write(&data[..5])?;
    up.write(&data[5..])?;
    let done = up.finish(true)?;
    assert_eq!(
        (done.state, done.len, done.crc),
        (KeyState::Complete, 12, k)
    );
    let st = s.stat(&v("f"))?;
    assert_eq!(st.trusted_crc(), Some(k));
    assert_eq!(s.crc(&v("f"), None)?, k);
    assert_eq!(s.crc(&v("f"), Some((0, 5)))?, crc32fast::hash(b"hello"));
    assert_eq!(
        s.crc(&v("f"), Some((0, 13))).map_err(|e| e.kind),
        Err(ErrorKind::Conflict)
    );
    // Resume without a key keeps the stored one; a cut at 5 then the rest.
    let mut up = s.begin_upload(&v("f"), mode(Start::At(5), None, "u"))?;
    assert_eq!(up.key(), Some(Key(k)));
    up.write(&data[5..])?;
    assert_eq!(up.finish(true)?.state, KeyState::Complete);
    let mut got = Vec::new();
    s.open_read(&v("f"))?
        .0
        .read_to_end(&mut got)
        .map_err(|e| StoreError::io("read", &e))?;
    assert_eq!(got, data);
    assert_eq!(
        s.begin_upload(&v("f"), mode(Start::At(13), None, "u"))
            .map(|_| ())
            .map_err(|e| e.kind),
        Err(ErrorKind::Conflict)
    );
    // The record is on the file: a rename carries it, a delete drops it.
    s.rename(&v("f"), &v("g"))?;
    assert_eq!(s.stat(&v("g"))?.trusted_crc(), Some(k));
    s.delete(&v("g"))?;
    assert!(!dir.path().join("g").exists());
    Ok(())
}

#[test]
fn second_uploader_is_busy_and_abandon_changes_nothing() -> Result<(), StoreError> {
    let (dir, s) = store();
    std::fs::write(dir.path().join("f"), b"old").map_err(|e| StoreError::io("w", &e))?;
    let before = s.set_meta(&v("f"), Some(Key(7)), KeyState::Complete)?;
    let up = s.begin_upload(&v("f"), mode(Start::Replace, Some(1), "u"))?;
    for m in [
        mode(Start::Replace, Some(2), "u"),
        mode(Start::Replace, Some(1), "other"),
        mode(Start::Replace, None, "u"),
    ] {
        let r = s.begin_upload(&v("f"), m).map(|_| ());
        assert_eq!(r.map_err(|e| e.kind), Err(ErrorKind::Busy));
    }
    assert_eq!(s.delete(&v("f")).map_err(|e| e.kind), Err(ErrorKind::Busy));
    assert_eq!(
        s.check_idle(&v("f")).map_err(|e| e.kind),
        Err(ErrorKind::Busy)
    );
    up.abandon();
    assert_eq!(
        std::fs::read(dir.path().join("f")).ok(),
        Some(b"old".to_vec())
    );
    let st = s.stat(&v("f"))?;
    let after = st.meta.map(|m| (m.key, m.state, m.crc, m.len));
    assert_eq!(
        after,
        Some((before.key, before.state, before.crc, before.len))
    );
    assert_eq!(st.trusted_crc(), Some(before.crc));
    // A new file abandoned before its data is gone again.
    s.begin_upload(&v("new"), mode(Start::Replace, None, "u"))?
        .abandon();
    assert!(!dir.path().join("new").exists());
    Ok(())
}

#[test]
fn same_owner_and_key_takes_over() -> Result<(), StoreError> {
    let (_dir, s) = store();
    let mut old = s.begin_upload(&v("t"), mode(Start::Replace, Some(9), "u"))?;
    old.write(b"abc")?;
    // Still receiving: the newcomer is told the file is busy, at once.
    let t0 = std::time::Instant::now();
    let busy = s.begin_upload(&v("t"), mode(Start::At(2), Some(9), "u"));
    assert_eq!(busy.map(|_| ()).map_err(|e| e.kind), Err(ErrorKind::Busy));
    assert!(t0.elapsed() < std::time::Duration::from_secs(1));
    assert!(!old.taken_over());
    // Silent for over a second (stalled): the newcomer takes it over.
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let s2 = s.clone();
    let taker = std::thread::spawn(move || {
        s2.begin_upload(&v("t"), mode(Start::At(2), Some(9), "u"))
            .map(|u| u.offset())
    });
    // The old transfer notices (as a receive loop would) and ends.
    let t0 = std::time::Instant::now();
    while !old.taken_over() {
        assert!(t0.elapsed() < std::time::Duration::from_secs(10));
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(old.finish(false)?.state, KeyState::Partial);
    assert_eq!(
        taker
            .join()
            .map_err(|_| StoreError::new(ErrorKind::Io, "join"))?,
        Ok(2)
    );
    Ok(())
}

#[test]
fn special_files_and_escapes_are_refused() -> Result<(), StoreError> {
    let (dir, s) = store();
    let p = std::ffi::CString::new(dir.path().join("fifo").as_os_str().as_encoded_bytes())
        .map_err(|_| StoreError::new(ErrorKind::Io, "path"))?;
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(p.as_ptr(), 0o644) }, 0);
    assert_eq!(
        s.stat(&v("fifo")).map(|_| ()).map_err(|e| e.kind),
        Err(ErrorKind::NotRegular)
    );
    assert_eq!(
        s.open_read(&v("fifo")).map(|_| ()).map_err(|e| e.kind),
        Err(ErrorKind::NotRegular)
    );
    let r = s
        .begin_upload(&v("fifo"), mode(Start::Replace, None, "u"))
        .map(|_| ());
    assert_eq!(r.map_err(|e| e.kind), Err(ErrorKind::NotRegular));
    std::os::unix::fs::symlink("/etc", dir.path().join("out"))
        .map_err(|e| StoreError::io("ln", &e))?;
    assert_eq!(
        s.stat(&v("out/passwd")).map(|_| ()).map_err(|e| e.kind),
        Err(ErrorKind::Denied)
    );
    std::os::unix::fs::symlink("../..", dir.path().join("up"))
        .map_err(|e| StoreError::io("ln", &e))?;
    assert_eq!(
        s.list(&v("up")).map(|_| ()).map_err(|e| e.kind),
        Err(ErrorKind::Denied)
    );
    std::fs::write(dir.path().join("f"), b"in").map_err(|e| StoreError::io("w", &e))?;
    std::os::unix::fs::symlink("f", dir.path().join("inl"))
        .map_err(|e| StoreError::io("ln", &e))?;
    for plain in [false, true] {
        let l = if plain {
            s.list_plain(&VPath::root())?
        } else {
            s.list(&VPath::root())?
        };
        let names: Vec<String> = l.into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["f", "inl"]);
    }
    Ok(())
}

#[test]
fn a_refused_upload_of_a_new_name_leaves_nothing() {
    let (dir, s) = store();
    let r = s
        .begin_upload(&v("n"), mode(Start::At(5), None, "u"))
        .map(|_| ());
    assert_eq!(r.map_err(|e| e.kind), Err(ErrorKind::Conflict));
    assert!(!dir.path().join("n").exists());
}
