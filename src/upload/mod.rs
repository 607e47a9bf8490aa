//! The background uploader: N workers, each with its own server connection
//! ([`crate::transport::Conn`]), take queued jobs, ask what the server holds
//! for the path, decide (resume or restart), send from the offset with the
//! key, verify size and key/CRC, then drop the spooled copy. How each step
//! goes on the wire is the transport's ([`crate::transport`]).
//!
//! The signatures in this file are the contract the fs uses. The parts:
//! - [`resume`]: the pure resume decision;
//! - `queue`: jobs, run queue, cancel/replace/rename, wait (for fsync);
//! - `worker`: the per-job protocol flow and retry loop;
//! - `verify`: local prefix CRC, post-upload size/CRC check;
//! - `backoff`, `bwlimit`: reconnect delays and the shared `--bwlimit` cap.
//!
//! close() never waits on the network, nor on the disk: `submit_volatile`
//! renames the journal record into place and queues the job at once; the
//! uploader's [`Syncer`] makes it durable in a batch shortly after (one
//! directory fsync for all the files closed meanwhile). The syncer lives
//! here because the uploader owns the `Queued` records from submit to
//! removal and its lifetime is the mount's: `shutdown` stops the workers,
//! then commits what is still pending.
//!
//! Memory is bounded: each worker streams its file with one fixed buffer
//! (`Tuning::chunk_size`).
pub mod backoff;
pub mod bwlimit;
mod checksums;
mod queue;
pub use queue::Phase;
pub mod resume;
pub mod verify;
mod worker;

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::spool::journal::{JobRecord, JobState, Journal};
use crate::spool::syncer::{SyncStats, Syncer};
use crate::transport::Endpoint;

pub struct UploadConfig {
    pub endpoint: Endpoint,
    /// Worker threads, each with its own connection (default 2).
    pub workers: usize,
    /// Upload bandwidth cap in bytes per second, shared by all workers.
    pub bwlimit: Option<u64>,
    pub policy: resume::Policy,
    /// Called after a job is uploaded and verified and its spooled copy dropped.
    pub on_complete: Option<OnComplete>,
}

/// Told that a job was uploaded and verified; what it returns is dropped
/// after the job's waiters were woken (see `Shared::complete`).
pub type OnComplete = Arc<dyn Fn(&JobRecord) -> Option<Leftover> + Send + Sync>;
/// Something the fs let go of, to be dropped off its lock.
pub type Leftover = Box<dyn Send>;

/// Timeouts, backoff and buffer size; `Default` suits a real mount, tests
/// shorten the delays.
#[derive(Clone, Debug)]
pub struct Tuning {
    /// Connect, reply and data socket timeout.
    pub io_timeout: Duration,
    /// Timeout for replies that make the server read a whole file (the
    /// reply after an upload, a checksum): a dead server is noticed after
    /// this.
    pub slow_reply_timeout: Duration,
    /// First reconnect delay; doubles up to `backoff_max` (with jitter).
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// The fixed streaming buffer per worker.
    pub chunk_size: usize,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            io_timeout: Duration::from_secs(30),
            slow_reply_timeout: Duration::from_secs(120),
            backoff_initial: Duration::from_millis(500),
            // Short: a reconnect costs one TCP connect, and after an
            // outage the upload continues within this of the link's return
            // (30 s here made a 45 s outage cost ~100 s).
            backoff_max: Duration::from_secs(5),
            chunk_size: 256 * 1024,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("upload failed permanently: {0}")]
    Permanent(String),
    #[error("upload not finished in time")]
    Timeout,
    #[error("no such pending upload")]
    NotFound,
    #[error("upload cancelled")]
    Cancelled,
}

#[derive(Clone, Debug)]
pub struct JobStatus {
    pub record: JobRecord,
    /// Bytes the server holds so far, if known.
    pub sent: u64,
    pub last_error: Option<String>,
    /// Where the current attempt is (`Queued` when no worker has it).
    pub phase: Phase,
    /// Attempts started since the mount.
    pub tries: u32,
    /// While `Retrying`: how long until the next attempt.
    pub retry_in: Option<Duration>,
}

/// A handle to the uploader; cheap to clone.
#[derive(Clone)]
pub struct Uploader {
    shared: Arc<queue::Shared>,
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
    syncer: Arc<Syncer>,
    wire: Arc<worker::WireStats>,
    shutdown_lock: Arc<Mutex<bool>>,
}

/// How long `shutdown` waits for the workers to let go of their jobs: they
/// check between chunks of at most ~250 ms, so only one blocked in a
/// network call takes longer.
pub const SHUTDOWN_GRACE: Duration = Duration::from_millis(700);

impl Uploader {
    /// Starts the workers and queues every `Queued` job found in the journal.
    pub fn start(cfg: UploadConfig, journal: Arc<Journal>) -> std::io::Result<Uploader> {
        Uploader::start_tuned(cfg, journal, Tuning::default())
    }

