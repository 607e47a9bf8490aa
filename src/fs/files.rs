//! File operations: create/open/read/write/setattr/release/fsync.
//!
//! A write always goes to a *version* of the file in the spool (see the
//! module docs of [`super`]): a new one is started by create, by an open
//! for writing of a file that has no version being written (copying the
//! server's or the queued content first unless O_TRUNC), or by the first
//! write after fsync sealed the current one. Release seals the version and
//! submits it to the uploader; fsync seals it and waits for the upload.

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::inode::join;
use super::meta::{MtimeSet, SetMeta};
use super::namespace::check_name;
use super::reader::RemoteReader;
use super::{errno, lock_order, Attr, Core, FsError, FsResult, Handle, Local, Opened, Status};
use crate::spool::file::SpoolFile;
use crate::spool::journal::{JobRecord, JobState, Wanted};
use crate::upload::UploadError;

/// Where the content of a new version comes from.
enum Source {
    Empty,
    Copy(Arc<SpoolFile>),
    Server,
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
    fn new_version(&self, path: &str, source: Source) -> FsResult<(u64, Arc<SpoolFile>)> {
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
                Source::Server => self.fetch(path, new),
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
        Ok((id, Arc::new(spool)))
    }

    /// Downloads the server's copy of `path` into a new spool file (for an
    /// append or a partial rewrite of a file that only exists remotely).
    fn fetch(&self, path: &str, spool: SpoolFile) -> std::io::Result<SpoolFile> {
        let to_io = |e: crate::remote::RemoteError| std::io::Error::from_raw_os_error(e.to_errno());
        let mut session = self.conns.take().map_err(to_io)?;
        let mut dl = session.retr_at(path, 0).map_err(to_io)?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut off = 0u64;
        loop {
            let n = match dl.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let w = spool.write_at(off, &buf[..n])?;
            if w < n {
                return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
            }
            off += n as u64;
        }
        session.finish_retr(dl).map_err(to_io)?;
        self.conns.give_back(session);
        Ok(spool)
    }

    /// Makes `ino` writable by one more writer (or by the same writer after
    /// fsync sealed it): returns the spool version writes go to.
    fn begin_write(&self, ino: u64, trunc: bool, new_writer: bool) -> FsResult<Arc<SpoolFile>> {
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
                    if trunc {
                        l.spool.truncate(0)?;
                    }
                    // A write after `touch -d` makes the time "now" again.
                    l.mtime = SystemTime::now();
                    l.wanted.mtime = None;
                    return Ok(l.spool.clone());
                }
                Some(l) if trunc => (path, Source::Empty, l.wanted.mode),
                Some(l) => (path, Source::Copy(l.spool.clone()), l.wanted.mode),
                None if trunc => (path, Source::Empty, None),
                None => (path, Source::Server, None),
            }
        };
        let (id, spool) = self.new_version(&path, source)?;
        let mut st = self.lock();
        let writers_before = st.pending.get(&ino).map(|l| l.writers).unwrap_or(0);
        if let Some(l) = st.pending.get_mut(&ino) {
            if l.status == Status::Writing {
                // Another open won the race: use its version.
                if new_writer {
                    l.writers += 1;
                }
                let s = l.spool.clone();
                drop(st);
                let _ = self.journal.remove(id);
                return Ok(s);
            }
        }
        st.pending.insert(
            ino,
            Local {
                id,
                spool: spool.clone(),
                writers: writers_before + u32::from(new_writer),
                status: Status::Writing,
                mtime: SystemTime::now(),
                wanted: Wanted { mtime: None, mode },
                unlinked: false,
            },
        );
        // No need to drop the parent's cached listing: the local version
        // overlays it (and `uploaded` puts the name in it), so the next
        // lookups in a `cp -r` are answered from the cache.
        Ok(spool)
    }

    pub fn open(&self, ino: u64, flags: i32) -> FsResult<Opened> {
        let acc = flags & libc::O_ACCMODE;
        if acc == libc::O_RDONLY {
            let mut st = self.lock();
            let h = match st.pending.get(&ino) {
                Some(l) => Handle::Spool {
                    spool: l.spool.clone(),
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
        });
        Ok(Opened {
            fh,
            direct_io: true,
        })
    }

    pub fn create(
        &self,
        parent: u64,
        name: &std::ffi::OsStr,
        flags: i32,
    ) -> FsResult<(Attr, Opened)> {
        let name = check_name(name)?;
        let path = join(&self.path_of(parent)?, name);
        let ino = self.lock().inodes.lookup(&path);
        self.begin_write(ino, true, true)?;
        let mut st = self.lock();
        let fh = st.add_handle(Handle::Write {
            ino,
            append: flags & libc::O_APPEND != 0,
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

    /// Whether a read of `fh` may wait on the network (a remote stream).
    pub fn read_may_block(&self, fh: u64) -> bool {
        self.lock()
            .handles
            .get(&fh)
            .is_some_and(|h| matches!(**h, Handle::Remote { .. }))
    }

    pub fn read(&self, fh: u64, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        let h = self.handle(fh)?;
        match &*h {
            Handle::Write { ino, .. } => {
                let spool = self
                    .lock()
                    .pending
                    .get(ino)
                    .map(|l| l.spool.clone())
                    .ok_or(errno(libc::EIO))?;
                Ok(spool.read_at(offset, size as usize)?)
            }
            Handle::Spool { spool } => Ok(spool.read_at(offset, size as usize)?),
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
        let Handle::Write { ino, append } = &*h else {
            return Err(errno(libc::EBADF));
        };
        let spool = self.begin_write(*ino, false, false)?;
        let at = if *append { spool.size() } else { offset };
        let n = spool.write_at(at, data)?;
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
                    .map(|l| l.spool.clone())
            };
            match writing {
                Some(spool) => spool.truncate(size)?,
                None => {
                    let spool = self.begin_write(ino, size == 0, true)?;
                    let r = spool.truncate(size);
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

    pub fn flush(&self, _fh: u64) -> FsResult<()> {
        Ok(())
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

    /// One writer went away; the last one seals the version and submits it.
    fn end_write(&self, ino: u64) -> FsResult<()> {
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
            st.pending.remove(&ino);
            drop(st);
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
