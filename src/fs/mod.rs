//! The filesystem: a core testable without FUSE ([`Core`]), and a thin
//! fuser adapter ([`fuse::KeyFs`]) whose every method makes one core call
//! and sends one reply.
//!
//! # How the core works
//! - **Namespace** ([`namespace`]): lookups and listings come from the
//!   server over a dedicated connection ([`conn`]), cached for
//!   [`ATTR_TTL`]; mkdir/rmdir/unlink/rename are the transport's
//!   namespace calls, and its errors carry their errno values.
//! - **Local files** ([`files`]): create, or open for writing, makes a new
//!   *version* of the file in the spool ([`crate::spool::file`]), recorded in
//!   the journal as `Open` if still open 20 ms later (the syncer writes the
//!   record; a file closed sooner never needs it), so a crash leaves it
//!   reported and never uploaded half-written. A version over a server
//!   file gets its old bytes lazily ([`fill`]): only those a read needs,
//!   the rest before it is sealed, and never those a write or truncate
//!   replaced. Until that version is uploaded and verified, the
//!   file's local size and content win over the server's for stat, read and
//!   readdir. The opener's close, or else release, seals the version (its
//!   CRC is final) and hands it to the uploader: close never waits on the network, nor on the disk (the
//!   uploader's syncer commits closed files in batches, see
//!   [`crate::spool::syncer`]). fsync seals and waits for the verified
//!   upload, or fails with EIO.
//! - **Remote reads** ([`reader`]): a ranged read from the offset, one
//!   streaming transfer per open handle, received ahead (a few MiB) by its
//!   own thread while the replies go out, reconnecting only on a seek or
//!   a cut. The adapter runs the reads, and directory listings, on small thread pools
//!   ([`pool`]) that reply from there, so the FUSE request threads never
//!   wait on a slow download.
//!
//! Locks are never held across network I/O: the core state is one mutex
//! for in-memory tables only (plus `order`, which serializes sealing with
//! renames: disk work only); the namespace connection and each read
//! stream have their own.
pub mod conn;
mod error;
pub mod files;
pub mod fill;
pub mod fuse;
pub mod inode;
pub mod meta;
pub mod names;
pub mod namespace;
pub mod pool;
pub mod reader;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

pub use error::{errno, FsError, FsResult};

use crate::spool::file::SpoolFile;
use crate::spool::journal::{JobRecord, JobState, Journal, Wanted};
use crate::transport::{Conn, Endpoint, RemoteEntry};
use crate::upload::{resume::Policy, Leftover, OnComplete, UploadConfig, Uploader};
use inode::InodeTable;
use reader::RemoteReader;

/// How long listings and attributes are trusted (ours and the kernel's).
pub const ATTR_TTL: Duration = Duration::from_secs(1);
/// Block size reported to stat: programs then write in 1 MiB pieces.
pub const BLKSIZE: u32 = 1 << 20;

pub struct FsConfig {
    pub endpoint: Endpoint,
    pub spool_dir: PathBuf,
    pub workers: usize,
    pub bwlimit: Option<u64>,
    pub policy: Policy,
    pub uid: u32,
    pub gid: u32,
    /// Connect/login timeout for the filesystem's own connections.
    pub timeout: Duration,
    /// How long fsync waits for the verified upload before EIO.
    pub fsync_timeout: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub kind: Kind,
    pub size: u64,
    pub mtime: SystemTime,
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: u64,
    /// The offset of the *next* entry (what readdir is called with to continue).
    pub next: u64,
    pub kind: Kind,
    pub name: String,
}

/// What an open returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opened {
    pub fh: u64,
    /// Bypass the page cache (write handles: large writes, ~2.5x faster
    /// here; mmap still works, see `FUSE_DIRECT_IO_ALLOW_MMAP` in [`fuse`]).
    pub direct_io: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    /// Open for writing; the CRC is still running.
    Writing,
    /// Sealed and handed to the uploader; no more writes go to this spool file.
    Queued,
    /// Uploaded and verified (kept only while a handle still uses it).
    Uploaded,
}

