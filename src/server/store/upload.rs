//! The upload lifecycle, the same for every face: lock, check, record
//! "partial", receive, record the end state.
//!
//! The lock is an exclusive `flock` on the file, held from
//! [`Store::begin_upload`] until the [`Upload`] is finished or dropped, so
//! a second uploader of the name (this process or another on a shared
//! filesystem) gets [`ErrorKind::Busy`] and the file is exactly one
//! upload's bytes. The lock is taken before the file is truncated, and
//! after it the name is opened again and must still be the locked inode
//! (a delete or rename in between would leave the upload writing into a
//! file no one can see).
//!
//! Takeover: when the file is locked by an upload of this process whose
//! owner is the new one's and whose key equals the new one's (a client
//! retrying after its link went away while the server still waits on the
//! old data connection), the old upload is told to stop
//! ([`Upload::taken_over`]); it ends as partial with its state recorded,
//! and the new one starts within a poll interval, instead of answering
//! Busy until the old one times out.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::fs::{AtFlags, FlockOperation, OFlags};

use super::confined::{kind, rel, Kind};
use super::{crc_range, lock, Active, ErrorKind, FileMeta, Ident, KeyState, Store, StoreError};
use crate::key::Key;
use crate::server::paths::VPath;

/// How long a takeover waits for the old upload to let go.
const TAKEOVER_WAIT: Duration = Duration::from_secs(5);
/// How long the old upload must have received nothing to be stopped. One
/// still receiving is left alone (the newcomer is told the file is busy):
/// its client may be draining what was in flight (a browser's request
/// abandoned by a reload), and the newcomer's own body would be sent for
/// nothing while it waited.
const TAKEOVER_QUIET: Duration = Duration::from_secs(1);

/// Milliseconds on a clock of this process, for "last received".
fn now_ms() -> u64 {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// Where an upload starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// From byte 0, replacing the file (STOR).
    Replace,
    /// At this offset, keeping the bytes before it (REST + STOR).
    At(u64),
    /// At the file's end (APPE).
    Append,
}

/// How to begin an upload.
#[derive(Clone, Debug)]
pub struct Mode {
    pub start: Start,
    /// The key the client sent for this upload, if any. A resume without
    /// one keeps the file's stored key; a replace without one clears it.
    pub key: Option<Key>,
    /// The account uploading (a takeover needs the same one).
    pub owner: String,
    /// A key that lets this upload take over a stalled one of the same
    /// owner and key without binding it (an HTTP resume names the key it
    /// expects stored, checked once the lock is held); else `key` does.
    pub claim: Option<Key>,
}

/// The recorded end of an upload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Done {
    pub state: KeyState,
    /// The file's length now.
    pub len: u64,
    /// CRC-32 of the whole file.
    pub crc: u32,
    /// The key the upload was bound to.
    pub key: Option<Key>,
}

/// What [`Store::prepare`] found and recorded.
struct Prepared {
    id: (u64, u64),
    before: Option<(FileMeta, bool)>,
    offset: u64,
    key: Option<Key>,
    prefix: u32,
    recorded_ctime: Option<i128>,
}

/// A running upload: holds the file's lock until finished or dropped
/// (a drop records the end as partial).
pub struct Upload {
    store: Store,
    file: File,
    id: (u64, u64),
    hasher: crc32fast::Hasher,
    offset: u64,
    len: u64,
    key: Option<Key>,
    abort: Arc<AtomicBool>,
    /// When the last byte was received ([`now_ms`]).
    last: Arc<AtomicU64>,
    finished: bool,
    /// The file is cut to `offset` at the first byte (or at the finish),
    /// so an upload abandoned before its data starts changes nothing.
    pending_cut: bool,
    /// The record before this upload and whether it was trusted, restored
    /// by [`Upload::abandon`].
    before: Option<(FileMeta, bool)>,
    /// The file's ctime right after the "partial" record was written.
    recorded_ctime: Option<i128>,
    /// The name, when this upload created the file.
    created: Option<VPath>,
}

