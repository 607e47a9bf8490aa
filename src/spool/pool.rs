//! A bounded pool of empty files in `spool/free/`, so the spool's churn
//! (a data file and a record temp file per small file, both deleted after
//! the upload) recycles inodes instead of allocating and freeing them.
//!
//! Why: inode allocation is most of the daemon's CPU on a `cp -r` of small
//! files. On ext4 without a journal (common on flash) the allocator skips
//! every inode freed in the last ~30 s, scanning past each one, so with
//! thousands of files deleted per minute each create walks over thousands
//! of them. Renaming a pooled file into place allocates nothing.
//!
//! - [`FilePool::take`] renames `free/N` to the destination (falling back to
//!   creating it when the pool is empty) and returns it open, empty.
//! - [`FilePool::recycle`] renames a file into `free/N` (atomic: it leaves
//!   its name exactly as an unlink would), then empties it; a file that is
//!   big (its blocks must be freed anyway), has other hard links, or finds
//!   the pool full is unlinked instead. [`FilePool::retire`] only renames
//!   (an upload's completion, under the queue's lock, while the fs still
//!   has the data file open); [`FilePool::settle`] empties it afterwards.
//! - A recycled file may still be open elsewhere (a reader of a pending
//!   file, the uploader's callback not yet run): it must keep its content
//!   for them and never receive someone else's. So a file is only emptied,
//!   and only handed out, under a write lease (`F_SETLEASE F_WRLCK`), which
//!   the kernel grants only when no other descriptor has the file open.
//!   One still open is left "dirty" (emptied later by [`FilePool::settle`])
//!   or, when taken, unlinked (its holders keep the inode). Where leases
//!   are not supported the pool turns itself off (plain create/unlink).
//! - Crash safety: no record ever names a file in `free/`, and start-up
//!   ([`FilePool::open`]) unlinks any pool file that is not empty (a crash
//!   between the rename and the truncate) or has another link, keeping
//!   only empty single-link files, and leaves alone one that shares an
//!   inode with a data or record file ([`FilePool::open_with`]). Replay and `keyfs status` read only
//!   `journal/` and `data/`, so pool files are never taken for data.
//!
//! The cap ([`cap_for`]): the pool should hold what a burst has in flight
//! (two files per spooled file, and a `cp -r` of small files easily runs a
//! backlog of hundreds of files ahead of the uploads), since every file the
//! pool turns away is an unlink, and every unlink makes the next creates
//! slower for ~30 s. What limits it: each pooled file holds an inode, and
//! small flash filesystems have few (a 512 MiB ext4 has ~32 K), so the
//! pool takes at most 1/64 of the free inodes, between 64 and
//! [`POOL_CAP`] files (4096: a few ms of start-up scan, ~100 KiB of
//! directory). Files not yet emptied (still open elsewhere) hold up to
//! [`MAX_POOLED`] bytes each; at most [`MAX_DIRTY`] of them are kept.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirEntryExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Most files kept in the pool (see [`cap_for`]).
pub const POOL_CAP: usize = 4096;
/// Fewest files the pool may keep, however few inodes are free.
const MIN_CAP: usize = 64;
/// Most recycled files kept while still open elsewhere (not emptied).
pub const MAX_DIRTY: usize = 32;
/// Bigger files are unlinked, not pooled: their blocks must be freed anyway.
pub const MAX_POOLED: u64 = 1 << 20;

#[derive(Default)]
struct Lists {
    /// Names (numbers) of empty files.
    clean: Vec<u64>,
    /// Names of files recycled while still open elsewhere: not emptied yet.
    dirty: Vec<u64>,
}

pub struct FilePool {
    dir: PathBuf,
    lists: Mutex<Lists>,
    /// Files in the pool plus slots reserved by recycles in progress.
    count: AtomicUsize,
    next_name: AtomicU64,
    enabled: AtomicBool,
    cap: usize,
}

/// Whether a pool file can be handed out.
enum Claim {
    /// Empty, open, ours alone.
    Ready(File),
    /// Still open elsewhere: left as it is.
    Busy,
    /// Gone, linked elsewhere, or leases do not work: to be unlinked.
    Unusable,
}

/// The result of trying to take a write lease on a file.
enum Lease {
    Granted,
    /// Someone else has the file open.
    Busy,
    /// Leases do not work here (filesystem, permissions, sysctl).
    Unsupported,
}

/// A lease holder gets SIGIO when another process opens the file, and
/// SIGIO's default action ends the process: any reader of `spool/free/`
/// (a backup, an indexer) would kill the daemon. Ignored once per
/// process; the other opener then simply waits the few microseconds
/// until the lease is released.
fn ignore_sigio() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: installs SIG_IGN for SIGIO; no handler code runs.
        unsafe {
            libc::signal(libc::SIGIO, libc::SIG_IGN);
        }
    });
}

