//! keyftpd's store: the files below the root with each file's key
//! metadata, confined by construction, shared by every face (FTP, HTTP)
//! and by every keyftpd process serving the same root.
//!
//! The API (paths are [`VPath`]s, resolved on strings first; every call
//! opens beneath the root's descriptor, see `confined.rs`):
//! - [`Store::open`]`(root, durable)`: opens the root, refuses a filesystem
//!   without user extended attributes, migrates an old `.keyftpd/meta.log`.
//! - [`Store::stat`] -> [`Stat`] (metadata and the recorded [`FileMeta`]),
//!   [`Store::list`] -> `Vec<`[`Entry`]`>`, [`Store::open_read`] -> `(File,
//!   Stat)`, [`Store::crc`] (whole file from the cache when trusted, or a
//!   range).
//! - [`Store::mkdir`], [`Store::rmdir`], [`Store::delete`], [`Store::rename`],
//!   [`Store::set_mtime`]; [`Store::meta`] reads a file's key and state,
//!   [`Store::set_meta`] records them for a file as it is.
//! - The upload: [`Store::begin_upload`]`(vpath, `[`Mode`]`)` -> [`Upload`]
//!   takes the file's lock, checks the offset against the file, binds the
//!   key (the stored one on a resume without a new key) and records
//!   "partial" before a byte is accepted; [`Upload::write`] appends and
//!   hashes (or [`Upload::file`] + [`Upload::hashed`] for a face's own fast
//!   path); [`Upload::finish`]`(clean)` records complete or partial by CRC
//!   and returns the [`Done`] state. Its error means the state is not
//!   recorded: no success reply may be sent. [`Upload::taken_over`] tells
//!   a receive loop to stop; [`Upload::abandon`] gives an upload up before
//!   its data started (file and record unchanged); a dropped upload is
//!   recorded as partial.
//! - Every error is a [`StoreError`] with an [`ErrorKind`] (NotFound, Busy,
//!   Conflict, NotRegular, NoSpace, Denied, Io) that each face maps to its
//!   own codes.
//!
//! Metadata lives in the `user.keyftpd` extended attribute of each file
//! ([`meta`]), read and written through the open descriptor. A rename
//! carries it, a delete removes it, and several processes see the same
//! state. Writing the attribute moves the file's ctime on, so the ctime in
//! a record is the one from just before it was written; the process that
//! wrote it remembers which ctime its own write produced (a small map by
//! inode) and keeps trusting its CRC cache, while another process (or the
//! same one after a restart) sees a ctime it cannot account for and reads
//! the file once when it needs the CRC (a whole-file [`Store::crc`] that
//! finds the recorded CRC confirms the record from then on). That costs a
//! read, never a wrong answer. So use one `Store` per process, cloned for
//! every face and session: the takeover and that map live in it.
//!
//! Uploads take an exclusive `flock` on the file for the transfer, so two
//! uploaders of one name, in one process or in several on a shared
//! filesystem, never mix bytes: the second gets [`ErrorKind::Busy`]. Only
//! a newer transfer by the same owner with the same key takes over a
//! stalled one of this process (see [`Store::begin_upload`]).
//!
//! A name that is a FIFO, socket or device is [`ErrorKind::NotRegular`]
//! at once: it is never opened for I/O. The name `.keyftpd` stays refused
//! by [`VPath`] and hidden from listings, so no client can plant a log for
//! the migration to read.

mod confined;
mod error;
pub mod meta;
mod migrate;
#[cfg(test)]
mod tests;
mod upload;

use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustix::fs::{AtFlags, FlockOperation, Mode as FileMode, OFlags};

pub use error::{ErrorKind, StoreError};
pub use meta::{mtime_ns, FileMeta, Ident, KeyState};
pub use upload::{Done, Mode, Start, Upload};

use super::paths::{VPath, META_DIR};
use confined::Root;

/// Buffer size for reading a file to compute its CRC.
const CRC_BUF: usize = 256 * 1024;
/// How many of its own record writes a process remembers (per inode).
const OWN_MAX: usize = 100_000;

/// A file's or directory's metadata and, for a file, its record.
#[derive(Debug)]
pub struct Stat {
    pub md: Metadata,
    pub meta: Option<FileMeta>,
}

