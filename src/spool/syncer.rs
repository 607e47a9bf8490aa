//! Group commit of closed files. close() must not wait for the disk: it
//! writes the job's `Queued` record with a plain rename
//! ([`Journal::record_volatile`]) and hands the id to this thread, which
//! makes jobs durable in batches: every job waiting when it wakes up is one
//! batch. For each job still present: fdatasync of its data file, then fsync
//! of its record (data before record, so a durable record implies durable
//! data); then ONE fsync of the data directory and one of the journal
//! directory for the whole batch. A job already uploaded and removed is
//! skipped: the verified server copy made it safe.
//!
//! The window in which a power cut can lose a closed file is the time a job
//! waits for its batch ([`LINGER`], 20 ms) plus the batch's own syncs
//! (milliseconds on an idle disk). A crash of the daemon alone loses nothing: the renamed record is
//! in the page cache. `shutdown` commits what is pending before returning.
//!
//! The thread also writes the `Open` records the fs defers at create
//! ([`Journal::record_open_deferred`]): only files still open when a batch
//! runs get one; a small file closed at once never needs it.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::journal::Journal;

/// What the syncer has done so far (for tests and logs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Batches committed.
    pub batches: u64,
    /// Jobs made durable (data, then record).
    pub synced: u64,
    /// Jobs found gone (uploaded or dropped) when their batch ran.
    pub skipped: u64,
    /// Directory syncs (one per batch that synced a job: the data and the
    /// journal directory).
    pub dir_syncs: u64,
    /// Jobs or directory syncs that failed (logged).
    pub errors: u64,
}

impl SyncStats {
    fn add(&mut self, o: &SyncStats) {
        self.batches += o.batches;
        self.synced += o.synced;
        self.skipped += o.skipped;
        self.dir_syncs += o.dir_syncs;
        self.errors += o.errors;
    }
}

/// At most this many jobs' files are open at once while a batch commits.
const CHUNK: usize = 256;

/// How long the thread waits, once a job arrives, for more to join its
/// batch (unless a `flush` asks, or [`BATCH_MAX`] are waiting). A `cp -r`
/// of small files closes one every few hundred microseconds: without it a
/// batch holds one or two files and every file still costs a filesystem
/// journal commit (each of which also stalls the FUSE threads' creates);
/// with it a batch holds dozens, and a small file is often uploaded and
/// verified before its batch runs, so it needs no sync at all. 20 ms is
/// nothing next to the kernel's own writeback delays (ext4 commits every
/// 5 s, dirty pages wait 30 s), which is what a local `cp` relies on.
pub const LINGER: Duration = Duration::from_millis(20);

/// A batch this big commits without lingering.
const BATCH_MAX: usize = 4 * CHUNK;

/// Commits one batch of jobs: each one's data, then its record, then the
/// two directories once. Returns what it did.
///
/// Writeback of every file of a chunk is started first (`sync_file_range`),
/// so the block allocations of the whole chunk land in one filesystem
/// journal transaction: the first fdatasync commits it and the others find
/// little left to do, instead of one journal commit per file (which also
/// stalls the creates of the FUSE threads on the same filesystem).
pub fn commit(journal: &Journal, ids: &[u64]) -> SyncStats {
    let mut st = SyncStats {
        batches: 1,
        ..SyncStats::default()
    };
    for chunk in ids.chunks(CHUNK) {
        let mut open = Vec::with_capacity(chunk.len());
        for &id in chunk {
            match journal.open_for_sync(id) {
                Ok(Some(files)) => {
                    start_writeback(&files.data);
                    start_writeback(&files.record);
                    open.push((id, files));
                }
                Ok(None) => st.skipped += 1,
                Err(e) => {
                    log::error!("spool: cannot open job {id} to make it durable: {e}");
                    st.errors += 1;
                }
            }
        }
        // Data before records: a record made durable here has durable data.
        let mut data_ok = Vec::with_capacity(open.len());
        for (id, files) in open {
            match files.data.sync_data() {
                Ok(()) => data_ok.push((id, files.record)),
                Err(e) => {
                    log::error!("spool: cannot sync the data of job {id}: {e}");
                    st.errors += 1;
                }
            }
        }
        for (id, record) in data_ok {
            match record.sync_all() {
                Ok(()) => st.synced += 1,
                Err(e) => {
                    log::error!("spool: cannot sync the record of job {id}: {e}");
                    st.errors += 1;
                }
            }
        }
    }
    if st.synced > 0 {
        st.dir_syncs = 1;
        if let Err(e) = journal.sync_dirs() {
            log::error!("spool: cannot sync the spool directories: {e}");
            st.errors += 1;
        }
    }
    st
}