    /// `start` with explicit timeouts, backoff and buffer size.
    pub fn start_tuned(
        cfg: UploadConfig,
        journal: Arc<Journal>,
        tuning: Tuning,
    ) -> std::io::Result<Uploader> {
        let mut records = journal.load_all()?;
        // A power cut can bring back the record of a job uploaded just
        // before (its removal is not synced); its data is gone by then.
        records.retain(|rec| {
            if !journal.is_stale_uploaded(rec) {
                return true;
            }
            log::warn!(
                "journal: job {} ({}) has no spooled data; it was uploaded before \
                 the last stop, dropping its record",
                rec.id,
                rec.remote_path
            );
            if let Err(e) = journal.remove_uploaded(rec.id) {
                log::warn!("journal: cannot drop job {}: {e}", rec.id);
            }
            false
        });
        let spool_dir = journal.spool_dir().to_path_buf();
        if crate::spool::boot::unclean_reboot(&spool_dir) {
            log::warn!(
                "spool: the machine was reset while this spool was in use; \
                 re-checking the data of {} queued job(s) before upload",
                records.len()
            );
            for rec in &mut records {
                recheck_after_reset(&journal, rec);
            }
        }
        crate::spool::boot::mark_running(&spool_dir)?;
        let syncer = Arc::new(Syncer::start(journal.clone())?);
        let shared = Arc::new(queue::Shared {
            state: Mutex::new(queue::State::default()),
            cond: Condvar::new(),
            journal,
            endpoint: cfg.endpoint,
            policy: cfg.policy,
            on_complete: cfg.on_complete,
            limiter: cfg.bwlimit.map(bwlimit::TokenBucket::new),
            tuning,
            bytes_sent: AtomicU64::new(0),
            checksums: Default::default(),
        });
        for rec in records {
            shared.adopt(rec);
        }
        let wire = Arc::new(worker::WireStats::default());
        let mut threads = Vec::new();
        for i in 0..cfg.workers.max(1) {
            let sh = shared.clone();
            let w = wire.clone();
            let t = std::thread::Builder::new()
                .name(format!("keyfs-upload-{i}"))
                .spawn(move || worker::run(sh, w))?;
            threads.push(t);
        }
        Ok(Uploader {
            shared,
            threads: Arc::new(Mutex::new(threads)),
            syncer,
            wire,
            shutdown_lock: Arc::new(Mutex::new(false)),
        })
    }