impl Stat {
    pub fn is_dir(&self) -> bool {
        self.md.is_dir()
    }
    pub fn is_file(&self) -> bool {
        self.md.is_file()
    }
    pub fn len(&self) -> u64 {
        self.md.len()
    }
    pub fn is_empty(&self) -> bool {
        self.md.len() == 0
    }
    /// The recorded CRC of the whole file, if it may be trusted now.
    pub fn trusted_crc(&self) -> Option<u32> {
        self.meta.and_then(|m| m.trusted_crc(&self.md))
    }
}

/// One listed entry.
#[derive(Debug)]
pub struct Entry {
    pub name: String,
    pub stat: Stat,
}

/// In-process state of a running upload, for a takeover.
struct Active {
    owner: String,
    key: Option<crate::key::Key>,
    abort: Arc<std::sync::atomic::AtomicBool>,
    /// When it last received a byte (see `upload::now_ms`).
    last: Arc<std::sync::atomic::AtomicU64>,
}

struct Inner {
    root: Root,
    durable: bool,
    /// (dev, ino) -> (ctime written in the record, ctime after writing it).
    own: Mutex<HashMap<(u64, u64), (i128, i128)>>,
    /// (dev, ino) -> the upload of this process holding the file's lock.
    active: Mutex<HashMap<(u64, u64), Active>>,
}

/// The store of one root; cheap to clone, shared by all sessions.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn ctime_ns(md: &Metadata) -> i128 {
    Ident::of(md).ctime_ns
}

/// CRC-32 of `[start, end)` of `file`. `end` must not pass EOF.
pub fn crc_range(file: &mut File, start: u64, end: u64) -> io::Result<u32> {
    let mut h = crc32fast::Hasher::new();
    file.seek(SeekFrom::Start(start))?;
    let mut left = end.saturating_sub(start);
    let mut buf = vec![0u8; CRC_BUF.min(left.max(1) as usize)];
    while left > 0 {
        let want = buf.len().min(left as usize);
        let n = file.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while computing CRC",
            ));
        }
        h.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(h.finalize())
}