/// Starts writeback of `f` without waiting (a hint: errors show up at the
/// fdatasync that follows).
fn start_writeback(f: &std::fs::File) {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid open descriptor; sync_file_range only reads its args.
    unsafe {
        libc::sync_file_range(f.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[derive(Default)]
struct Queue {
    ids: Vec<u64>,
    /// Ids pushed so far / ids whose batch has been committed (in push
    /// order): `flush` waits for `done` to reach `pushed`.
    pushed: u64,
    done: u64,
    stop: bool,
    /// `Open` records were noted (`poke`): write them with the next batch.
    opens: bool,
    /// A `flush` is waiting: commit now, without lingering.
    urgent: bool,
    stats: SyncStats,
}

struct Inner {
    journal: Arc<Journal>,
    linger: Duration,
    queue: Mutex<Queue>,
    cond: Condvar,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The background group-commit thread; see the module docs.
pub struct Syncer {
    inner: Arc<Inner>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Syncer {
    /// Starts the thread with the default [`LINGER`].
    pub fn start(journal: Arc<Journal>) -> std::io::Result<Syncer> {
        Self::start_lingering(journal, LINGER)
    }

    /// `start`, waiting `linger` after the first job of a batch arrives.
    pub fn start_lingering(journal: Arc<Journal>, linger: Duration) -> std::io::Result<Syncer> {
        let inner = Arc::new(Inner {
            journal,
            linger,
            queue: Mutex::new(Queue::default()),
            cond: Condvar::new(),
        });
        let i = inner.clone();
        let t = std::thread::Builder::new()
            .name("keyfs-syncer".into())
            .spawn(move || run(&i))?;
        Ok(Syncer {
            inner,
            thread: Mutex::new(Some(t)),
        })
    }

    /// Queues job `id` (its data file written, its record renamed in place)
    /// for the next batch. After `shutdown` it is committed at once, here.
    pub fn push(&self, id: u64) {
        let mut q = self.inner.lock();
        if q.stop {
            let st = commit(&self.inner.journal, &[id]);
            q.stats.add(&st);
            return;
        }
        q.ids.push(id);
        q.pushed += 1;
        drop(q);
        self.inner.cond.notify_all();
    }

    /// An `Open` record was noted in the journal
    /// ([`Journal::record_open_deferred`]): write it with the next batch
    /// (at once after `shutdown`).
    pub fn poke(&self) {
        let mut q = self.inner.lock();
        if q.stop {
            drop(q);
            self.inner.journal.write_deferred_open();
            return;
        }
        q.opens = true;
        drop(q);
        self.inner.cond.notify_all();
    }

    /// Waits until every job pushed before this call is committed (or
    /// found gone). False on timeout.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut q = self.inner.lock();
        let target = q.pushed;
        if q.done < target {
            q.urgent = true;
            self.inner.cond.notify_all();
        }
        while q.done < target {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            q = self
                .inner
                .cond
                .wait_timeout(q, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        true
    }

    pub fn stats(&self) -> SyncStats {
        self.inner.lock().stats
    }

    /// Commits what is pending, then stops the thread. Idempotent.
    pub fn shutdown(&self) {
        self.inner.lock().stop = true;
        self.inner.cond.notify_all();
        let t = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = t {
            if t.join().is_err() {
                log::error!("spool: the syncer thread panicked");
            }
        }
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn run(inner: &Inner) {
    loop {
        let (mut ids, upto) = {
            let mut q = inner.lock();
            while q.ids.is_empty() && !q.opens && !q.stop {
                q = inner.cond.wait(q).unwrap_or_else(|p| p.into_inner());
            }
            if q.ids.is_empty() && !q.opens {
                // Stopped, nothing pending; files still open keep a record.
                drop(q);
                inner.journal.write_deferred_open();
                return;
            }
            // Linger a moment so that files closed in a burst share a batch.
            let until = Instant::now() + inner.linger;
            while !q.stop && !q.urgent && q.ids.len() < BATCH_MAX {
                let now = Instant::now();
                if now >= until {
                    break;
                }
                q = inner
                    .cond
                    .wait_timeout(q, until - now)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|p| p.into_inner().0);
            }
            q.urgent = false;
            q.opens = false;
            (std::mem::take(&mut q.ids), q.pushed)
        };
        // Files still open after the linger get their `Open` record.
        inner.journal.write_deferred_open();
        ids.sort_unstable();
        ids.dedup();
        let st = if ids.is_empty() {
            SyncStats::default()
        } else {
            commit(&inner.journal, &ids)
        };
        log::debug!(
            "spool: committed a batch of {} jobs ({} already gone)",
            st.synced,
            st.skipped
        );
        let mut q = inner.lock();
        q.stats.add(&st);
        q.done = upto;
        drop(q);
        inner.cond.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::journal::{JobRecord, JobState};
    use std::fs;

    fn queued(j: &Journal, id: u64) {
        fs::write(j.data_path(id), format!("data {id}")).unwrap();
        j.record_volatile(&JobRecord {
            id,
            remote_path: format!("f{id}"),
            size: 6,
            crc: 0,
            state: JobState::Queued,
            wanted: Default::default(),
        })
        .unwrap();
    }

    #[test]
    fn one_batch_many_jobs_one_directory_sync() {
        let d = tempfile::tempdir().unwrap();
        let j = Journal::open(d.path()).unwrap();
        let ids: Vec<u64> = (1..=50).collect();
        for &id in &ids {
            queued(&j, id);
        }
        let st = commit(&j, &ids);
        assert_eq!(
            st,
            SyncStats {
                batches: 1,
                synced: 50,
                skipped: 0,
                dir_syncs: 1,
                errors: 0
            }
        );
        // The records are intact and still there: syncing changes nothing.
        assert_eq!(j.load_all().unwrap().len(), 50);
    }

    #[test]
    fn uploaded_jobs_are_skipped() {
        let d = tempfile::tempdir().unwrap();
        let j = Journal::open(d.path()).unwrap();
        for id in 1..=4 {
            queued(&j, id);
        }
        j.remove_uploaded(2).unwrap();
        // Half-removed (data gone, record not yet): skipped too.
        fs::remove_file(j.data_path(3)).unwrap();
        let st = commit(&j, &[1, 2, 3, 4]);
        assert_eq!((st.synced, st.skipped, st.errors), (2, 2, 0));
        assert_eq!(st.dir_syncs, 1);
        // A batch of gone jobs syncs no directory.
        let st = commit(&j, &[2, 99]);
        assert_eq!((st.synced, st.skipped, st.dir_syncs), (0, 2, 0));
    }

    #[test]
    fn thread_groups_jobs_into_few_batches() {
        let d = tempfile::tempdir().unwrap();
        let j = Arc::new(Journal::open(d.path()).unwrap());
        let s = Syncer::start(j.clone()).unwrap();
        let n = 200u64;
        for id in 1..=n {
            queued(&j, id);
            s.push(id);
        }
        assert!(s.flush(Duration::from_secs(20)), "flush timed out");
        let st = s.stats();
        assert_eq!(st.synced + st.skipped, n);
        assert_eq!(st.errors, 0);
        assert!(st.dir_syncs <= st.batches);
        // Pushed in a burst: grouped (one job per batch would be 200).
        assert!(st.batches <= n / 4, "{st:?}");
        // A flush with nothing pending returns at once.
        assert!(s.flush(Duration::from_millis(1)));
        s.shutdown();
    }

    #[test]
    fn flush_does_not_wait_for_the_linger() {
        let d = tempfile::tempdir().unwrap();
        let j = Arc::new(Journal::open(d.path()).unwrap());
        let s = Syncer::start_lingering(j.clone(), Duration::from_secs(600)).unwrap();
        for id in 1..=3 {
            queued(&j, id);
            s.push(id);
        }
        let t = Instant::now();
        assert!(s.flush(Duration::from_secs(20)), "flush timed out");
        assert!(t.elapsed() < Duration::from_secs(20));
        let st = s.stats();
        assert_eq!((st.batches, st.synced, st.dir_syncs), (1, 3, 1));
        // Pushed during a long linger, committed by shutdown at once.
        queued(&j, 4);
        s.push(4);
        let t = Instant::now();
        s.shutdown();
        assert!(t.elapsed() < Duration::from_secs(20));
        assert_eq!(s.stats().synced, 4);
    }

    #[test]
    fn open_records_are_written_by_the_next_batch_or_at_shutdown() {
        let d = tempfile::tempdir().unwrap();
        let j = Arc::new(Journal::open(d.path()).unwrap());
        let open = |id: u64| JobRecord {
            id,
            remote_path: format!("o{id}"),
            size: 0,
            crc: 0,
            state: JobState::Open,
            wanted: Default::default(),
        };
        let s = Syncer::start_lingering(j.clone(), Duration::from_millis(5)).unwrap();
        j.record_open_deferred(open(1));
        s.poke();
        let deadline = Instant::now() + Duration::from_secs(20);
        while j.load(1).unwrap().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(j.load(1).unwrap(), Some(open(1)));
        s.shutdown();
        // Still open at a clean stop: written at shutdown, however long
        // the linger.
        let s = Syncer::start_lingering(j.clone(), Duration::from_secs(600)).unwrap();
        j.record_open_deferred(open(2));
        s.poke();
        s.shutdown();
        assert_eq!(j.load(2).unwrap(), Some(open(2)));
        // After shutdown a poke writes at once.
        j.record_open_deferred(open(3));
        s.poke();
        assert_eq!(j.load(3).unwrap(), Some(open(3)));
    }

    #[test]
    fn shutdown_commits_what_is_pending() {
        let d = tempfile::tempdir().unwrap();
        let j = Arc::new(Journal::open(d.path()).unwrap());
        let s = Syncer::start(j.clone()).unwrap();
        for id in 1..=30 {
            queued(&j, id);
            s.push(id);
        }
        s.shutdown();
        let st = s.stats();
        assert_eq!((st.synced, st.errors), (30, 0));
        // After shutdown a push is committed on the spot.
        queued(&j, 31);
        s.push(31);
        assert_eq!(s.stats().synced, 31);
        assert!(s.flush(Duration::from_millis(1)));
        s.shutdown(); // idempotent
    }
}