    /// Records `rec` as Queued in the journal and queues it. Never waits on the network.
    /// A pending job for the same remote path is cancelled (its data dropped).
    pub fn submit(&self, rec: JobRecord) -> std::io::Result<()> {
        self.shared.submit(rec, true)
    }
    /// `submit` for close: the caller has written the data file (not
    /// synced); the record is renamed into place without any fsync and the
    /// job queued at once. The syncer then makes data and record durable in
    /// its next batch (see the module docs). Never waits on the disk.
    pub fn submit_volatile(&self, rec: JobRecord) -> std::io::Result<()> {
        let id = rec.id;
        self.shared.submit(rec, false)?;
        self.syncer.push(id);
        Ok(())
    }
    /// A version of a file was created and is being written: its `Open`
    /// record is deferred to the syncer's next batch, and never written if
    /// the file is closed first (see [`Journal::record_open_deferred`]).
    pub fn note_open(&self, rec: JobRecord) {
        self.shared.journal.record_open_deferred(rec);
        self.syncer.poke();
    }
    /// Waits until every job submitted so far is durable on disk (or
    /// uploaded). False on timeout.
    pub fn flush_durable(&self, timeout: Duration) -> bool {
        self.syncer.flush(timeout)
    }
    /// What the background syncer has done so far.
    pub fn sync_stats(&self) -> SyncStats {
        self.syncer.stats()
    }
    /// The program set the mtime or mode of the file of pending job `id`:
    /// recorded with the job and applied on the server after its verified
    /// upload. False when the job is no longer pending
    /// (uploaded meanwhile, or cancelled): the caller sets them itself.
    pub fn set_wanted(&self, id: u64, wanted: crate::spool::journal::Wanted) -> bool {
        self.shared.set_wanted(id, wanted)
    }
    /// The file was deleted in the mount: drop its pending job and data.
    pub fn cancel(&self, remote_path: &str) {
        self.shared.cancel(remote_path)
    }
    /// The pending file was renamed in the mount: upload it under the new name.
    /// Jobs under a renamed directory follow it. Returns the records as
    /// renamed (empty when nothing pending was there: a job that has just
    /// been uploaded and verified is not moved, nor written back).
    pub fn rename(&self, from: &str, to: &str) -> Vec<JobRecord> {
        self.shared.rename(from, to)
    }
    /// For fsync: waits until the job for `remote_path` is uploaded and verified.
    /// Ok(()) at once when nothing is pending for that path.
    pub fn wait(&self, remote_path: &str, timeout: Duration) -> Result<(), UploadError> {
        self.shared.wait(remote_path, timeout)
    }
    /// Sleeps until a job changes state or `timeout` passes (for the live
    /// status file: a verified upload shows at once, not at the next tick).
    pub fn wait_change(&self, timeout: Duration) {
        self.shared.wait_change(timeout)
    }
    /// Waits until no worker is uploading to `remote_path` (for instance
    /// until an upload stopped by `cancel`/`rename` has let go of it and
    /// dropped its partial). False on timeout.
    pub fn wait_idle(&self, remote_path: &str, timeout: Duration) -> bool {
        self.shared.wait_idle(remote_path, timeout)
    }
    /// Queues failed jobs again: those of `paths` (remote paths), or all.
    pub fn retry_failed(&self, paths: Option<&std::collections::HashSet<String>>) -> Vec<String> {
        self.shared.retry_failed(paths)
    }
    pub fn status(&self) -> Vec<JobStatus> {
        self.shared.status()
    }
    /// Payload bytes of uploads sent since start (all workers):
    /// what a resume saved shows here.
    pub fn bytes_sent(&self) -> u64 {
        self.shared
            .bytes_sent
            .load(std::sync::atomic::Ordering::Relaxed)
    }
    /// Which checksum method verifies uploads, and what the server refused
    /// (e.g. `checksum: HASH CRC32 (fallback: XCRC refused: ...)`);
    /// `None` until
    /// a worker has connected.
    pub fn checksum_note(&self) -> Option<String> {
        self.shared.checksums.note()
    }
    /// The part of [`Uploader::bytes_sent`] that went by `sendfile(2)`.
    pub fn sendfile_bytes(&self) -> u64 {
        self.wire
            .sendfile_bytes
            .load(std::sync::atomic::Ordering::Relaxed)
    }
    /// Stops the workers, then commits the jobs not yet durable; pending
    /// jobs stay in the journal. A worker still blocked on the network
    /// after [`SHUTDOWN_GRACE`] (a reply on a dead link, a full socket
    /// buffer on a slow one) is left behind: the process exits soon after,
    /// which to its job is a cut connection (the spool keeps it for the
    /// next mount). A second caller waits for the first to finish.
    pub fn shutdown(&self) {
        let mut done = self.shutdown_lock.lock().unwrap_or_else(|p| p.into_inner());
        if *done {
            return;
        }
        *done = true;
        self.shared.shutdown();
        let threads: Vec<JoinHandle<()>> = {
            let mut t = self.threads.lock().unwrap_or_else(|p| p.into_inner());
            t.drain(..).collect()
        };
        let deadline = std::time::Instant::now() + SHUTDOWN_GRACE;
        let mut left = 0;
        for t in threads {
            while !t.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if t.is_finished() {
                let _ = t.join();
            } else {
                left += 1;
            }
        }
        if left > 0 {
            log::info!("shutdown: {left} upload worker(s) still waiting on the network; not waiting for them");
        }
        self.syncer.shutdown();
        let st = self.syncer.stats();
        // Only when every closed file reached the disk may the next start
        // skip the re-check after a reset.
        if st.errors == 0 {
            let dir = self.shared.journal.spool_dir();
            if let Err(e) = crate::spool::boot::mark_clean(dir) {
                log::warn!("spool: cannot mark a clean stop: {e}");
            }
        }
        log::info!(
            "spool: {} closed files made durable in {} batches ({} uploaded first, {} errors)",
            st.synced,
            st.batches,
            st.skipped,
            st.errors
        );
    }
}

/// After a machine reset, a Queued job's record may name data that never
/// reached the disk, or an inode since reused for another file: its data
/// must still have the size and CRC the record says, or the job fails
/// (kept in the spool, shown by `keyfs status`) instead of sending the
/// wrong bytes over a good server copy.
fn recheck_after_reset(journal: &Journal, rec: &mut JobRecord) {
    if rec.state != JobState::Queued {
        return;
    }
    let path = journal.data_path(rec.id);
    let found = std::fs::File::open(&path)
        .and_then(|mut f| verify::spool_differs(&mut f, rec.size, rec.crc));
    let why = match found {
        Ok(None) => return,
        Ok(Some(w)) => w,
        // Missing data is handled by the stale-record check above.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => format!("unreadable: {e}"),
    };
    let msg = format!("spooled data damaged by the machine reset ({why}); kept in the spool");
    log::error!("job {} ({}): {msg}", rec.id, rec.remote_path);
    rec.state = JobState::Failed(msg);
    if let Err(e) = journal.record(rec) {
        log::error!("journal: cannot record job {}: {e}", rec.id);
    }
}
