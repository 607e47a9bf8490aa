//! Namespace operations: lookup, getattr, readdir, mkdir, rmdir, unlink,
//! rename. The server's listing (cached for [`super::ATTR_TTL`]) is
//! overlaid with the files that live in the spool, whose local size and
//! content win until their upload is verified.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::inode::{join, name_of, parent_of, ROOT};
use super::names::{self, Found, Op};
use super::{
    errno, lock_order, Attr, Core, DirEntry, FsError, FsResult, Handle, Kind, Status, ATTR_TTL,
};
use crate::spool::journal::{JobRecord, JobState};
use crate::transport::RemoteEntry;

/// Cached listings kept at most (each is one directory).
const DIR_CACHE_MAX: usize = 256;
/// How long unlink/rename wait for a stopped upload to let go of a name.
const IDLE_WAIT: Duration = Duration::from_secs(15);

/// Checks a name from the kernel: no separators, no CR/LF (they would
/// smuggle commands or headers into a request), not `.`/`..`, and UTF-8.
pub fn check_name(name: &std::ffi::OsStr) -> FsResult<&str> {
    let s = name.to_str().ok_or(errno(libc::EINVAL))?;
    if s.is_empty() || s == "." || s == ".." || s.contains(['/', '\r', '\n', '\0']) {
        return Err(errno(libc::EINVAL));
    }
    if s.len() > names::MAX_NAME {
        return Err(errno(libc::ENAMETOOLONG));
    }
    Ok(s)
}

impl Core {
    /// Deletes the server's copy of `path` after its pending file was
    /// removed or renamed in the mount: first waits until no upload runs
    /// to `path` (a stopped upload finishes its chunk and lets go; until
    /// then keyftpd answers the delete "busy"), so no upload in flight can
    /// leave the old name behind.
    fn drop_server_copy(&self, path: &str) {
        if !self.uploader.wait_idle(path, IDLE_WAIT) {
            log::warn!("{path}: the stopped upload did not let go in time");
        }
        match self.while_busy(|| self.conns.ns(|s| s.delete(path))) {
            Ok(()) => {}
            Err(e) if e.to_errno() == libc::ENOENT => {}
            Err(e) => log::warn!("{path}: removing the server copy failed: {e}"),
        }
        self.lock().invalidate(parent_of(path));
    }

