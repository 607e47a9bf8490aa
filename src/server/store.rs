//! Durable per-file key metadata: the KEY a file was uploaded with, whether
//! the upload is partial or complete, and a CRC cache.
//!
//! Metadata lives in `ROOT/.keyftpd/meta.log`, a directory no client path
//! can name (see [`super::paths::META_DIR`]) and that listings hide. The log
//! is append-only: one line per change (fsynced with `--fsync`) (`S` set, `D` delete, `R`
//! rename of a file or a whole directory), replayed on start and compacted
//! into a snapshot (temp file, fsync, rename, fsync dir). A torn last line
//! from a crash does not parse and is ignored. Keys are virtual paths
//! relative to the root, so a rename follows the file and a directory
//! rename carries every file below it.
//!
//! The CRC cache (`crc` of the first `len` bytes) lets a resume, an XCRC of
//! a whole file and the MLST `x.key` fact skip re-reading it. It is trusted
//! only while the file is the one it was taken of: same size and mtime, and
//! same identity, `(dev, ino, ctime)`. Size and mtime alone are not proof:
//! a rewrite in place that keeps the size and restores the mtime (`touch
//! -r`, `rsync --inplace -t`) passes them. The ctime cannot be set from user
//! space and changes with every write, truncate, chmod or rename (on Linux
//! 6.13+ with a fine-grained stamp once it has been looked at, so even a
//! write in the same clock tick shows). Anything that does not match is
//! recomputed from the file.
//!
//! Log format: `S path key state crc len mtime_ns [dev ino ctime_ns]`. Lines
//! written before the identity was recorded have no last three fields;
//! they still load (key and state are kept) but their CRC is never trusted:
//! nothing says the file was not rewritten since, and the cost of
//! distrust is one read of the file when a client asks (the next upload
//! through keyftpd records a full entry again).

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::UNIX_EPOCH;

use crate::key::Key;
use crate::spool::journal::percent_decode;

/// Whether an upload has been verified against its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyState {
    /// Started, interrupted, or CRC differs from the key.
    Partial,
    /// CRC of the file equals its key (or, keyless, the transfer ended cleanly).
    Complete,
}

impl KeyState {
    /// The MLSD fact value.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Partial => "partial",
            KeyState::Complete => "complete",
        }
    }
}

/// What is recorded for one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileMeta {
    /// The key the upload was bound to, if any.
    pub key: Option<Key>,
    /// Partial or complete.
    pub state: KeyState,
    /// CRC-32 of the first `len` bytes.
    pub crc: u32,
    /// Length covered by `crc`.
    pub len: u64,
    /// The file's mtime (ns since the epoch) when `crc` was taken.
    pub mtime_ns: u128,
    /// The file's identity when `crc` was taken; `None` for records from
    /// before it was kept (never trusted).
    pub ident: Option<Ident>,
}

/// Which inode, in which state: `(dev, ino, ctime)`. The ctime is set by
/// the kernel on every change of the inode and cannot be set by a user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ident {
    pub dev: u64,
    pub ino: u64,
    /// ctime in ns since the epoch (negative before it).
    pub ctime_ns: i128,
}

impl Ident {
    pub fn of(md: &fs::Metadata) -> Ident {
        Ident {
            dev: md.dev(),
            ino: md.ino(),
            ctime_ns: i128::from(md.ctime()) * 1_000_000_000 + i128::from(md.ctime_nsec()),
        }
    }
}

impl FileMeta {
    /// A record of `crc` over the first `len` bytes of the file whose
    /// metadata (taken after the last write) is `md`.
    pub fn stamped(
        key: Option<Key>,
        state: KeyState,
        crc: u32,
        len: u64,
        md: Option<&fs::Metadata>,
    ) -> FileMeta {
        FileMeta {
            key,
            state,
            crc,
            len,
            mtime_ns: md.map(mtime_ns).unwrap_or(0),
            ident: md.map(Ident::of),
        }
    }

    /// The cached CRC if the file is still the one it was taken of: same
    /// size, mtime, device, inode and ctime.
    pub fn trusted_crc(&self, md: &fs::Metadata) -> Option<u32> {
        (md.len() == self.len && mtime_ns(md) == self.mtime_ns && self.ident == Some(Ident::of(md)))
            .then_some(self.crc)
    }

    /// After keyftpd's own rename of the file (which changes its ctime):
    /// `before` is its metadata just before, `after` just after. The CRC
    /// stays trusted if it was before and the inode is the same and
    /// otherwise unchanged; the record then carries the new ctime.
    pub fn renamed(mut self, before: &fs::Metadata, after: &fs::Metadata) -> Option<FileMeta> {
        self.trusted_crc(before)?;
        let (b, a) = (Ident::of(before), Ident::of(after));
        if a.dev != b.dev || a.ino != b.ino || after.len() != self.len {
            return None;
        }
        if mtime_ns(after) != self.mtime_ns {
            return None;
        }
        self.ident = Some(a);
        Some(self)
    }
}