fn locked(f: &File) -> Result<bool, StoreError> {
    match rustix::fs::flock(f, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(false),
        // No flock on this filesystem: nothing to exclude with.
        Err(e) => {
            log::warn!("flock: {e}; uploads of one name are not exclusive here");
            Ok(true)
        }
    }
}

impl Store {
    /// Begins an upload of `v`: takes the file's lock (creating the file),
    /// checks the start against its size (past the end: Conflict), binds
    /// the key, and records the file as partial before returning.
    pub fn begin_upload(&self, v: &VPath, mode: Mode) -> Result<Upload, StoreError> {
        if v.is_root() {
            return Err(StoreError::new(ErrorKind::NotRegular, "not a file name"));
        }
        let root = &self.inner.root;
        let mut tries = 0;
        let (mut file, created) = loop {
            tries += 1;
            match root.probe(v) {
                Ok((_, md)) => match kind(&md) {
                    Kind::File => {}
                    Kind::Dir => {
                        return Err(StoreError::new(ErrorKind::NotRegular, "is a directory"))
                    }
                    Kind::Special => {
                        return Err(StoreError::new(ErrorKind::NotRegular, "not a regular file"))
                    }
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io("open", &e)),
            }
            let r = rel(v);
            let (f, created) = match root.openat(&r, OFlags::RDWR | OFlags::CREATE | OFlags::EXCL) {
                Ok(f) => (f, true),
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => (
                    root.openat(&r, OFlags::RDWR)
                        .map_err(|e| StoreError::io("open", &e))?,
                    false,
                ),
                Err(e) => return Err(StoreError::io("open", &e)),
            };
            let md = f.metadata().map_err(|e| StoreError::io("open", &e))?;
            if !md.is_file() {
                return Err(StoreError::new(ErrorKind::NotRegular, "not a regular file"));
            }
            let id = (md.dev(), md.ino());
            if !locked(&f)? && !self.take_over(&f, id, &mode)? {
                return Err(StoreError::new(
                    ErrorKind::Busy,
                    "file busy: another upload of it is in progress",
                ));
            }
            // Still the file at that name? (A delete or rename may have
            // come between the open and the lock.)
            match root.probe(v) {
                Ok((_, now)) if (now.dev(), now.ino()) == id => break (f, created),
                _ if tries < 3 => continue,
                _ => return Err(StoreError::new(ErrorKind::Busy, "file changed during open")),
            }
        };
        let r = self.prepare(&mode, &mut file);
        if r.is_err() && created {
            // Nothing of this upload may stay behind: not even its name.
            self.unlink_if_same(v, &file);
        }
        let Prepared {
            id,
            before,
            offset,
            key,
            prefix,
            recorded_ctime,
        } = r?;
        let abort = Arc::new(AtomicBool::new(false));
        let last = Arc::new(AtomicU64::new(now_ms()));
        lock(&self.inner.active).insert(
            id,
            Active {
                owner: mode.owner.clone(),
                key,
                abort: abort.clone(),
                last: last.clone(),
            },
        );
        Ok(Upload {
            store: self.clone(),
            file,
            id,
            hasher: crc32fast::Hasher::new_with_initial_len(prefix, offset),
            offset,
            len: offset,
            key,
            abort,
            last,
            finished: false,
            pending_cut: true,
            before,
            recorded_ctime,
            created: created.then(|| v.clone()),
        })
    }

    /// Removes `v` if it is still the file `f` (an upload's own new file).
    pub(super) fn unlink_if_same(&self, v: &VPath, f: &File) {
        let (Ok(md), Ok((p, name))) = (f.metadata(), self.inner.root.parent(v)) else {
            return;
        };
        if let Ok(st) = rustix::fs::statat(&p, name, AtFlags::SYMLINK_NOFOLLOW) {
            if st.st_dev == md.dev() && st.st_ino == md.ino() {
                let _ = rustix::fs::unlinkat(&p, name, AtFlags::empty());
            }
        }
    }