impl Store {
    /// Opens the store of `root`. With `durable`, each record is fsynced
    /// with the file (`--fsync`). Refuses a root whose filesystem cannot
    /// hold `user.` extended attributes, with the filesystem's name.
    pub fn open(root: &Path, durable: bool) -> io::Result<Store> {
        let root = Root::open(root)?;
        let mut probe = [0u8; 8];
        match rustix::fs::fgetxattr(root.dir(), meta::XATTR, &mut probe[..]) {
            Ok(_) | Err(rustix::io::Errno::NODATA) | Err(rustix::io::Errno::RANGE) => {}
            Err(rustix::io::Errno::NOTSUP) => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!(
                        "{} is on {}, which cannot hold user extended attributes (keyftpd keeps each file's key in them)",
                        root.path().display(),
                        migrate::fs_name(root.path())
                    ),
                ))
            }
            Err(e) => return Err(e.into()),
        }
        let store = Store {
            inner: Arc::new(Inner {
                root,
                durable,
                own: Mutex::new(HashMap::new()),
                active: Mutex::new(HashMap::new()),
            }),
        };
        migrate::run(&store);
        Ok(store)
    }

    /// The root directory (for messages).
    pub fn root(&self) -> &Path {
        self.inner.root.path()
    }

    /// Reads the record of the open file `f` whose metadata is `md`.
    fn read_meta(&self, f: &File, md: &Metadata) -> Option<FileMeta> {
        let mut buf = [0u8; 256];
        let n = rustix::fs::fgetxattr(f, meta::XATTR, &mut buf[..]).ok()?;
        let mut m = FileMeta::decode(&buf[..n])?;
        // This process's own write moved the ctime on: see the module doc.
        if let Some(i) = m.ident.as_mut() {
            if let Some(&(rec, after)) = lock(&self.inner.own).get(&(md.dev(), md.ino())) {
                if i.ctime_ns == rec && ctime_ns(md) == after {
                    i.ctime_ns = after;
                }
            }
        }
        Some(m)
    }

    /// Records `m` on the open file `f`.
    fn write_meta(&self, f: &File, m: &FileMeta) -> io::Result<()> {
        // Only a record stamped with the file's ctime as it is now may be
        // trusted past its own write.
        let current = f.metadata()?;
        rustix::fs::fsetxattr(
            f,
            meta::XATTR,
            m.encode().as_bytes(),
            rustix::fs::XattrFlags::empty(),
        )?;
        if self.inner.durable {
            f.sync_all()?;
        }
        if let Some(i) = m.ident {
            let after = f.metadata()?;
            if after.dev() == i.dev && after.ino() == i.ino && ctime_ns(&current) == i.ctime_ns {
                let mut own = lock(&self.inner.own);
                if own.len() >= OWN_MAX {
                    own.clear();
                }
                own.insert((i.dev, i.ino), (i.ctime_ns, ctime_ns(&after)));
            }
        }
        Ok(())
    }

    fn open_io(
        &self,
        what: &str,
        v: &VPath,
        flags: OFlags,
    ) -> Result<(File, Metadata), StoreError> {
        self.inner
            .root
            .open_io(v, flags)
            .map_err(|e| StoreError::io(what, &e))
    }

    /// The metadata of `v` (a regular file or a directory) and a file's record.
    pub fn stat(&self, v: &VPath) -> Result<Stat, StoreError> {
        match self.inner.root.open_io(v, OFlags::RDONLY) {
            Ok((f, md)) => {
                let meta = if md.is_file() {
                    self.read_meta(&f, &md)
                } else {
                    None
                };
                Ok(Stat { md, meta })
            }
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                let (_, md) = self
                    .inner
                    .root
                    .probe(v)
                    .map_err(|e| StoreError::io("stat", &e))?;
                Ok(Stat { md, meta: None })
            }
            Err(e) => Err(StoreError::io("stat", &e)),
        }
    }

    /// A file's key and state, if recorded.
    pub fn meta(&self, v: &VPath) -> Result<Option<FileMeta>, StoreError> {
        Ok(self.stat(v)?.meta)
    }

    /// The entries of directory `v`, sorted by name. Entries that lead
    /// outside the root, special files and `.keyftpd` are left out.
    pub fn list(&self, v: &VPath) -> Result<Vec<Entry>, StoreError> {
        self.list_with(v, true)
    }

    /// [`Store::list`] without the records (for listings that show none):
    /// no file is opened for reading.
    pub fn list_plain(&self, v: &VPath) -> Result<Vec<Entry>, StoreError> {
        self.list_with(v, false)
    }

    fn list_with(&self, v: &VPath, records: bool) -> Result<Vec<Entry>, StoreError> {
        let (d, md) = self.open_io("list", v, OFlags::RDONLY | OFlags::DIRECTORY)?;
        if !md.is_dir() {
            return Err(StoreError::new(ErrorKind::NotRegular, "not a directory"));
        }
        let dir = rustix::fs::Dir::read_from(&d).map_err(|e| StoreError::io("list", &e.into()))?;
        let mut out = Vec::new();
        for ent in dir {
            let Ok(ent) = ent else { continue };
            let Ok(name) = ent.file_name().to_str() else {
                continue;
            };
            if name == "." || name == ".." || name == META_DIR {
                continue;
            }
            let Ok(child) = v.resolve(name) else { continue };
            if let Some(stat) = self.entry(&d, name, &child, records) {
                out.push(Entry {
                    name: name.to_string(),
                    stat,
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// One listed entry, `name` in the open directory `d` (which is
    /// `child`'s parent). The name itself is opened without following it;
    /// only a symlink goes the long way, resolved beneath the root.
    fn entry(&self, d: &File, name: &str, child: &VPath, records: bool) -> Option<Stat> {
        let flags = OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let p = rustix::fs::openat(d, name, OFlags::PATH | flags, FileMode::empty()).ok()?;
        let md = File::from(p).metadata().ok()?;
        let t = md.file_type();
        if t.is_symlink() {
            return if records {
                self.stat(child).ok()
            } else {
                let (_, md) = self.inner.root.probe(child).ok()?;
                (md.is_file() || md.is_dir()).then_some(Stat { md, meta: None })
            };
        }
        if t.is_dir() || (t.is_file() && !records) {
            return Some(Stat { md, meta: None });
        }
        if !t.is_file() {
            return None;
        }
        let rd = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | flags;
        if let Ok(f) = rustix::fs::openat(d, name, rd, FileMode::empty()) {
            let f = File::from(f);
            if let Ok(now) = f.metadata() {
                if (now.dev(), now.ino()) == (md.dev(), md.ino()) {
                    let meta = self.read_meta(&f, &now);
                    return Some(Stat { md: now, meta });
                }
            }
        }
        // Unreadable (or replaced meanwhile): listed without its record.
        Some(Stat { md, meta: None })
    }

    /// Opens regular file `v` for reading.
    pub fn open_read(&self, v: &VPath) -> Result<(File, Stat), StoreError> {
        let (f, md) = self.open_io("open", v, OFlags::RDONLY)?;
        if !md.is_file() {
            return Err(StoreError::new(ErrorKind::NotRegular, "not a regular file"));
        }
        let meta = self.read_meta(&f, &md);
        Ok((f, Stat { md, meta }))
    }

    /// CRC-32 of regular file `v`, whole or of `[start, end)`; a whole
    /// file's comes from its record while that is trusted. A range past
    /// the end is [`ErrorKind::Conflict`].
    pub fn crc(&self, v: &VPath, range: Option<(u64, u64)>) -> Result<u32, StoreError> {
        let (mut f, st) = self.open_read(v)?;
        let (start, end) = range.unwrap_or((0, st.len()));
        if start > end || end > st.len() {
            return Err(StoreError::new(
                ErrorKind::Conflict,
                format!("range {start}-{end} outside file of {} bytes", st.len()),
            ));
        }
        if start == 0 && end == st.len() {
            if let Some(c) = st.trusted_crc() {
                return Ok(c);
            }
        }
        let crc = crc_range(&mut f, start, end).map_err(|e| StoreError::io("CRC", &e))?;
        if start == 0 && end == st.len() {
            self.confirm(&f, &st, crc);
        }
        Ok(crc)
    }

    /// After reading the whole file: when it still matches its record in
    /// everything but the ctime (another process wrote the record, or this
    /// one before a restart) and the CRC read equals the recorded one, the
    /// record is trusted from now on, until the file changes again.
    fn confirm(&self, f: &File, st: &Stat, crc: u32) {
        let (Some(m), Ok(now)) = (st.meta, f.metadata()) else {
            return;
        };
        let Some(i) = m.ident else { return };
        let same = ctime_ns(&now) == ctime_ns(&st.md)
            && now.len() == m.len
            && mtime_ns(&now) == m.mtime_ns
            && (now.dev(), now.ino()) == (i.dev, i.ino)
            && m.crc == crc;
        if same {
            let mut own = lock(&self.inner.own);
            if own.len() >= OWN_MAX {
                own.clear();
            }
            own.insert((i.dev, i.ino), (i.ctime_ns, ctime_ns(&now)));
        }
    }

    fn parent<'v>(
        &self,
        what: &str,
        v: &'v VPath,
    ) -> Result<(std::os::fd::OwnedFd, &'v str), StoreError> {
        if v.is_root() {
            return Err(StoreError::new(
                ErrorKind::Denied,
                format!("{what}: not on the root"),
            ));
        }
        self.inner
            .root
            .parent(v)
            .map_err(|e| StoreError::io(what, &e))
    }

    /// Creates directory `v`.
    pub fn mkdir(&self, v: &VPath) -> Result<(), StoreError> {
        let (p, name) = self.parent("mkdir", v)?;
        rustix::fs::mkdirat(&p, name, FileMode::from_raw_mode(0o755))
            .map_err(|e| StoreError::io("mkdir", &e.into()))
    }

    /// Removes the empty directory `v`.
    pub fn rmdir(&self, v: &VPath) -> Result<(), StoreError> {
        let (p, name) = self.parent("rmdir", v)?;
        rustix::fs::unlinkat(&p, name, AtFlags::REMOVEDIR)
            .map_err(|e| StoreError::io("rmdir", &e.into()))
    }

    /// Opens `name` in `parent` without following it; if it is a regular
    /// file, takes its lock (Busy while an upload holds it). Returns the
    /// handle (None for anything else) and whether it is a directory.
    fn lock_name(
        &self,
        what: &str,
        parent: &std::os::fd::OwnedFd,
        name: &str,
    ) -> Result<(Option<File>, bool), StoreError> {
        let st = rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| StoreError::io(what, &e.into()))?;
        let fmt = rustix::fs::FileType::from_raw_mode(st.st_mode);
        if fmt == rustix::fs::FileType::Directory {
            return Ok((None, true));
        }
        if fmt != rustix::fs::FileType::RegularFile {
            return Ok((None, false));
        }
        let f = rustix::fs::openat(
            parent,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            FileMode::empty(),
        )
        .map(File::from)
        .map_err(|e| StoreError::io(what, &e.into()))?;
        match rustix::fs::flock(&f, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok((Some(f), false)),
            Err(rustix::io::Errno::WOULDBLOCK) => Err(StoreError::new(
                ErrorKind::Busy,
                "file busy: an upload of it is in progress",
            )),
            // A filesystem without flock: nothing to wait for.
            Err(_) => Ok((Some(f), false)),
        }
    }

    /// Fails with Busy while an upload holds `v` (for a rename's RNFR).
    pub fn check_idle(&self, v: &VPath) -> Result<(), StoreError> {
        let (p, name) = self.parent("rename", v)?;
        self.lock_name("rename", &p, name).map(|_| ())
    }

    /// Deletes file (or symlink) `v`, and with it its record. A directory
    /// is [`ErrorKind::NotRegular`]; a file being uploaded is Busy.
    pub fn delete(&self, v: &VPath) -> Result<(), StoreError> {
        let (p, name) = self.parent("delete", v)?;
        let (_held, is_dir) = self.lock_name("delete", &p, name)?;
        if is_dir {
            return Err(StoreError::new(ErrorKind::NotRegular, "is a directory"));
        }
        rustix::fs::unlinkat(&p, name, AtFlags::empty())
            .map_err(|e| StoreError::io("delete", &e.into()))
    }

    /// Renames `from` to `to` (replacing a file there); the records go
    /// with the files. Either side being uploaded is Busy.
    pub fn rename(&self, from: &VPath, to: &VPath) -> Result<(), StoreError> {
        if to.rel().starts_with(&format!("{}/", from.rel())) {
            return Err(StoreError::new(
                ErrorKind::Conflict,
                "cannot move a directory into itself",
            ));
        }
        let (pf, nf) = self.parent("rename", from)?;
        let (pt, nt) = self.parent("rename", to)?;
        let (src, _) = self.lock_name("rename", &pf, nf)?;
        let _dst = if from == to {
            None
        } else {
            match self.lock_name("rename", &pt, nt) {
                Ok((f, _)) => f,
                Err(e) if e.kind == ErrorKind::NotFound => None,
                Err(e) => return Err(e),
            }
        };
        let before = src.as_ref().and_then(|f| f.metadata().ok());
        rustix::fs::renameat(&pf, nf, &pt, nt).map_err(|e| StoreError::io("rename", &e.into()))?;
        // The rename moved the ctime on: keep trusting our own record.
        if let (Some(f), Some(b)) = (&src, &before) {
            if let (Some(m), Ok(a)) = (self.read_meta(f, b), f.metadata()) {
                if m.trusted_crc(b).is_some() {
                    let mut own = lock(&self.inner.own);
                    if let Some(e) = own.get_mut(&(a.dev(), a.ino())) {
                        e.1 = ctime_ns(&a);
                    }
                }
            }
        }
        Ok(())
    }

    /// Records `key` and `state` for regular file `v` as it is now (its CRC
    /// from a trusted record, else read); Busy while it is being uploaded.
    pub fn set_meta(
        &self,
        v: &VPath,
        key: Option<crate::key::Key>,
        state: KeyState,
    ) -> Result<FileMeta, StoreError> {
        let (mut f, st) = self.open_read(v)?;
        if let Err(rustix::io::Errno::WOULDBLOCK) =
            rustix::fs::flock(&f, FlockOperation::NonBlockingLockExclusive)
        {
            return Err(StoreError::new(
                ErrorKind::Busy,
                "file busy: an upload of it is in progress",
            ));
        }
        let crc = match st.trusted_crc() {
            Some(c) => c,
            None => crc_range(&mut f, 0, st.len()).map_err(|e| StoreError::io("CRC", &e))?,
        };
        let m = FileMeta::stamped(key, state, crc, st.len(), Some(&st.md));
        self.write_meta(&f, &m)
            .map_err(|e| StoreError::io("record", &e))?;
        Ok(m)
    }

    /// Sets the modification time of file or directory `v`. A file's
    /// trusted CRC stays trusted (its record is re-stamped).
    pub fn set_mtime(&self, v: &VPath, t: SystemTime) -> Result<Stat, StoreError> {
        let (f, md) = self.open_io("set time", v, OFlags::RDONLY)?;
        let meta = if md.is_file() {
            self.read_meta(&f, &md)
        } else {
            None
        };
        let trusted = meta.and_then(|m| m.trusted_crc(&md).map(|_| m));
        f.set_modified(t)
            .map_err(|e| StoreError::io("set time", &e))?;
        let md = f.metadata().map_err(|e| StoreError::io("set time", &e))?;
        let mut meta = meta;
        if let Some(m) = trusted {
            let m = FileMeta::stamped(m.key, m.state, m.crc, m.len, Some(&md));
            self.write_meta(&f, &m)
                .map_err(|e| StoreError::io("record", &e))?;
            meta = Some(m);
        }
        let md = f.metadata().map_err(|e| StoreError::io("set time", &e))?;
        Ok(Stat { md, meta })
    }
}
