//! File operations: create/open/read/write/setattr/release/fsync.
//!
//! A write always goes to a *version* of the file in the spool (see the
//! module docs of [`super`]): a new one is started by create, by an open
//! for writing of a file that has no version being written (copying the
//! queued content first, or taking the server's lazily, see [`super::fill`],
//! unless O_TRUNC), or by the first write after fsync sealed the current
//! one. The close(2) of the opener, or else release, seals the version and
//! submits it to the uploader (see [`Core::flush`]); fsync seals it and
//! waits for the upload.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::fill::Fill;
use super::meta::{MtimeSet, SetMeta};
use super::reader::RemoteReader;
use super::{errno, lock_order, Attr, Core, FsError, FsResult, Handle, Local, Opened, Status};
use crate::spool::file::{Busy, SpoolFile};
use crate::spool::journal::{JobRecord, JobState, Wanted};
use crate::upload::UploadError;

/// Where the content of a new version comes from.
enum Source {
    Empty,
    Copy(Arc<SpoolFile>),
    /// The server's file of this size, fetched lazily.
    Server(u64),
}

/// The version a writer writes to.
type Target = (Arc<SpoolFile>, Option<Arc<Fill>>);

fn write_to(t: &Target, offset: u64, data: &[u8]) -> std::io::Result<usize> {
    match &t.1 {
        Some(f) => f.write(&t.0, offset, data),
        None => t.0.write_at(offset, data),
    }
}

fn truncate_to(t: &Target, size: u64) -> std::io::Result<()> {
    match &t.1 {
        Some(f) => f.truncate(&t.0, size),
        None => t.0.truncate(size),
    }
}

impl Core {
    fn handle(&self, fh: u64) -> FsResult<Arc<Handle>> {
        self.lock()
            .handles
            .get(&fh)
            .cloned()
            .ok_or(errno(libc::EBADF))
    }

    /// Starts a new spool version of `path`, recorded `Open` in the journal.
    fn new_version(&self, path: &str, source: Source) -> FsResult<(u64, Target)> {
        let source_size = match source {
            Source::Server(size) => Some(size),
            _ => None,
        };
        let id = self.journal.next_id()?;
        let data = self.journal.data_path(id);
        // From the spool's pool of recycled files when it has one: no
        // inode allocation on the create path (see `crate::spool::pool`).
        let spool = self
            .journal
            .create_data(id)
            .map(|f| SpoolFile::from_new(f, &data))
            .and_then(|new| match source {
                Source::Empty => Ok(new),
                Source::Copy(old) => old.copy_into(new),
                // Of the server's size, its bytes missing until needed.
                Source::Server(size) => new.truncate(size).map(|()| new),
            });
        let spool = match spool {
            Ok(s) => s,
            Err(e) => {
                let _ = std::fs::remove_file(&data);
                return Err(e.into());
            }
        };
        let rec = JobRecord::new(id, path.to_string(), spool.size(), 0, JobState::Open);
        // Deferred: until close this record only says "a file is being
        // written here" (never uploaded), so the syncer writes it (no fsync)
        // only if the file is still open at its next batch, within 20 ms. A
        // crash before that leaves an orphan data file instead of a kept
        // Open job. At close the Queued record is written instead (a
        // rename, no fsync) and the syncer commits data, then record; only
        // a Queued record is ever uploaded.
        self.uploader.note_open(rec);
        let fill = match source_size {
            Some(size) if size > 0 => Some(Arc::new(Fill::new(path, size))),
            _ => None,
        };
        Ok((id, (Arc::new(spool), fill)))
    }

