//! One-time migration of the old `ROOT/.keyftpd/meta.log` (an append-only
//! log of `S`et, `D`elete and `R`ename lines, replayed in order) into each
//! file's `user.keyftpd` attribute; then the log and its directory go.
//!
//! A record that cannot be written (a full disk) keeps the log for the
//! next start; keyftpd serves meanwhile. Records whose file is gone are
//! dropped. Lines from before the file identity was recorded migrate
//! without it, so their CRC is never trusted (nothing says the file was
//! not rewritten since): the cost is one read of the file when asked.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;

use super::super::paths::{VPath, META_DIR};
use super::{FileMeta, Ident, KeyState, Store};
use crate::key::Key;
use crate::spool::journal::percent_decode;

fn under(path: &str, dir: &str) -> bool {
    path.len() > dir.len() && path.starts_with(dir) && path.as_bytes()[dir.len()] == b'/'
}

fn apply_rename(map: &mut HashMap<String, FileMeta>, from: &str, to: &str) {
    map.retain(|k, _| k != to && !under(k, to));
    let moved: Vec<String> = map
        .keys()
        .filter(|k| *k == from || under(k, from))
        .cloned()
        .collect();
    for k in moved {
        if let Some(m) = map.remove(&k) {
            let nk = format!("{to}{}", &k[from.len()..]);
            map.insert(nk, m);
        }
    }
}

/// Applies one log line to `map`; None if it does not parse.
pub(super) fn parse_line(map: &mut HashMap<String, FileMeta>, line: &str) -> Option<()> {
    let mut it = line.split(' ');
    match it.next()? {
        "S" => {
            let path = percent_decode(it.next()?)?;
            let key = match it.next()? {
                "-" => None,
                h => Some(Key(u32::from_str_radix(h, 16).ok()?)),
            };
            let state = match it.next()? {
                "p" => KeyState::Partial,
                "c" => KeyState::Complete,
                _ => return None,
            };
            let crc = u32::from_str_radix(it.next()?, 16).ok()?;
            let len = it.next()?.parse().ok()?;
            let mtime_ns = it.next()?.parse().ok()?;
            let ident = match it.next() {
                None => None,
                Some(dev) => Some(Ident {
                    dev: dev.parse().ok()?,
                    ino: it.next()?.parse().ok()?,
                    ctime_ns: it.next()?.parse().ok()?,
                }),
            };
            if it.next().is_some() {
                return None;
            }
            map.insert(
                path,
                FileMeta {
                    key,
                    state,
                    crc,
                    len,
                    mtime_ns,
                    ident,
                },
            );
        }
        "D" => {
            let path = percent_decode(it.next()?)?;
            map.remove(&path);
        }
        "R" => {
            let from = percent_decode(it.next()?)?;
            let to = percent_decode(it.next()?)?;
            apply_rename(map, &from, &to);
        }
        _ => return None,
    }
    Some(())
}

/// The type of the filesystem `path` is on, from /proc/self/mounts.
pub(super) fn fs_name(path: &Path) -> String {
    let Ok(text) = std::fs::read_to_string("/proc/self/mounts") else {
        return "a filesystem".into();
    };
    let mut best: Option<(usize, String)> = None;
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        if f.len() < 3 {
            continue;
        }
        let mnt = f[1].replace("\\040", " ");
        if path.starts_with(&mnt) && best.as_ref().is_none_or(|(n, _)| mnt.len() >= *n) {
            best = Some((mnt.len(), format!("a {} filesystem ({mnt})", f[2])));
        }
    }
    best.map(|b| b.1).unwrap_or_else(|| "a filesystem".into())
}

/// Migrates `ROOT/.keyftpd/meta.log`, if there is one. Never fails the
/// start: problems are logged and the log kept for the next one.
pub(super) fn run(store: &Store) {
    let root = store.inner.root.dir();
    let dir = match rustix::fs::openat(
        root,
        META_DIR,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::NOFOLLOW,
        rustix::fs::Mode::empty(),
    ) {
        Ok(d) => std::fs::File::from(d),
        Err(rustix::io::Errno::NOENT) => return,
        Err(e) => {
            log::warn!("{META_DIR}: {e}; not migrated");
            return;
        }
    };
    let log_file = match rustix::fs::openat(
        &dir,
        "meta.log",
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NOFOLLOW,
        rustix::fs::Mode::empty(),
    ) {
        Ok(f) => Some(std::fs::File::from(f)),
        Err(rustix::io::Errno::NOENT) => None,
        Err(e) => {
            log::warn!("{META_DIR}/meta.log: {e}; not migrated");
            return;
        }
    };
    let mut map = HashMap::new();
    if let Some(f) = log_file {
        for line in BufReader::new(f).split(b'\n') {
            let Ok(line) = line else { break };
            if let Ok(s) = std::str::from_utf8(&line) {
                if parse_line(&mut map, s).is_none() && !s.is_empty() {
                    log::warn!("meta.log: ignoring malformed line");
                }
            }
        }
    }
    let mut failed = 0usize;
    let mut moved = 0usize;
    for (path, m) in &map {
        let Ok(v) = VPath::root().resolve(path) else {
            continue;
        };
        let Ok((f, md)) = store.inner.root.open_io(&v, rustix::fs::OFlags::RDONLY) else {
            continue;
        };
        if !md.is_file() || store.read_meta(&f, &md).is_some() {
            continue;
        }
        match store.write_meta(&f, m) {
            Ok(()) => moved += 1,
            Err(e) => {
                failed += 1;
                log::warn!("migrating the record of /{path}: {e}");
            }
        }
    }
    if failed > 0 {
        log::warn!("{META_DIR}/meta.log: {failed} records not migrated; kept for the next start");
        return;
    }
    for name in ["meta.log", "meta.log.tmp"] {
        let _ = rustix::fs::unlinkat(&dir, name, rustix::fs::AtFlags::empty());
    }
    if let Err(e) = rustix::fs::unlinkat(root, META_DIR, rustix::fs::AtFlags::REMOVEDIR) {
        log::warn!("removing {META_DIR}: {e}");
    }
    log::info!("migrated {moved} records from {META_DIR}/meta.log into extended attributes");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_applies_renames_and_deletes() {
        let mut map = HashMap::new();
        for l in [
            "S a%20b/c%25d 00000001 p 00000001 2 3 4 5 -6",
            "S d/x 00000002 c 00000002 2 3",
            "S gone - c 0 0 0",
            "D gone",
            "R d e",
            "R a%20b/c%25d top",
            "S torn 0000",
        ] {
            let _ = parse_line(&mut map, l);
        }
        assert_eq!(map.len(), 2, "{map:?}");
        assert_eq!(map.get("top").and_then(|m| m.key), Some(Key(1)));
        assert_eq!(
            map.get("top").and_then(|m| m.ident).map(|i| i.ctime_ns),
            Some(-6)
        );
        assert_eq!(map.get("e/x").map(|m| m.state), Some(KeyState::Complete));
        assert_eq!(map.get("e/x").and_then(|m| m.ident), None);
    }
}