/// A version of a file that lives in the spool.
struct Local {
    id: u64,
    spool: Arc<SpoolFile>,
    writers: u32,
    status: Status,
    mtime: SystemTime,
    /// The mtime and mode the program set (see [`meta`]): shown at once,
    /// applied on the server after the upload.
    wanted: Wanted,
    unlinked: bool,
    /// Server-only ranges still to fetch (a file opened for writing
    /// without O_TRUNC); `None` when the spool holds all of it.
    fill: Option<Arc<fill::Fill>>,
}

enum Handle {
    Write {
        ino: u64,
        append: bool,
        /// The process that opened it (0: unknown), whose close seals.
        opener: u32,
    },
    Spool {
        spool: Arc<SpoolFile>,
        fill: Option<Arc<fill::Fill>>,
    },
    Remote {
        reader: Box<Mutex<RemoteReader>>,
    },
    Dir {
        entries: Vec<DirEntry>,
    },
}

#[derive(Default)]
struct State {
    inodes: InodeTable,
    pending: HashMap<u64, Local>,
    handles: HashMap<u64, Arc<Handle>>,
    next_fh: u64,
    dirs: HashMap<String, (Instant, Arc<Vec<RemoteEntry>>)>,
    /// Bumped by every invalidation: a listing fetched across one may
    /// predate the change (an upload that landed) and is not cached.
    dirs_gen: u64,
}