    /// Makes `ino` writable by one more writer (or by the same writer after
    /// fsync sealed it): returns the spool version writes go to, counted
    /// busy (taken under the state lock) until the guard drops.
    fn begin_write(&self, ino: u64, trunc: bool, new_writer: bool) -> FsResult<(Target, Busy)> {
        // A chmod of the file still pending carries over to a new version.
        let (path, source, mode) = {
            let mut st = self.lock();
            let path = st
                .inodes
                .path(ino)
                .map(str::to_string)
                .or_else(|| st.pending.contains_key(&ino).then(String::new));
            let Some(path) = path else {
                return Err(errno(libc::ENOENT));
            };
            match st.pending.get_mut(&ino) {
                Some(l) if l.status == Status::Writing => {
                    if new_writer {
                        l.writers += 1;
                    }
                    let t = (l.spool.clone(), l.fill.clone());
                    let busy = l.spool.busy();
                    if trunc {
                        truncate_to(&t, 0)?;
                    }
                    // A write after `touch -d` makes the time "now" again.
                    l.mtime = SystemTime::now();
                    l.wanted.mtime = None;
                    return Ok((t, busy));
                }
                Some(l) if trunc => (path, Source::Empty, l.wanted.mode),
                Some(l) => (path, Source::Copy(l.spool.clone()), l.wanted.mode),
                None if trunc => (path, Source::Empty, None),
                None => (path, Source::Server(0), None),
            }
        };
        // A version that could never be uploaded is refused at once.
        super::names::check_remote_len(&self.conns.endpoint().root, &path)?;
        let source = match source {
            Source::Server(_) => match self.remote_entry(&path)? {
                Some(e) if e.is_dir => return Err(errno(libc::EISDIR)),
                Some(e) => Source::Server(e.size),
                None => return Err(errno(libc::ENOENT)),
            },
            s => s,
        };
        let (id, target) = self.new_version(&path, source)?;
        let mut st = self.lock();
        let writers_before = st.pending.get(&ino).map(|l| l.writers).unwrap_or(0);
        if let Some(l) = st.pending.get_mut(&ino) {
            if l.status == Status::Writing {
                // Another open won the race: use its version.
                if new_writer {
                    l.writers += 1;
                }
                let t = (l.spool.clone(), l.fill.clone());
                let busy = l.spool.busy();
                drop(st);
                let _ = self.journal.remove(id);
                return Ok((t, busy));
            }
        }
        st.pending.insert(
            ino,
            Local {
                id,
                spool: target.0.clone(),
                writers: writers_before + u32::from(new_writer),
                status: Status::Writing,
                mtime: SystemTime::now(),
                wanted: Wanted { mtime: None, mode },
                unlinked: false,
                fill: target.1.clone(),
            },
        );
        // No need to drop the parent's cached listing: the local version
        // overlays it (and `uploaded` puts the name in it), so the next
        // lookups in a `cp -r` are answered from the cache.
        let busy = target.0.busy();
        Ok((target, busy))
    }

    /// Opens `ino` for a caller whose process is unknown: any close of a
    /// writer may seal it (see [`flush`](Self::flush)).
    pub fn open(&self, ino: u64, flags: i32) -> FsResult<Opened> {
        self.open_by(ino, flags, 0)
    }

    /// Opens `ino` for process `pid` (the FUSE request's).
    pub fn open_by(&self, ino: u64, flags: i32, pid: u32) -> FsResult<Opened> {
        let acc = flags & libc::O_ACCMODE;
        if acc == libc::O_RDONLY {
            let mut st = self.lock();
            let h = match st.pending.get(&ino) {
                Some(l) => Handle::Spool {
                    spool: l.spool.clone(),
                    fill: l.fill.clone(),
                },
                None => {
                    let path = st.inodes.path(ino).ok_or(errno(libc::ENOENT))?;
                    Handle::Remote {
                        reader: Box::new(Mutex::new(RemoteReader::new(path))),
                    }
                }
            };
            let fh = st.add_handle(h);
            return Ok(Opened {
                fh,
                direct_io: false,
            });
        }
        self.begin_write(ino, flags & libc::O_TRUNC != 0, true)?;
        let fh = self.lock().add_handle(Handle::Write {
            ino,
            append: flags & libc::O_APPEND != 0,
            opener: pid,
        });
        Ok(Opened {
            fh,
            direct_io: true,
        })
    }

    /// Creates and opens `name` for a caller whose process is unknown
    /// (see [`open`](Self::open)).
    pub fn create(
        &self,
        parent: u64,
        name: &std::ffi::OsStr,
        flags: i32,
    ) -> FsResult<(Attr, Opened)> {
        self.create_by(parent, name, flags, 0)
    }