    /// The checks and the "partial" record of a locked upload file.
    fn prepare(&self, mode: &Mode, file: &mut File) -> Result<Prepared, StoreError> {
        let fl = rustix::fs::fcntl_getfl(&file).map_err(|e| StoreError::io("open", &e.into()))?;
        let _ = rustix::fs::fcntl_setfl(&file, fl - OFlags::NONBLOCK);
        let md = file.metadata().map_err(|e| StoreError::io("open", &e))?;
        let meta = self.read_meta(file, &md);
        let cur = md.len();
        let offset = match mode.start {
            Start::Replace => 0,
            Start::At(n) => n,
            Start::Append => cur,
        };
        if offset > cur {
            return Err(StoreError::new(
                ErrorKind::Conflict,
                format!("restart offset {offset} beyond file size {cur}"),
            ));
        }
        let stored = match mode.start {
            Start::Replace => None,
            _ => meta.and_then(|m| m.key),
        };
        let key = mode.key.or(stored);
        let mut prefix = 0u32;
        if offset > 0 {
            let cached = meta
                .filter(|m| m.len == offset)
                .and_then(|m| m.trusted_crc(&md));
            prefix = match cached {
                Some(c) => c,
                None => crc_range(file, 0, offset).map_err(|e| StoreError::io("CRC", &e))?,
            };
        }
        // Record "partial" before touching a byte: if that fails, the
        // file is as it was (and the caller removes a file it created).
        let start = FileMeta::stamped(key, KeyState::Partial, prefix, offset, Some(&md));
        self.write_meta(file, &start)
            .map_err(|e| StoreError::io("recording the upload's state", &e))?;
        let recorded_ctime = file.metadata().map(|m| Ident::of(&m).ctime_ns).ok();
        Ok(Prepared {
            id: (md.dev(), md.ino()),
            before: meta.map(|m| (m, m.trusted_crc(&md).is_some())),
            offset,
            key,
            prefix,
            recorded_ctime,
        })
    }

    /// The file `f` is locked: if by an upload of this process with the
    /// same owner and key as `mode` that has received nothing for
    /// [`TAKEOVER_QUIET`] (stalled), stop it and wait for its lock.
    fn take_over(&self, f: &File, id: (u64, u64), mode: &Mode) -> Result<bool, StoreError> {
        let Some(key) = mode.key.or(mode.claim) else {
            return Ok(false);
        };
        {
            let active = lock(&self.inner.active);
            let Some(a) = active.get(&id) else {
                return Ok(false);
            };
            if a.owner != mode.owner || a.key != Some(key) {
                return Ok(false);
            }
            let quiet = now_ms().saturating_sub(a.last.load(Ordering::Relaxed));
            if quiet < TAKEOVER_QUIET.as_millis() as u64 {
                return Ok(false);
            }
            log::info!("upload takeover: stopping an upload silent for {quiet} ms");
            a.abort.store(true, Ordering::SeqCst);
        }
        let t0 = Instant::now();
        while t0.elapsed() < TAKEOVER_WAIT {
            std::thread::sleep(Duration::from_millis(20));
            if locked(f)? {
                log::info!("upload takeover: the stalled upload of the same key gave way");
                return Ok(true);
            }
        }
        Ok(false)
    }
}

impl Upload {
    /// Where this upload started.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The file's length so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True before any byte was received.
    pub fn is_empty(&self) -> bool {
        self.len == self.offset
    }

    /// The key this upload is bound to.
    pub fn key(&self) -> Option<Key> {
        self.key
    }

    /// True once a newer upload of the same owner and key wants the file:
    /// stop receiving and [`Upload::finish`].
    pub fn taken_over(&self) -> bool {
        self.abort.load(Ordering::SeqCst)
    }

    /// The flag behind [`Upload::taken_over`], for a receiver that waits
    /// elsewhere (an HTTP body) and must notice it while no byte arrives.
    pub fn takeover_flag(&self) -> Arc<AtomicBool> {
        self.abort.clone()
    }

    fn cut(&mut self) -> Result<(), StoreError> {
        if self.pending_cut {
            self.file
                .set_len(self.offset)
                .and_then(|_| self.file.seek(SeekFrom::Start(self.offset)))
                .map_err(|e| StoreError::io("open", &e))?;
            self.pending_cut = false;
        }
        Ok(())
    }