impl State {
    fn invalidate(&mut self, dir: &str) {
        self.dirs.remove(dir);
        self.dirs_gen += 1;
    }
    /// Puts `entry` into the cached listing of `dir` (if cached), in place
    /// of a same-name entry: the cache stays as fresh as it was. Counts as
    /// an invalidation for a listing in flight, which may predate it.
    fn upsert(&mut self, dir: &str, entry: RemoteEntry) {
        self.dirs_gen += 1;
        if let Some((_, list)) = self.dirs.get_mut(dir) {
            let list = Arc::make_mut(list);
            match list.iter_mut().find(|e| e.name == entry.name) {
                Some(e) => *e = entry,
                None => list.push(entry),
            }
        }
    }
    fn add_handle(&mut self, h: Handle) -> u64 {
        self.next_fh += 1;
        self.handles.insert(self.next_fh, Arc::new(h));
        self.next_fh
    }
    fn pending_ino(&self, id: u64) -> Option<u64> {
        self.pending
            .iter()
            .find(|(_, l)| l.id == id)
            .map(|(ino, _)| *ino)
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

fn lock_order(order: &Mutex<()>) -> MutexGuard<'_, ()> {
    order.lock().unwrap_or_else(|e| e.into_inner())
}

/// The filesystem core. All methods take `&self` and may be called from
/// several threads at once.
pub struct Core {
    conns: conn::Conns,
    journal: Arc<Journal>,
    uploader: Uploader,
    state: Arc<Mutex<State>>,
    /// Taken before `state` by seal (path read + submit) and by rename
    /// (names + journal + uploader), so a version is never submitted under
    /// a name a concurrent rename just gave up.
    order: Mutex<()>,
    /// Held by the uploader's `on_complete` while it tells the fs; see
    /// [`Core::hold_upload_completions`].
    completions: Arc<Mutex<()>>,
    uid: u32,
    gid: u32,
    fsync_timeout: Duration,
    /// Jobs found `Open` in the journal at mount: the daemon died while they
    /// were being written. Kept in the spool, not uploaded.
    pub kept_open: Vec<JobRecord>,
}

impl Core {
    /// Connects (checking the server and the password), opens the spool and
    /// its journal, starts the uploader and shows the pending files.
    pub fn start(cfg: FsConfig) -> FsResult<Arc<Core>> {
        let first = Conn::connect(&cfg.endpoint, cfg.timeout)?;
        std::fs::create_dir_all(&cfg.spool_dir)?;
        let journal = Arc::new(Journal::open(&cfg.spool_dir)?);
        let records = journal.load_all()?;
        let state = Arc::new(Mutex::new(State::default()));
        let weak = Arc::downgrade(&state);
        let completions = Arc::new(Mutex::new(()));
        let gate = completions.clone();
        let on_complete: OnComplete = Arc::new(move |rec| {
            let _gate = lock_order(&gate);
            let state = weak.upgrade()?;
            uploaded(&state, rec).map(|l| Box::new(l) as Leftover)
        });
        let uploader = Uploader::start(
            UploadConfig {
                endpoint: cfg.endpoint.clone(),
                workers: cfg.workers.max(1),
                bwlimit: cfg.bwlimit,
                policy: cfg.policy,
                on_complete: Some(on_complete),
            },
            journal.clone(),
        )?;
        match journal.orphan_data(&records) {
            Ok(ids) if !ids.is_empty() => log::warn!(
                "spool: {} data file(s) without a journal record kept in {} (ids {:?}): \
                 files open for writing when the daemon stopped before their Open record \
                 was written, or removals cut short",
                ids.len(),
                journal
                    .data_path(0)
                    .parent()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                &ids[..ids.len().min(10)]
            ),
            Ok(_) => {}
            Err(e) => log::debug!("spool: cannot list the data files: {e}"),
        }
        let mut kept_open = Vec::new();
        {
            let mut st = lock(&state);
            for rec in records {
                match rec.state {
                    JobState::Open => {
                        log::warn!(
                            "{}: was still open for writing when the daemon stopped; \
                             kept in the spool as job {} and not uploaded (see `keyfs status`)",
                            rec.remote_path,
                            rec.id
                        );
                        kept_open.push(rec);
                    }
                    JobState::Queued | JobState::Failed(_) => {
                        let path = journal.data_path(rec.id);
                        let spool = match SpoolFile::open_existing(&path, Some(rec.crc)) {
                            Ok(s) => s,
                            // A Queued record without data was uploaded
                            // before a power cut undid its removal: the
                            // uploader drops it at start (with a warning).
                            Err(e)
                                if e.kind() == std::io::ErrorKind::NotFound
                                    && rec.state == JobState::Queued =>
                            {
                                continue
                            }
                            Err(e) => {
                                log::warn!(
                                    "job {} ({}): spool data missing: {e}",
                                    rec.id,
                                    rec.remote_path
                                );
                                continue;
                            }
                        };
                        if spool.size() != rec.size {
                            log::warn!(
                                "job {} ({}): spool size differs from the journal",
                                rec.id,
                                rec.remote_path
                            );
                        }
                        let ino = st.inodes.ino_for(&rec.remote_path);
                        let newer = st.pending.get(&ino).is_some_and(|l| l.id > rec.id);
                        if !newer {
                            st.pending.insert(
                                ino,
                                Local {
                                    id: rec.id,
                                    spool: Arc::new(spool),
                                    writers: 0,
                                    status: Status::Queued,
                                    mtime: rec.wanted.mtime.unwrap_or_else(SystemTime::now),
                                    wanted: rec.wanted,
                                    unlinked: false,
                                    fill: None,
                                },
                            );
                        }
                    }
                }
            }
        }
        Ok(Arc::new(Core {
            conns: conn::Conns::new(cfg.endpoint, cfg.timeout, Some(first)),
            journal,
            uploader,
            state,
            order: Mutex::new(()),
            completions,
            uid: cfg.uid,
            gid: cfg.gid,
            fsync_timeout: cfg.fsync_timeout,
            kept_open,
        }))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Test seam: while the guard lives, a verified upload is committed by
    /// the uploader (record and data dropped) but the fs is not told yet,
    /// which is how a rename can meet an upload that has just finished.
    #[doc(hidden)]
    pub fn hold_upload_completions(&self) -> MutexGuard<'_, ()> {
        lock_order(&self.completions)
    }

    pub fn uploader(&self) -> &Uploader {
        &self.uploader
    }