    /// Creates and opens `name` for process `pid` (the FUSE request's).
    pub fn create_by(
        &self,
        parent: u64,
        name: &std::ffi::OsStr,
        flags: i32,
        pid: u32,
    ) -> FsResult<(Attr, Opened)> {
        let path = self.new_child_path(parent, name)?;
        let ino = self.lock().inodes.lookup(&path);
        self.begin_write(ino, true, true)?;
        let mut st = self.lock();
        let fh = st.add_handle(Handle::Write {
            ino,
            append: flags & libc::O_APPEND != 0,
            opener: pid,
        });
        let attr = match st.pending.get(&ino) {
            Some(l) => self.local_attr(ino, l),
            None => return Err(errno(libc::EIO)),
        };
        Ok((
            attr,
            Opened {
                fh,
                direct_io: true,
            },
        ))
    }

    /// Whether a read of `fh` may wait on the network (a remote stream,
    /// or a version whose old content is still partly on the server).
    pub fn read_may_block(&self, fh: u64) -> bool {
        let st = self.lock();
        let lazy = |f: Option<&Arc<Fill>>| f.is_some_and(|f| !f.is_done());
        match st.handles.get(&fh).map(|h| &**h) {
            Some(Handle::Remote { .. }) => true,
            Some(Handle::Spool { fill, .. }) => lazy(fill.as_ref()),
            Some(Handle::Write { ino, .. }) => {
                lazy(st.pending.get(ino).and_then(|l| l.fill.as_ref()))
            }
            _ => false,
        }
    }

    /// Whether releasing `fh` may wait on the network: its version still
    /// has old content to fetch before it is sealed.
    pub fn release_may_block(&self, fh: u64) -> bool {
        let st = self.lock();
        match st.handles.get(&fh).map(|h| &**h) {
            Some(Handle::Write { ino, .. }) => st
                .pending
                .get(ino)
                .and_then(|l| l.fill.as_ref())
                .is_some_and(|f| !f.is_done()),
            _ => false,
        }
    }

    /// Reads from a spooled version, first fetching what of that range is
    /// still only on the server.
    fn read_version(
        &self,
        spool: &SpoolFile,
        fill: Option<&Arc<Fill>>,
        offset: u64,
        size: u32,
    ) -> FsResult<Vec<u8>> {
        if let Some(f) = fill {
            f.fetch_for_read(&self.conns, spool, offset, u64::from(size))?;
        }
        Ok(spool.read_at(offset, size as usize)?)
    }

    pub fn read(&self, fh: u64, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        let h = self.handle(fh)?;
        match &*h {
            Handle::Write { ino, .. } => {
                let (spool, fill) = self
                    .lock()
                    .pending
                    .get(ino)
                    .map(|l| (l.spool.clone(), l.fill.clone()))
                    .ok_or(errno(libc::EIO))?;
                self.read_version(&spool, fill.as_ref(), offset, size)
            }
            Handle::Spool { spool, fill } => self.read_version(spool, fill.as_ref(), offset, size),
            Handle::Remote { reader } => {
                let mut r = reader.lock().unwrap_or_else(|e| e.into_inner());
                Ok(r.read(&self.conns, offset, size as usize)?)
            }
            Handle::Dir { .. } => Err(errno(libc::EISDIR)),
        }
    }

    /// Like [`read`](Self::read), but hands the bytes to `answer` as a
    /// slice: a remote stream answers from its window without a copy.
    pub fn read_with<T>(
        &self,
        fh: u64,
        offset: u64,
        size: u32,
        answer: impl FnOnce(&[u8]) -> T,
    ) -> FsResult<T> {
        let h = self.handle(fh)?;
        match &*h {
            Handle::Remote { reader } => {
                let mut r = reader.lock().unwrap_or_else(|e| e.into_inner());
                Ok(r.read_with(&self.conns, offset, size as usize, answer)?)
            }
            _ => Ok(answer(&self.read(fh, offset, size)?)),
        }
    }

    pub fn write(&self, fh: u64, offset: u64, data: &[u8]) -> FsResult<u32> {
        let h = self.handle(fh)?;
        let Handle::Write { ino, append, .. } = &*h else {
            return Err(errno(libc::EBADF));
        };
        let (t, _busy) = self.begin_write(*ino, false, false)?;
        let at = if *append { t.0.size() } else { offset };
        let n = write_to(&t, at, data)?;
        Ok(n as u32)
    }