    /// Appends `buf` to the file and the running CRC.
    pub fn write(&mut self, buf: &[u8]) -> Result<(), StoreError> {
        self.cut()?;
        self.file
            .write_all(buf)
            .map_err(|e| StoreError::io("write", &e))?;
        self.hashed(buf);
        Ok(())
    }

    /// The open file, for a face that writes by itself (then it calls
    /// [`Upload::hashed`] with every byte it wrote, in order).
    pub fn file(&mut self) -> Result<&mut File, StoreError> {
        self.cut()?;
        Ok(&mut self.file)
    }

    /// Accounts bytes written through [`Upload::file`].
    pub fn hashed(&mut self, buf: &[u8]) {
        self.hasher.update(buf);
        self.len += buf.len() as u64;
        self.last.store(now_ms(), Ordering::Relaxed);
    }

    /// Gives the upload up before any byte was sent (say, the data
    /// connection never came): the file and its record stay as they were.
    pub fn abandon(mut self) {
        self.finished = true;
        if !self.pending_cut {
            let _ = self.record(false);
            return;
        }
        let restored = match self.before {
            // Unchanged since the "partial" record (same ctime): a trusted
            // record stays trusted, stamped with the file as it is now.
            Some((m, true))
                if self
                    .file
                    .metadata()
                    .is_ok_and(|md| Some(Ident::of(&md).ctime_ns) == self.recorded_ctime) =>
            {
                self.file.metadata().and_then(|md| {
                    let m = FileMeta::stamped(m.key, m.state, m.crc, m.len, Some(&md));
                    self.store.write_meta(&self.file, &m)
                })
            }
            Some((m, _)) => self.store.write_meta(&self.file, &m),
            None => rustix::fs::fremovexattr(&self.file, super::meta::XATTR).map_err(Into::into),
        };
        if let Err(e) = restored {
            log::warn!("restoring the record of an abandoned upload: {e}");
        }
        if let Some(v) = self.created.take() {
            self.store.unlink_if_same(&v, &self.file);
        }
    }

    /// Ends the upload: cuts anything past the accounted bytes, decides
    /// complete (CRC equals the key; keyless: `clean`, the sender ended
    /// the stream) or partial, and records it. An error means the state is
    /// not recorded and no success may be reported.
    pub fn finish(mut self, clean: bool) -> Result<Done, StoreError> {
        self.finished = true;
        self.record(clean)
    }

    fn record(&mut self, clean: bool) -> Result<Done, StoreError> {
        let md = self
            .file
            .metadata()
            .map_err(|e| StoreError::io("stat", &e))?;
        if md.len() != self.len {
            self.file
                .set_len(self.len)
                .map_err(|e| StoreError::io("truncate", &e))?;
        }
        if self.store.inner.durable {
            self.file
                .sync_data()
                .map_err(|e| StoreError::io("fsync", &e))?;
        }
        let crc = self.hasher.clone().finalize();
        let complete = match self.key {
            Some(k) => k.0 == crc,
            None => clean,
        };
        let state = if complete {
            KeyState::Complete
        } else {
            KeyState::Partial
        };
        let md = self
            .file
            .metadata()
            .map_err(|e| StoreError::io("stat", &e))?;
        let m = FileMeta::stamped(self.key, state, crc, self.len, Some(&md));
        self.store
            .write_meta(&self.file, &m)
            .map_err(|e| StoreError::io("recording the upload's state", &e))?;
        Ok(Done {
            state,
            len: self.len,
            crc,
            key: self.key,
        })
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if !self.finished {
            if let Err(e) = self.record(false) {
                log::error!("upload ended without its state recorded: {e}");
            }
        }
        let mut active = lock(&self.store.inner.active);
        if active
            .get(&self.id)
            .is_some_and(|a| Arc::ptr_eq(&a.abort, &self.abort))
        {
            active.remove(&self.id);
        }
    }
}
