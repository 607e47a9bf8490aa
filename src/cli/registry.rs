//! Which spool (and daemon) serves a mount point, for `keyfs status`,
//! `keyfs wait` and `keyfs umount` given a MOUNTPOINT: one small file per
//! mount in a runtime directory (`$XDG_RUNTIME_DIR/keyfs`, else
//! `/run/keyfs` for root, else `/tmp/keyfs-UID`), written at mount and
//! removed at exit. A stale entry (its daemon gone) is ignored.

use std::path::{Path, PathBuf};

/// One running mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub pid: u32,
    pub mountpoint: PathBuf,
    pub spool: PathBuf,
}

fn dirs() -> Vec<PathBuf> {
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    let mut v = Vec::new();
    if let Some(x) = std::env::var_os("XDG_RUNTIME_DIR").filter(|x| Path::new(x).is_absolute()) {
        v.push(PathBuf::from(x).join("keyfs"));
    }
    if uid == 0 {
        v.push(PathBuf::from("/run/keyfs"));
    } else {
        v.push(PathBuf::from(format!("/tmp/keyfs-{uid}")));
    }
    // A mount made by root (fstab) is found by other users too.
    v.push(PathBuf::from("/run/keyfs"));
    v.dedup();
    v
}

fn file_name(mountpoint: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    format!(
        "{:08x}.mount",
        crc32fast::hash(mountpoint.as_os_str().as_bytes())
    )
}

fn encode(e: &Entry) -> Option<String> {
    let m = e.mountpoint.to_str()?;
    let s = e.spool.to_str()?;
    if m.contains('\n') || s.contains('\n') {
        return None;
    }
    Some(format!("pid={}\nmount={m}\nspool={s}\n", e.pid))
}

fn decode(text: &str) -> Option<Entry> {
    let mut pid = None;
    let mut mount = None;
    let mut spool = None;
    for l in text.lines() {
        match l.split_once('=') {
            Some(("pid", v)) => pid = v.parse().ok(),
            Some(("mount", v)) => mount = Some(PathBuf::from(v)),
            Some(("spool", v)) => spool = Some(PathBuf::from(v)),
            _ => {}
        }
    }
    Some(Entry {
        pid: pid?,
        mountpoint: mount?,
        spool: spool?,
    })
}

/// Records `e`; returns the file to remove at exit.
pub fn add(e: &Entry) -> Option<PathBuf> {
    let text = encode(e)?;
    for d in dirs() {
        if std::fs::create_dir_all(&d).is_err() {
            continue;
        }
        let f = d.join(file_name(&e.mountpoint));
        let tmp = d.join(format!("{}.tmp{}", file_name(&e.mountpoint), e.pid));
        if std::fs::write(&tmp, &text).is_ok() && std::fs::rename(&tmp, &f).is_ok() {
            return Some(f);
        }
        let _ = std::fs::remove_file(&tmp);
    }
    None
}

/// Removes the entry file if it still names this process.
pub fn remove(file: &Path) {
    let ours = std::fs::read_to_string(file)
        .ok()
        .and_then(|t| decode(&t))
        .is_some_and(|e| e.pid == std::process::id());
    if ours {
        let _ = std::fs::remove_file(file);
    }
}

/// The running mount at `mountpoint` (canonical), if any.
pub fn find(mountpoint: &Path) -> Option<Entry> {
    dirs().into_iter().find_map(|d| {
        let text = std::fs::read_to_string(d.join(file_name(mountpoint))).ok()?;
        decode(&text).filter(|e| e.mountpoint == mountpoint && super::live::alive(e.pid))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let e = Entry {
            pid: 7,
            mountpoint: "/mnt/a b".into(),
            spool: "/var/spool/keyfs".into(),
        };
        assert_eq!(decode(&encode(&e).unwrap()), Some(e.clone()));
        let bad = Entry {
            mountpoint: "/mnt/a\nb".into(),
            ..e
        };
        assert_eq!(encode(&bad), None);
        assert_eq!(decode("pid=x\nmount=/m\nspool=/s\n"), None);
    }
}