    /// Files open for writing now: (remote path, bytes spooled so far), for
    /// `keyfs status`.
    pub fn writing(&self) -> Vec<(String, u64)> {
        let st = self.lock();
        st.pending
            .iter()
            .filter(|(_, l)| l.status == Status::Writing && !l.unlinked)
            .filter_map(|(ino, l)| Some((st.inodes.path(*ino)?.to_string(), l.spool.size())))
            .collect()
    }

    /// Stops the uploader; pending jobs stay in the journal for the next mount.
    pub fn shutdown(&self) {
        self.uploader.shutdown();
        // Remote read handles stop their read-ahead threads when dropped
        // (after a read in progress, if any): unmount releases no handles.
        lock(&self.state)
            .handles
            .retain(|_, h| !matches!(**h, Handle::Remote { .. }));
    }

    fn dir_attr(&self, ino: u64, mtime: SystemTime) -> Attr {
        Attr {
            ino,
            kind: Kind::Dir,
            size: 0,
            mtime,
            perm: 0o755,
            uid: self.uid,
            gid: self.gid,
        }
    }

    fn file_attr(&self, ino: u64, size: u64, mtime: SystemTime) -> Attr {
        Attr {
            ino,
            kind: Kind::File,
            size,
            mtime,
            perm: 0o644,
            uid: self.uid,
            gid: self.gid,
        }
    }

    fn entry_attr(&self, ino: u64, e: &RemoteEntry) -> Attr {
        let mtime = e.mtime.unwrap_or(SystemTime::UNIX_EPOCH);
        let mut a = if e.is_dir {
            self.dir_attr(ino, mtime)
        } else {
            self.file_attr(ino, e.size, mtime)
        };
        // The server's mode where its listing shows one, so a chmod kept
        // by the server shows.
        if let Some(m) = e.mode {
            a.perm = m as u16;
        }
        a
    }

    fn local_attr(&self, ino: u64, l: &Local) -> Attr {
        let mut a = self.file_attr(ino, l.spool.size(), l.mtime);
        if let Some(m) = l.wanted.mode {
            a.perm = m as u16;
        }
        a
    }

    /// Free space of the spool's filesystem: what can still be written.
    pub fn statfs(&self) -> FsResult<libc::statvfs> {
        let dir = self.journal.data_path(0);
        let dir = dir.parent().map(|p| p.to_path_buf()).unwrap_or_default();
        let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
            .map_err(|_| errno(libc::EIO))?;
        // SAFETY: `c` is a valid NUL-terminated path and `out` a valid buffer.
        let mut out: libc::statvfs = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::statvfs(c.as_ptr(), &mut out) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        Ok(out)
    }
}

/// The uploader verified job `rec`: the server copy now stands for the file.
/// Returns the file's local copy when the fs let go of it, to be dropped
/// by the caller off the lock.
fn uploaded(state: &Mutex<State>, rec: &JobRecord) -> Option<Local> {
    let mut st = lock(state);
    let mut listed = false;
    let mut dropped = None;
    if let Some(ino) = st.pending_ino(rec.id) {
        let remove = match st.pending.get_mut(&ino) {
            Some(l) if l.status == Status::Queued => {
                l.status = Status::Uploaded;
                l.writers == 0
            }
            _ => false,
        };
        if remove {
            if let Some(l) = st.pending.remove(&ino) {
                // The server now has exactly this version: show it in the
                // cached listing instead of re-listing the directory.
                if !l.unlinked && st.inodes.path(ino) == Some(rec.remote_path.as_str()) {
                    let entry = RemoteEntry {
                        name: inode::name_of(&rec.remote_path).to_string(),
                        is_dir: false,
                        size: rec.size,
                        mtime: Some(l.mtime),
                        mode: l.wanted.mode,
                    };
                    st.upsert(inode::parent_of(&rec.remote_path), entry);
                    listed = true;
                }
                dropped = Some(l);
            }
        }
    }
    if !listed {
        st.invalidate(inode::parent_of(&rec.remote_path));
    }
    dropped
}