    /// Truncate and touch (see [`Core::setattr_with`]).
    pub fn setattr(
        &self,
        ino: u64,
        size: Option<u64>,
        mtime: Option<SystemTime>,
    ) -> FsResult<Attr> {
        let meta = SetMeta {
            mtime: mtime.map(MtimeSet::At),
            ..SetMeta::default()
        };
        self.setattr_with(ino, size, meta)
    }

    /// setattr: a chown is checked first (see [`super::meta`]); a truncate
    /// goes to a local version directly, otherwise through a short-lived
    /// writer that makes one; then the mtime and mode.
    pub fn setattr_with(&self, ino: u64, size: Option<u64>, meta: SetMeta) -> FsResult<Attr> {
        self.check_owner(&meta)?;
        if let Some(size) = size {
            let writing = {
                let st = self.lock();
                st.pending
                    .get(&ino)
                    .filter(|l| l.status == Status::Writing)
                    .map(|l| ((l.spool.clone(), l.fill.clone()), l.spool.busy()))
            };
            match writing {
                Some((t, _busy)) => truncate_to(&t, size)?,
                None => {
                    let (t, busy) = self.begin_write(ino, size == 0, true)?;
                    let r = truncate_to(&t, size);
                    drop(busy);
                    let sealed = self.end_write(ino);
                    r?;
                    sealed?;
                }
            }
        }
        match self.apply_meta(ino, &meta)? {
            Some(a) => Ok(a),
            None => self.getattr(ino),
        }
    }

    /// close(2) of a descriptor by process `pid`. When it is the process
    /// that opened the file's only writer, the version is sealed and
    /// queued here rather than at release, which the kernel sends after
    /// close has returned: a daemon killed in between would otherwise keep
    /// a file `cp` reported as written in the spool as still open, and
    /// never upload it. Left to release, as before:
    /// - a close by another process (a child exiting with an inherited
    ///   descriptor, as under `make > log`): the opener writes on;
    /// - another writer, or a write or truncate in progress;
    /// - an empty version (a shell's `cmd > f` closes its first
    ///   descriptor of `f` before `cmd` writes a byte);
    /// - old server content still to fetch, or a CRC to recompute by
    ///   re-reading the file (close must not wait for either).
    ///
    /// A write through the same open file after this close (a dup'd
    /// descriptor) starts a new version, as after fsync.
    pub fn flush(&self, fh: u64, pid: u32) -> FsResult<()> {
        let Some(h) = self.lock().handles.get(&fh).cloned() else {
            return Ok(());
        };
        let Handle::Write { ino, opener, .. } = &*h else {
            return Ok(());
        };
        if *opener != 0 && *opener != pid {
            return Ok(());
        }
        let _order = lock_order(&self.order);
        let st = self.lock();
        let seal_now = st.pending.get(ino).is_some_and(|l| {
            l.status == Status::Writing
                && !l.unlinked
                && l.writers <= 1
                && !l.spool.is_busy()
                && l.spool.size() > 0
                && !l.spool.needs_recompute()
                && l.fill.as_ref().is_none_or(|f| f.is_done())
        });
        if seal_now {
            self.seal(st, *ino)
        } else {
            Ok(())
        }
    }

    pub fn release(&self, fh: u64) -> FsResult<()> {
        let h = self.lock().handles.remove(&fh);
        if let Some(h) = h {
            if let Handle::Write { ino, .. } = &*h {
                return self.end_write(*ino);
            }
        }
        Ok(())
    }