fn lease(f: &File, kind: libc::c_int) -> Lease {
    ignore_sigio();
    // SAFETY: a valid open descriptor; F_SETLEASE takes an int argument.
    let rc = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETLEASE, kind) };
    if rc == 0 {
        return Lease::Granted;
    }
    match io::Error::last_os_error().raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EBUSY) => Lease::Busy,
        _ => Lease::Unsupported,
    }
}

/// The pool's cap for a spool on the filesystem holding `dir`: 1/64 of
/// its free inodes, within `[64, POOL_CAP]`; `POOL_CAP` when the
/// filesystem has no inode limit (or cannot say).
pub fn cap_for(dir: &Path) -> usize {
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
        return POOL_CAP;
    };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a valid buffer.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return POOL_CAP;
    }
    cap_from(st.f_favail, st.f_files)
}

/// [`cap_for`] given the free and total inode counts (`statvfs`).
fn cap_from(free_inodes: u64, inodes: u64) -> usize {
    if inodes == 0 {
        return POOL_CAP;
    }
    let share = usize::try_from(free_inodes / 64).unwrap_or(POOL_CAP);
    share.clamp(MIN_CAP, POOL_CAP)
}

fn remove_quietly(p: &Path) {
    if let Err(e) = fs::remove_file(p) {
        if e.kind() != io::ErrorKind::NotFound {
            log::debug!("spool pool: cannot remove {}: {e}", p.display());
        }
    }
}

impl FilePool {
    /// Opens (creating) the pool in `dir` for the daemon owning the spool,
    /// capped by [`cap_for`]:
    /// keeps the empty single-link files it finds (up to the cap) and
    /// unlinks the rest (see the module docs).
    pub fn open(dir: &Path) -> io::Result<FilePool> {
        fs::create_dir_all(dir)?;
        Self::open_with_cap(dir, cap_for(dir))
    }

    pub fn open_with_cap(dir: &Path, cap: usize) -> io::Result<FilePool> {
        Self::open_with(dir, cap, &HashSet::new())
    }

    /// Like [`FilePool::open`], leaving alone the pool entries whose inode
    /// is in `in_use` (inode numbers of the spool's data and record files).
    /// On a filesystem without a journal a power cut can keep both names
    /// of a rename out of the pool (the old directory block was not
    /// written back): the pool name then shares the inode of live data,
    /// with a link count of one until fsck fixes it, so neither a truncate
    /// nor an unlink of it is safe. It is only dropped from the pool.
    pub fn open_with(dir: &Path, cap: usize, in_use: &HashSet<u64>) -> io::Result<FilePool> {
        fs::create_dir_all(dir)?;
        let mut clean = Vec::new();
        let mut high = 0u64;
        for ent in fs::read_dir(dir)? {
            let ent = ent?;
            let path = ent.path();
            let Some(n) = ent.file_name().to_str().and_then(|s| s.parse::<u64>().ok()) else {
                log::warn!("spool pool: removing foreign file {}", path.display());
                remove_quietly(&path);
                continue;
            };
            high = high.max(n + 1);
            if in_use.contains(&ent.ino()) {
                log::warn!(
                    "spool pool: {} is also a data or record file (a power cut \
                     without a filesystem journal?); left alone, run fsck",
                    path.display()
                );
                continue;
            }
            let keep = match fs::symlink_metadata(&path) {
                Ok(m) => m.is_file() && m.len() == 0 && m.nlink() == 1,
                Err(_) => false,
            };
            if keep && clean.len() < cap {
                clean.push(n);
            } else {
                remove_quietly(&path);
            }
        }
        Ok(FilePool {
            dir: dir.to_path_buf(),
            count: AtomicUsize::new(clean.len()),
            lists: Mutex::new(Lists {
                clean,
                dirty: Vec::new(),
            }),
            next_name: AtomicU64::new(high),
            enabled: AtomicBool::new(true),
            cap,
        })
    }

    /// A pool that never holds anything: `take` creates, `recycle` unlinks.
    /// For readers of a spool (`keyfs status`), which must not touch it.
    pub fn disabled(dir: &Path) -> FilePool {
        FilePool {
            dir: dir.to_path_buf(),
            lists: Mutex::new(Lists::default()),
            count: AtomicUsize::new(0),
            next_name: AtomicU64::new(0),
            enabled: AtomicBool::new(false),
            cap: 0,
        }
    }

    fn lists(&self) -> MutexGuard<'_, Lists> {
        self.lists.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn name(&self, n: u64) -> PathBuf {
        self.dir.join(n.to_string())
    }