    /// Moves the queued (sealed) version of `ino` from `old` to `new` as a
    /// fresh job (its data hard-linked under a new id), then cancels the
    /// job at `old`. The caller holds `order` and the state lock.
    ///
    /// Why not [`Uploader::rename`](crate::upload::Uploader::rename): the
    /// uploader commits a verified upload (drops its record and data)
    /// before `on_complete` tells the fs, so a rename in between sees the
    /// version still queued while the server already holds it complete
    /// under `old`; renaming the job then resurrects its record and the fs
    /// deletes the fresh upload at `old`. Here the commit shows in the
    /// spool itself: no record or no data under the old id means the
    /// server holds the version complete at `old` (`Ok(false)`: move the
    /// server copy instead); once linked, the data is ours whatever the
    /// old job does, and at worst it is uploaded once more.
    fn requeue_as(
        &self,
        st: &mut super::State,
        ino: u64,
        old: &str,
        new: &str,
    ) -> std::io::Result<bool> {
        let Some(l) = st.pending.get_mut(&ino) else {
            return Ok(false);
        };
        let rec = match self.journal.load(l.id)? {
            None => return Ok(false),
            Some(r) if r.state == JobState::Open => {
                return Err(std::io::Error::other("its record is still Open"))
            }
            Some(r) => r,
        };
        let id = self.journal.next_id()?;
        let data = self.journal.data_path(id);
        match std::fs::hard_link(self.journal.data_path(l.id), &data) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        }
        let submitted = self.uploader.submit(JobRecord {
            id,
            remote_path: new.to_string(),
            state: JobState::Queued,
            ..rec
        });
        if let Err(e) = submitted {
            let _ = std::fs::remove_file(&data);
            return Err(e);
        }
        // Drops the old record and its data link (ours stays), and stops
        // an upload in flight; a late `on_complete` of the old id finds
        // no version of ours.
        self.uploader.cancel(old);
        l.id = id;
        Ok(true)
    }

    /// Runs a namespace command again while the server answers "busy":
    /// an upload we just stopped holds the name on the server until the
    /// server has seen its transfer end, a little after our worker has let
    /// go. Bounded by [`IDLE_WAIT`].
    fn while_busy(
        &self,
        mut f: impl FnMut() -> Result<(), crate::transport::RemoteError>,
    ) -> Result<(), crate::transport::RemoteError> {
        let deadline = Instant::now() + IDLE_WAIT;
        loop {
            match f() {
                Err(e) if e.is_busy() && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                r => return r,
            }
        }
    }

    /// Completes every lazily filled version at or below `path` (the
    /// server copy it reads from is about to move or go). With
    /// `open_only`, only versions a writer still has open.
    fn complete_fills_under(&self, path: &str, open_only: bool) -> FsResult<()> {
        let inos: Vec<u64> = {
            let st = self.lock();
            let prefix = format!("{path}/");
            st.pending
                .iter()
                .filter(|(_, l)| l.fill.as_ref().is_some_and(|f| !f.is_done()))
                .filter(|(_, l)| !open_only || l.writers > 0)
                .filter(|(i, _)| {
                    st.inodes
                        .path(**i)
                        .is_some_and(|p| p == path || p.starts_with(&prefix))
                })
                .map(|(i, _)| *i)
                .collect()
        };
        for ino in inos {
            self.complete_fill(ino, false)?;
        }
        Ok(())
    }

    pub(super) fn path_of(&self, ino: u64) -> FsResult<String> {
        self.lock()
            .inodes
            .path(ino)
            .map(str::to_string)
            .ok_or(errno(libc::ENOENT))
    }

    fn child_path(&self, parent: u64, name: &std::ffi::OsStr) -> FsResult<String> {
        let name = check_name(name)?;
        Ok(join(&self.path_of(parent)?, name))
    }

    /// The path of a name about to be made (create, mkdir, rename target):
    /// ENAMETOOLONG when the server could not be sent it.
    pub(super) fn new_child_path(&self, parent: u64, name: &std::ffi::OsStr) -> FsResult<String> {
        let path = self.child_path(parent, name)?;
        names::check_remote_len(&self.conns.endpoint().root, &path)?;
        Ok(path)
    }

    /// What is at `path` now, from a fresh listing of its parent.
    fn found(&self, path: &str, want_empty: bool) -> FsResult<Found> {
        self.lock().invalidate(parent_of(path));
        Ok(match self.remote_entry(path)? {
            None => Found::Missing,
            Some(e) if !e.is_dir => Found::File,
            Some(_) => {
                let empty = want_empty && {
                    self.lock().invalidate(path);
                    self.list_dir(path)?.is_empty()
                };
                Found::Dir { empty }
            }
        })
    }

    /// Whether directory `dir` exists on the server (the root always does).
    fn dir_exists(&self, dir: &str) -> bool {
        dir.is_empty() || matches!(self.found(dir, false), Ok(Found::Dir { .. }))
    }

    /// `e` from `op` on `path`, with a vague refusal replaced by what
    /// the namespace shows it meant (see [`names`]). `dest` is the
    /// destination of a rename.
    fn refined(&self, op: Op, e: FsError, path: &str, dest: Option<&str>) -> FsError {
        if !names::needs_refining(&e) {
            return e;
        }
        let target = match self.found(path, op == Op::Rmdir) {
            Ok(t) => t,
            Err(_) => return e,
        };
        let parent = self.dir_exists(parent_of(dest.unwrap_or(path)));
        let n = names::refine(op, target, parent);
        log::debug!("{op:?} {path}: {e}: taken as errno {n}");
        errno(n)
    }

    /// The server's listing of `dir`, from the cache when fresh.
    pub(super) fn list_dir(&self, dir: &str) -> FsResult<Arc<Vec<RemoteEntry>>> {
        if let Some((at, list)) = self.lock().dirs.get(dir) {
            if at.elapsed() < ATTR_TTL {
                return Ok(list.clone());
            }
        }
        // An upload that lands while we list drops its local version and
        // invalidates: a listing taken across that may miss the file, so
        // it is taken again (a few times at most) rather than trusted.
        let mut tries = 0;
        loop {
            let gen = self.lock().dirs_gen;
            let list = Arc::new(self.conns.ns(|s| s.list(dir))?);
            let mut st = self.lock();
            tries += 1;
            if st.dirs_gen != gen {
                if tries < 4 {
                    continue;
                }
                return Ok(list);
            }
            if st.dirs.len() >= DIR_CACHE_MAX {
                st.dirs.clear();
            }
            st.dirs
                .insert(dir.to_string(), (Instant::now(), list.clone()));
            return Ok(list);
        }
    }

    /// The server's entry for `path`, `None` when absent.
    pub(super) fn remote_entry(&self, path: &str) -> FsResult<Option<RemoteEntry>> {
        let list = self.list_dir(parent_of(path))?;
        let name = name_of(path);
        Ok(list.iter().find(|e| e.name == name).cloned())
    }

    /// Attributes of `path` (local version first), counting a kernel lookup
    /// when `lookup` is set.
    fn attr_of_path(&self, path: &str, lookup: bool) -> FsResult<Attr> {
        {
            let mut st = self.lock();
            if let Some(ino) = st.inodes.get(path) {
                if let Some(l) = st.pending.get(&ino) {
                    let a = self.local_attr(ino, l);
                    if lookup {
                        st.inodes.lookup(path);
                    }
                    return Ok(a);
                }
            }
        }
        let entry = self.remote_entry(path)?.ok_or(errno(libc::ENOENT))?;
        let mut st = self.lock();
        // A local version may have appeared while we listed.
        let ino = if lookup {
            st.inodes.lookup(path)
        } else {
            st.inodes.ino_for(path)
        };
        if let Some(l) = st.pending.get(&ino) {
            return Ok(self.local_attr(ino, l));
        }
        Ok(self.entry_attr(ino, &entry))
    }

    pub fn lookup(&self, parent: u64, name: &std::ffi::OsStr) -> FsResult<Attr> {
        let path = self.child_path(parent, name)?;
        self.attr_of_path(&path, true)
    }

    pub fn forget(&self, ino: u64, nlookup: u64) {
        let mut st = self.lock();
        let keep = st.pending.contains_key(&ino);
        st.inodes.forget(ino, nlookup, keep);
    }

    pub fn getattr(&self, ino: u64) -> FsResult<Attr> {
        if ino == ROOT {
            return Ok(self.dir_attr(ROOT, SystemTime::UNIX_EPOCH));
        }
        let path = {
            let st = self.lock();
            if let Some(l) = st.pending.get(&ino) {
                return Ok(self.local_attr(ino, l));
            }
            st.inodes
                .path(ino)
                .map(str::to_string)
                .ok_or(errno(libc::ENOENT))?
        };
        self.attr_of_path(&path, false)
    }

    /// Snapshots a directory (server listing + local files) for readdir.
    pub fn opendir(&self, ino: u64) -> FsResult<u64> {
        let path = self.path_of(ino)?;
        let list = self.list_dir(&path)?;
        let mut st = self.lock();
        let parent = if ino == ROOT {
            ROOT
        } else {
            st.inodes.ino_for(parent_of(&path))
        };
        let mut entries = vec![
            DirEntry {
                ino,
                next: 1,
                kind: Kind::Dir,
                name: ".".into(),
            },
            DirEntry {
                ino: parent,
                next: 2,
                kind: Kind::Dir,
                name: "..".into(),
            },
        ];
        let mut names = std::collections::HashSet::new();
        for e in list.iter() {
            if e.name.contains(['/', '\r', '\n', '\0']) || e.name == "." || e.name == ".." {
                continue;
            }
            let ino = st.inodes.ino_for(&join(&path, &e.name));
            names.insert(e.name.clone());
            let kind = if e.is_dir { Kind::Dir } else { Kind::File };
            entries.push(DirEntry {
                ino,
                next: 0,
                kind,
                name: e.name.clone(),
            });
        }
        let locals: Vec<(u64, String)> = st
            .pending
            .iter()
            .filter(|(_, l)| !l.unlinked)
            .filter_map(|(i, _)| st.inodes.path(*i).map(|p| (*i, p.to_string())))
            .filter(|(_, p)| parent_of(p) == path && !p.is_empty())
            .collect();
        for (ino, p) in locals {
            let name = name_of(&p).to_string();
            if names.insert(name.clone()) {
                entries.push(DirEntry {
                    ino,
                    next: 0,
                    kind: Kind::File,
                    name,
                });
            }
        }
        for (i, e) in entries.iter_mut().enumerate() {
            e.next = i as u64 + 1;
        }
        Ok(st.add_handle(Handle::Dir { entries }))
    }

    pub fn readdir(&self, fh: u64, offset: u64) -> FsResult<Vec<DirEntry>> {
        let h = self
            .lock()
            .handles
            .get(&fh)
            .cloned()
            .ok_or(errno(libc::EBADF))?;
        match &*h {
            Handle::Dir { entries } => Ok(entries.iter().skip(offset as usize).cloned().collect()),
            _ => Err(errno(libc::ENOTDIR)),
        }
    }

    pub fn releasedir(&self, fh: u64) {
        self.lock().handles.remove(&fh);
    }

    pub fn mkdir(&self, parent: u64, name: &std::ffi::OsStr) -> FsResult<Attr> {
        let path = self.new_child_path(parent, name)?;
        let r = self.conns.ns(|s| s.mkdir(&path));
        self.lock().invalidate(parent_of(&path));
        r.map_err(|e| self.refined(Op::Mkdir, e.into(), &path, None))?;
        let mut st = self.lock();
        let ino = st.inodes.lookup(&path);
        Ok(self.dir_attr(ino, SystemTime::now()))
    }

    pub fn rmdir(&self, parent: u64, name: &std::ffi::OsStr) -> FsResult<()> {
        let path = self.child_path(parent, name)?;
        {
            let st = self.lock();
            let prefix = format!("{path}/");
            let busy = st
                .pending
                .keys()
                .filter_map(|i| st.inodes.path(*i))
                .any(|p| p.starts_with(&prefix));
            if busy {
                return Err(errno(libc::ENOTEMPTY));
            }
        }
        let r = self.conns.ns(|s| s.rmdir(&path));
        {
            let mut st = self.lock();
            st.invalidate(parent_of(&path));
            st.invalidate(&path);
        }
        r.map_err(|e| self.refined(Op::Rmdir, e.into(), &path, None))?;
        self.lock().inodes.detach(&path);
        Ok(())
    }

    pub fn unlink(&self, parent: u64, name: &std::ffi::OsStr) -> FsResult<()> {
        let path = self.child_path(parent, name)?;
        // A writer that keeps it open reads it on: fetch what is left first.
        self.complete_fills_under(&path, true)?;
        // Drop the local version first: its job is cancelled and its data
        // goes (at once, or at the last close while a writer has it open).
        let local = {
            let mut st = self.lock();
            match st.inodes.get(&path) {
                Some(ino) if st.pending.contains_key(&ino) => {
                    let gone = match st.pending.get_mut(&ino) {
                        Some(l) if l.writers > 0 => {
                            l.unlinked = true;
                            None
                        }
                        _ => st.pending.remove(&ino),
                    };
                    st.inodes.detach(&path);
                    st.invalidate(parent_of(&path));
                    Some(gone)
                }
                _ => None,
            }
        };
        if let Some(gone) = local {
            self.uploader.cancel(&path);
            if let Some(l) = gone {
                if let Err(e) = self.journal.remove(l.id) {
                    log::debug!("journal remove {}: {e}", l.id);
                }
            }
            // An older version, or the partial of the stopped upload, may
            // be on the server too.
            self.drop_server_copy(&path);
            return Ok(());
        }
        let r = self.conns.ns(|s| s.delete(&path));
        self.lock().invalidate(parent_of(&path));
        r.map_err(|e| self.refined(Op::Unlink, e.into(), &path, None))?;
        self.lock().inodes.detach(&path);
        Ok(())
    }

    pub fn rename(
        &self,
        parent: u64,
        name: &std::ffi::OsStr,
        newparent: u64,
        newname: &std::ffi::OsStr,
        flags: u32,
    ) -> FsResult<()> {
        let noreplace = flags == libc::RENAME_NOREPLACE;
        if flags != 0 && !noreplace {
            return Err(errno(libc::EINVAL));
        }
        let from = self.child_path(parent, name)?;
        let to = self.new_child_path(newparent, newname)?;
        if noreplace && self.attr_of_path(&to, false).is_ok() {
            return Err(errno(libc::EEXIST));
        }
        if from == to {
            // Still ENOENT for a name that does not exist.
            return self.attr_of_path(&from, false).map(|_| ());
        }
        if to.starts_with(&format!("{from}/")) {
            return Err(errno(libc::EINVAL));
        }
        // Versions still reading their old content from the server get it
        // all before the server copies move or go.
        self.complete_fills_under(&from, false)?;
        self.complete_fills_under(&to, true)?;
        // Local versions at or below `from`, and a local version at `to`
        // that the rename replaces.
        let (moved, replaced) = {
            let st = self.lock();
            let prefix = format!("{from}/");
            let moved: Vec<(u64, String)> = st
                .pending
                .iter()
                .filter(|(_, l)| !l.unlinked)
                .filter_map(|(i, _)| st.inodes.path(*i).map(|p| (*i, p)))
                .filter(|(_, p)| *p == from || p.starts_with(&prefix))
                .map(|(i, p)| (i, p.to_string()))
                .collect();
            let replaced = st
                .inodes
                .get(&to)
                .filter(|i| st.pending.contains_key(i))
                .is_some();
            (moved, replaced)
        };
        // A file with a local version is requeued under the new name (its
        // upload in flight, if any, stops) and whatever the server has at
        // the old name is deleted afterwards; renaming the server copy
        // instead would race with that upload. Anything else (a directory,
        // a server-only file) is renamed on the server, after a replaced
        // local version's upload has let go of `to`.
        let is_local_file = moved.len() == 1 && moved[0].1 == from;
        let on_server = if is_local_file {
            false
        } else {
            let on_server = self.remote_entry(&from)?.is_some();
            if moved.is_empty() && !on_server {
                return Err(errno(libc::ENOENT));
            }
            on_server
        };
        if replaced {
            self.uploader.cancel(&to);
            let mut st = self.lock();
            if let Some(ino) = st.inodes.get(&to) {
                if let Some(l) = st.pending.remove(&ino) {
                    if l.writers > 0 {
                        // Still open elsewhere: keep it writable, forget it at close.
                        st.pending.insert(
                            ino,
                            super::Local {
                                unlinked: true,
                                ..l
                            },
                        );
                    } else {
                        drop(st);
                        let _ = self.journal.remove(l.id);
                    }
                }
            }
        }
        if on_server {
            // The stopped upload of the file this replaces must let go of
            // `to` before the server copy moves there: an upload from zero
            // it already started truncates `to` when the server opens it.
            if replaced && !self.uploader.wait_idle(&to, IDLE_WAIT) {
                log::warn!("{to}: the stopped upload did not let go in time");
            }
            self.while_busy(|| self.conns.ns(|s| s.rename(&from, &to)))
                .map_err(|e| self.refined(Op::Rename, e.into(), &from, Some(&to)))?;
        }
        // The local version's upload may finish while we get here: then the
        // server holds it complete under `from` and it must move there too.
        let mut uploaded_meanwhile = false;
        {
            // Under `order`, no version is sealed (and submitted under its
            // old name) while the names change.
            let _order = lock_order(&self.order);
            let mut st = self.lock();
            if let (true, Some((ino, _))) = (is_local_file, moved.first()) {
                uploaded_meanwhile = st
                    .pending
                    .get(ino)
                    .is_none_or(|l| l.status == Status::Uploaded);
            }
            st.inodes.rename(&from, &to);
            for (ino, old) in &moved {
                let new = format!("{to}{}", &old[from.len()..]);
                let status = st.pending.get(ino).map(|l| l.status);
                // A file still open for writing: its `Open` record names the
                // new path, so a crash reports the name the file has now.
                if let Some(l) = st.pending.get(ino).filter(|l| l.status == Status::Writing) {
                    let rec = JobRecord {
                        wanted: l.wanted,
                        ..JobRecord::new(l.id, new.clone(), l.spool.size(), 0, JobState::Open)
                    };
                    if let Err(e) = self.journal.record(&rec) {
                        log::warn!("journal: cannot record the rename of job {}: {e}", l.id);
                    }
                }
                if is_local_file && !uploaded_meanwhile && status == Some(Status::Queued) {
                    match self.requeue_as(&mut st, *ino, old, &new) {
                        Ok(true) => continue,
                        // The uploader committed it under the old name.
                        Ok(false) => {
                            uploaded_meanwhile = true;
                            continue;
                        }
                        Err(e) => {
                            log::warn!("{old}: cannot requeue as {new} ({e}); renaming the job");
                        }
                    }
                }
                if is_local_file && (uploaded_meanwhile || status == Some(Status::Writing)) {
                    // Nothing of ours is queued under `old` any more (or
                    // only an older version, which the seal replaces):
                    // renaming a job that just committed would write its
                    // record back.
                    if status == Some(Status::Writing) {
                        self.uploader.rename(old, &new);
                    }
                    continue;
                }
                self.uploader.rename(old, &new);
            }
            st.invalidate(parent_of(&from));
            st.invalidate(parent_of(&to));
            st.invalidate(&from);
        }
        if uploaded_meanwhile {
            // A stopped upload of the file this replaces must let go of
            // `to` first: its upload from zero truncates `to` when the
            // server opens it.
            if replaced && !self.uploader.wait_idle(&to, IDLE_WAIT) {
                log::warn!("{to}: the stopped upload did not let go in time");
            }
            let r = self.while_busy(|| self.conns.ns(|s| s.rename(&from, &to)));
            self.lock().invalidate(parent_of(&to));
            r.map_err(|e| self.refined(Op::Rename, e.into(), &from, Some(&to)))?;
        } else if is_local_file {
            self.drop_server_copy(&from);
        }
        Ok(())
    }
}