    /// Fetches what the version of `ino` still lacks from the server (when
    /// `last_writer`, only if this is its last writer about to seal it).
    /// No lock is held while it downloads.
    pub(super) fn complete_fill(&self, ino: u64, last_writer: bool) -> FsResult<()> {
        let lazy = {
            let st = self.lock();
            st.pending
                .get(&ino)
                .filter(|l| l.status == Status::Writing && !l.unlinked)
                .filter(|l| !last_writer || l.writers <= 1)
                .and_then(|l| Some((l.spool.clone(), l.fill.clone()?)))
        };
        if let Some((spool, fill)) = lazy {
            if let Err(e) = fill.complete(&self.conns, &spool) {
                let path = self.lock().inodes.path(ino).unwrap_or("").to_string();
                log::error!(
                    "{path}: cannot fetch the rest of the server's copy ({e}); \
                     the version stays in the spool unsealed, and the next close retries"
                );
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// One writer went away; the last one seals the version and submits it.
    fn end_write(&self, ino: u64) -> FsResult<()> {
        if let Err(e) = self.complete_fill(ino, true) {
            let mut st = self.lock();
            if let Some(l) = st.pending.get_mut(&ino) {
                l.writers = l.writers.saturating_sub(1);
            }
            return Err(e);
        }
        let _order = lock_order(&self.order);
        let mut st = self.lock();
        let Some(l) = st.pending.get_mut(&ino) else {
            return Ok(());
        };
        l.writers = l.writers.saturating_sub(1);
        if l.writers > 0 {
            return Ok(());
        }
        if l.unlinked || l.status == Status::Uploaded {
            let id = l.id;
            let unlinked = l.unlinked;
            // Dropped off the lock: the last close of a large uploaded
            // (unlinked) data file takes a while to free its blocks.
            let gone = st.pending.remove(&ino);
            drop(st);
            drop(_order);
            drop(gone);
            if unlinked {
                let _ = self.journal.remove(id);
            }
            return Ok(());
        }
        if l.status != Status::Writing {
            return Ok(());
        }
        self.seal(st, ino)
    }

    /// Marks the version of `ino` sealed (no more writes to its spool file),
    /// then computes its CRC and submits it: a rename of its record, no
    /// fsync (the syncer commits it in the background). The caller holds
    /// `order` (taken before the state lock), so a rename in the mount
    /// cannot slip between reading the path and queueing the job.
    fn seal(&self, mut st: std::sync::MutexGuard<'_, super::State>, ino: u64) -> FsResult<()> {
        let path = st.inodes.path(ino).map(str::to_string);
        let Some(l) = st.pending.get_mut(&ino) else {
            return Ok(());
        };
        let Some(path) = path else {
            return Ok(());
        };
        if l.fill.as_ref().is_some_and(|f| !f.is_done()) {
            // A write raced with the completion: the next close seals it.
            log::warn!("{path}: not sealed, part of its old content is still to fetch");
            return Err(errno(libc::EIO));
        }
        l.status = Status::Queued;
        // The time of the last write (or the one the program set) stands.
        let (id, spool, wanted) = (l.id, l.spool.clone(), l.wanted);
        drop(st);
        // No fsync here (close must not wait on the disk): the record is
        // renamed into place and the uploader's syncer commits data, then
        // record, in its next batch.
        let submit = || -> std::io::Result<()> {
            let (size, crc) = spool.finish()?;
            self.uploader.submit_volatile(JobRecord {
                wanted,
                ..JobRecord::new(id, path.clone(), size, crc, JobState::Queued)
            })
        };
        submit().map_err(|e| {
            log::error!("{path}: could not queue the upload (kept in the spool as job {id}): {e}");
            FsError::from(e)
        })
    }

    /// Seals the file's current version if it is being written, then waits
    /// until the uploader has uploaded and verified it.
    pub fn fsync(&self, fh: u64) -> FsResult<()> {
        let h = self.handle(fh)?;
        let ino = match &*h {
            Handle::Write { ino, .. } => *ino,
            // Read-only handles have nothing of their own to make durable.
            Handle::Spool { .. } | Handle::Remote { .. } | Handle::Dir { .. } => return Ok(()),
        };
        self.complete_fill(ino, false)?;
        let order = lock_order(&self.order);
        let st = self.lock();
        let writing = st
            .pending
            .get(&ino)
            .is_some_and(|l| l.status == Status::Writing);
        let path = st.inodes.path(ino).map(str::to_string);
        if writing {
            self.seal(st, ino)?;
        } else {
            drop(st);
        }
        drop(order);
        match path {
            Some(p) => self.wait_uploaded(&p),
            None => Ok(()),
        }
    }

    fn wait_uploaded(&self, path: &str) -> FsResult<()> {
        match self.uploader.wait(path, self.fsync_timeout) {
            Ok(()) | Err(UploadError::NotFound) => Ok(()),
            Err(e) => {
                log::warn!("fsync {path}: {e}");
                Err(errno(libc::EIO))
            }
        }
    }
}