    /// How many files the pool holds (clean and dirty).
    pub fn len(&self) -> usize {
        let l = self.lists();
        l.clean.len() + l.dirty.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn turn_off(&self, why: &str) {
        if self.enabled.swap(false, Ordering::SeqCst) {
            log::info!("spool pool: off ({why}); spool files are created and unlinked");
        }
    }

    /// An empty file at `dest`, open for reading and writing: a pooled one
    /// renamed there, or a new one when the pool has none. `dest` must be
    /// a fresh name (a pooled file replaces whatever is there).
    pub fn take(&self, dest: &Path) -> io::Result<File> {
        while self.enabled.load(Ordering::Relaxed) {
            let n = {
                let mut l = self.lists();
                // Only emptied files: a dirty one is likely still open
                // (`settle` empties it once it is not).
                match l.clean.pop() {
                    Some(n) => n,
                    None => break,
                }
            };
            self.count.fetch_sub(1, Ordering::SeqCst);
            let src = self.name(n);
            match self.claim(&src) {
                Claim::Ready(f) => match fs::rename(&src, dest) {
                    Ok(()) => return Ok(f),
                    Err(e) => {
                        remove_quietly(&src);
                        return Err(e);
                    }
                },
                // Still open elsewhere: its holders keep the inode.
                Claim::Busy | Claim::Unusable => remove_quietly(&src),
            }
        }
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dest)
    }

    /// Opens pool file `src` and empties it, if no one else has it open
    /// and it has no other link.
    fn claim(&self, src: &Path) -> Claim {
        let f = match OpenOptions::new().read(true).write(true).open(src) {
            Ok(f) => f,
            Err(e) => {
                log::debug!("spool pool: {}: {e}", src.display());
                return Claim::Unusable;
            }
        };
        match lease(&f, libc::F_WRLCK) {
            Lease::Granted => {}
            Lease::Busy => return Claim::Busy,
            Lease::Unsupported => {
                self.turn_off("write leases not supported");
                return Claim::Unusable;
            }
        }
        let emptied = f.metadata().and_then(|m| {
            if m.nlink() != 1 {
                return Ok(false);
            }
            if m.len() != 0 {
                f.set_len(0)?;
            }
            Ok(true)
        });
        lease(&f, libc::F_UNLCK);
        match emptied {
            Ok(true) => Claim::Ready(f),
            _ => Claim::Unusable,
        }
    }

    /// Takes the file at `path` out of its name: into the pool when there
    /// is room and it is small with a single link, else unlinked. Either
    /// way `path` no longer exists on return (NotFound if it did not).
    /// The file is emptied at once if no one else has it open.
    pub fn recycle(&self, path: &Path) -> io::Result<()> {
        self.put(path, true)
    }

    /// Like [`FilePool::recycle`] but only the rename: the file is emptied
    /// by the next [`FilePool::settle`]. For callers that know the file is
    /// still open elsewhere for a moment (and that are holding a lock).
    pub fn retire(&self, path: &Path) -> io::Result<()> {
        self.put(path, false)
    }

    fn put(&self, path: &Path, now: bool) -> io::Result<()> {
        let fits = self.enabled.load(Ordering::Relaxed)
            && match fs::symlink_metadata(path) {
                Ok(m) => m.is_file() && m.len() <= MAX_POOLED && m.nlink() == 1,
                Err(e) => return Err(e),
            };
        if !fits || self.count.fetch_add(1, Ordering::SeqCst) >= self.cap {
            if fits {
                self.count.fetch_sub(1, Ordering::SeqCst);
            }
            return fs::remove_file(path);
        }
        let n = self.next_name.fetch_add(1, Ordering::Relaxed);
        let dst = self.name(n);
        if let Err(e) = fs::rename(path, &dst) {
            self.count.fetch_sub(1, Ordering::SeqCst);
            return Err(e);
        }
        let claim = if now { self.claim(&dst) } else { Claim::Busy };
        match claim {
            Claim::Ready(_) => self.lists().clean.push(n),
            Claim::Busy => {
                let mut l = self.lists();
                if l.dirty.len() < MAX_DIRTY {
                    l.dirty.push(n);
                } else {
                    drop(l);
                    self.count.fetch_sub(1, Ordering::SeqCst);
                    remove_quietly(&dst);
                }
            }
            Claim::Unusable => {
                self.count.fetch_sub(1, Ordering::SeqCst);
                remove_quietly(&dst);
            }
        }
        Ok(())
    }

    /// Empties the pool files that were still open elsewhere when recycled
    /// (call once their holders are likely gone, e.g. after an upload's
    /// completion reached the fs); those still open stay as they are.
    pub fn settle(&self) {
        let dirty = std::mem::take(&mut self.lists().dirty);
        if dirty.is_empty() {
            return;
        }
        let mut still = Vec::new();
        let mut clean = Vec::new();
        for n in dirty {
            let p = self.name(n);
            match self.claim(&p) {
                Claim::Ready(_) => clean.push(n),
                Claim::Busy => still.push(n),
                Claim::Unusable => {
                    self.count.fetch_sub(1, Ordering::SeqCst);
                    remove_quietly(&p);
                }
            }
        }
        let mut l = self.lists();
        l.clean.extend(clean);
        l.dirty.extend(still);
    }

    /// How many pool files are waiting to be emptied (for tests).
    pub fn dirty_len(&self) -> usize {
        self.lists().dirty.len()
    }
}

#[cfg(test)]
mod tests;