/// A file's mtime in ns since the epoch (0 if unknown).
pub fn mtime_ns(md: &fs::Metadata) -> u128 {
    md.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

struct Inner {
    map: HashMap<String, FileMeta>,
    log: File,
    lines: usize,
}

/// The metadata store of one root. Shared by all sessions.
pub struct MetaStore {
    dir: PathBuf,
    inner: Mutex<Inner>,
    /// fsync each appended line (with `--fsync`, after the file's own data).
    durable: bool,
}

fn esc(s: &str) -> String {
    let mut bytes = Vec::with_capacity(s.len());
    for b in s.bytes() {
        if b <= 0x20 || b == b'%' || b == 0x7f {
            bytes.extend(format!("%{b:02X}").bytes());
        } else {
            bytes.push(b);
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn set_line(path: &str, m: &FileMeta) -> String {
    let key = m.key.map(|k| format!("{:08X}", k.0)).unwrap_or("-".into());
    let st = match m.state {
        KeyState::Partial => "p",
        KeyState::Complete => "c",
    };
    let ident = match m.ident {
        Some(i) => format!(" {} {} {}", i.dev, i.ino, i.ctime_ns),
        None => String::new(),
    };
    format!(
        "S {} {} {} {:08X} {} {}{ident}\n",
        esc(path),
        key,
        st,
        m.crc,
        m.len,
        m.mtime_ns
    )
}

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

fn parse_line(map: &mut HashMap<String, FileMeta>, line: &str) -> Option<()> {
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

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl MetaStore {
    /// Opens (creating) the store under `root/.keyftpd`, replays and
    /// compacts the log. With `durable`, every change is fsynced before it
    /// is acted on; without it (the default, matching the file data, which
    /// keyftpd then leaves to the kernel's writeback like most FTP servers)
    /// a line survives a crash of keyftpd but not of the machine. An fsync
    /// of the metadata of a file whose bytes are not fsynced buys nothing,
    /// and it cost two fsyncs per upload under the store's lock (every
    /// session waited for them).
    pub fn open(root: &Path, durable: bool) -> io::Result<MetaStore> {
        let dir = root.join(super::paths::META_DIR);
        fs::create_dir_all(&dir)?;
        let log_path = dir.join("meta.log");
        let mut map = HashMap::new();
        match File::open(&log_path) {
            Ok(f) => {
                for line in BufReader::new(f).split(b'\n') {
                    let line = line?;
                    if let Ok(s) = std::str::from_utf8(&line) {
                        if parse_line(&mut map, s).is_none() && !s.is_empty() {
                            log::warn!("meta.log: ignoring malformed line");
                        }
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        // Forget files removed behind the server's back.
        map.retain(|k, _| root.join(k).is_file());
        let log = Self::snapshot(&dir, &map)?;
        let lines = map.len();
        Ok(MetaStore {
            dir,
            inner: Mutex::new(Inner { map, log, lines }),
            durable,
        })
    }

    /// Writes the map as a fresh log atomically; returns it opened for append.
    fn snapshot(dir: &Path, map: &HashMap<String, FileMeta>) -> io::Result<File> {
        let tmp = dir.join("meta.log.tmp");
        let path = dir.join("meta.log");
        {
            let mut f = io::BufWriter::new(File::create(&tmp)?);
            for (k, m) in map {
                f.write_all(set_line(k, m).as_bytes())?;
            }
            f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        }
        fs::rename(&tmp, &path)?;
        sync_dir(dir)?;
        OpenOptions::new().append(true).open(&path)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn append(&self, inner: &mut Inner, line: &str) -> io::Result<()> {
        inner.log.write_all(line.as_bytes())?;
        if self.durable {
            inner.log.sync_data()?;
        }
        inner.lines += 1;
        if inner.lines > 2 * inner.map.len() + 1024 {
            inner.log = Self::snapshot(&self.dir, &inner.map)?;
            inner.lines = inner.map.len();
        }
        Ok(())
    }

    /// The metadata of `path` (virtual, relative to the root), if any.
    pub fn get(&self, path: &str) -> Option<FileMeta> {
        self.lock().map.get(path).copied()
    }

    /// Records `meta` for `path`, durably.
    pub fn set(&self, path: &str, meta: FileMeta) -> io::Result<()> {
        let mut inner = self.lock();
        inner.map.insert(path.to_string(), meta);
        self.append(&mut inner, &set_line(path, &meta))
    }

    /// Forgets `path` (DELE), durably.
    pub fn remove(&self, path: &str) -> io::Result<()> {
        let mut inner = self.lock();
        if inner.map.remove(path).is_none() {
            return Ok(());
        }
        self.append(&mut inner, &format!("D {}\n", esc(path)))
    }

    /// After keyftpd renamed the file now at `path`: carries its record's
    /// trust over to the new ctime (see [`FileMeta::renamed`]), durably.
    pub fn renamed_file(
        &self,
        path: &str,
        before: &fs::Metadata,
        after: &fs::Metadata,
    ) -> io::Result<()> {
        let mut inner = self.lock();
        let Some(m) = inner.map.get(path).copied() else {
            return Ok(());
        };
        let Some(m) = m.renamed(before, after) else {
            return Ok(());
        };
        inner.map.insert(path.to_string(), m);
        self.append(&mut inner, &set_line(path, &m))
    }

    /// Moves the metadata of `from` (a file, or a directory and everything
    /// below it) to `to`, dropping whatever `to` had, durably.
    pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut inner = self.lock();
        apply_rename(&mut inner.map, from, to);
        self.append(&mut inner, &format!("R {} {}\n", esc(from), esc(to)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(k: u32) -> FileMeta {
        FileMeta {
            key: Some(Key(k)),
            state: KeyState::Partial,
            crc: 1,
            len: 2,
            mtime_ns: 3,
            ident: Some(Ident {
                dev: 4,
                ino: 5,
                ctime_ns: -6,
            }),
        }
    }

    #[test]
    fn replay_survives_reopen() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir(dir.path().join("e"))?;
        std::fs::write(dir.path().join("top"), b"")?;
        std::fs::write(dir.path().join("e/x"), b"")?;
        {
            let s = MetaStore::open(dir.path(), true)?;
            s.set("a b/c%d", meta(1))?;
            s.set("d/x", meta(2))?;
            s.set("stale", meta(4))?;
            s.set("gone", meta(3))?;
            s.remove("gone")?;
            s.rename("d", "e")?;
            s.rename("a b/c%d", "top")?;
        }
        let s = MetaStore::open(dir.path(), true)?;
        assert_eq!(s.get("top"), Some(meta(1)));
        assert_eq!(s.get("e/x"), Some(meta(2)));
        assert_eq!(s.get("d/x"), None);
        assert_eq!(s.get("gone"), None);
        assert_eq!(s.get("stale"), None);
        assert_eq!(percent_decode(&esc("é x%")).as_deref(), Some("é x%"));
        Ok(())
    }

    /// A log line from before the identity was recorded still loads, with
    /// its key and state, but its CRC is never trusted.
    #[test]
    fn old_lines_load_untrusted() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("old");
        std::fs::write(&p, b"abc")?;
        let md = std::fs::metadata(&p)?;
        std::fs::create_dir(dir.path().join(super::super::paths::META_DIR))?;
        std::fs::write(
            dir.path()
                .join(super::super::paths::META_DIR)
                .join("meta.log"),
            format!(
                "S old 352441C2 c 352441C2 3 {}\nS bad 0 c 0 0 0 1 2\n",
                mtime_ns(&md)
            ),
        )?;
        let s = MetaStore::open(dir.path(), true)?;
        let m = s.get("old").expect("old line loads");
        assert_eq!(m.key, Some(Key(0x352441C2)));
        assert_eq!(m.state, KeyState::Complete);
        assert_eq!(m.ident, None);
        assert_eq!(m.trusted_crc(&md), None);
        let full = FileMeta::stamped(m.key, m.state, m.crc, 3, Some(&md));
        assert_eq!(full.trusted_crc(&md), Some(0x352441C2));
        let mut map = HashMap::new();
        assert!(parse_line(&mut map, set_line("x", &full).trim_end()).is_some());
        assert_eq!(map.get("x"), Some(&full));
        Ok(())
    }

    /// Same size, same mtime, new content: the ctime tells.
    #[test]
    fn rewrite_with_restored_mtime_is_not_trusted() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("f");
        std::fs::write(&p, b"abc")?;
        let md = std::fs::metadata(&p)?;
        let m = FileMeta::stamped(None, KeyState::Complete, 0x352441C2, 3, Some(&md));
        assert_eq!(m.trusted_crc(&md), Some(0x352441C2));
        std::fs::write(&p, b"xyz")?;
        let f = File::options().write(true).open(&p)?;
        f.set_modified(md.modified()?)?;
        let md2 = f.metadata()?;
        assert_eq!((md2.len(), mtime_ns(&md2)), (md.len(), mtime_ns(&md)));
        assert_eq!(m.trusted_crc(&md2), None);
        Ok(())
    }
}
