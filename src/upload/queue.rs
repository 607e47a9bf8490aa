//! The uploader's shared state: jobs by id, the run queue, which remote
//! paths a worker is busy with, and the per-attempt abort flags that
//! cancel/replace/rename use to stop a running upload at the next chunk.
//!
//! Every change of a job's fate (done, failed, cancelled, replaced) happens
//! under one lock together with its journal write, so a worker that finishes
//! just as its job is cancelled can never resurrect the record or drop the
//! data of the job that replaced it.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::bwlimit::TokenBucket;
use super::{resume, JobStatus, Tuning, UploadError};
use crate::spool::journal::{JobRecord, JobState, Journal, Wanted};
use crate::transport::Endpoint;

pub(crate) struct Job {
    pub rec: JobRecord,
    pub sent: u64,
    pub last_error: Option<String>,
    pub abort: Arc<AtomicBool>,
    pub running: bool,
    /// Bumped by every [`Shared::set_wanted`]: a worker that applied an
    /// older `rec.wanted` on the server applies the new one before the
    /// job may complete.
    pub wanted_gen: u64,
    /// Attempts started (for `keyfs status`).
    pub tries: u32,
    pub phase: Phase,
    /// When the next attempt starts, while waiting after a fault.
    pub retry_at: Option<Instant>,
}

/// Where a job's current attempt is, for `keyfs status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for a worker.
    #[default]
    Queued,
    /// Connecting, deciding the offset, or sending.
    Uploading,
    /// Sent; checking the server's copy.
    Verifying,
    /// The last attempt failed; waiting for the next.
    Retrying,
}

#[derive(Default)]
pub(crate) struct State {
    pub jobs: BTreeMap<u64, Job>,
    pub queue: VecDeque<u64>,
    /// Remote paths a worker is uploading; a second job for the same path
    /// waits, so an aborted old upload never races its replacement.
    pub busy_paths: HashSet<String>,
    /// Verified jobs (id, remote path) whose `on_complete` is still running:
    /// already out of `jobs` and the journal (so rename/cancel no longer see
    /// them), but `wait` keeps waiting until the fs has seen them finish.
    pub completing: Vec<(u64, String)>,
    pub shutdown: bool,
}

pub(crate) type OnComplete = super::OnComplete;

pub(crate) struct Shared {
    pub state: Mutex<State>,
    pub cond: Condvar,
    pub journal: Arc<Journal>,
    pub endpoint: Endpoint,
    pub policy: resume::Policy,
    pub on_complete: Option<OnComplete>,
    pub limiter: Option<TokenBucket>,
    pub tuning: Tuning,
    pub bytes_sent: AtomicU64,
    /// The checksum method in use and what the server refused.
    pub checksums: super::checksums::Checksums,
}

/// A job as a worker took it.
pub(crate) struct Picked {
    pub rec: JobRecord,
    pub abort: Arc<AtomicBool>,
}

/// What is left until `deadline`, at most a second (waits re-check their
/// condition); None once it has passed. A deadline too far away to
/// represent (`Duration::MAX` as "forever") never passes.
fn time_left(deadline: Option<Instant>) -> Option<Duration> {
    let cap = Duration::from_secs(1);
    match deadline {
        None => Some(cap),
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            (!left.is_zero()).then(|| left.min(cap))
        }
    }
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Blocks until a job can run (or shutdown: `None`).
    pub fn pick(&self) -> Option<Picked> {
        let mut st = self.lock();
        loop {
            if st.shutdown {
                return None;
            }
            let pos = st.queue.iter().position(|id| {
                st.jobs
                    .get(id)
                    .is_some_and(|j| !st.busy_paths.contains(&j.rec.remote_path))
            });
            if let Some(pos) = pos {
                let id = st.queue.remove(pos)?;
                let State {
                    jobs, busy_paths, ..
                } = &mut *st;
                if let Some(job) = jobs.get_mut(&id) {
                    job.running = true;
                    busy_paths.insert(job.rec.remote_path.clone());
                    return Some(Picked {
                        rec: job.rec.clone(),
                        abort: job.abort.clone(),
                    });
                }
                continue;
            }
            // Drop ids of jobs that are gone.
            let State { queue, jobs, .. } = &mut *st;
            queue.retain(|id| jobs.contains_key(id));
            st = self
                .cond
                .wait_timeout(st, Duration::from_secs(1))
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    /// Sleeps `d`, waking early on abort or shutdown. True if it should stop.
    pub fn sleep_unless_aborted(&self, d: Duration, abort: &AtomicBool) -> bool {
        let deadline = Instant::now().checked_add(d);
        let mut st = self.lock();
        loop {
            if st.shutdown || abort.load(Ordering::SeqCst) {
                return true;
            }
            let Some(left) = time_left(deadline) else {
                return false;
            };
            st = self
                .cond
                .wait_timeout(st, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    pub fn progress(&self, id: u64, sent: u64) {
        if let Some(j) = self.lock().jobs.get_mut(&id) {
            j.sent = sent;
        }
    }

    /// An attempt failed and the next starts after `delay`.
    pub fn set_error(&self, id: u64, msg: &str, delay: Duration) {
        if let Some(j) = self.lock().jobs.get_mut(&id) {
            j.last_error = Some(msg.to_string());
            j.phase = Phase::Retrying;
            j.retry_at = Instant::now().checked_add(delay);
        }
        self.cond.notify_all();
    }

    /// A worker starts an attempt at job `id`.
    pub fn attempt_started(&self, id: u64) {
        if let Some(j) = self.lock().jobs.get_mut(&id) {
            j.tries = j.tries.saturating_add(1);
            j.phase = Phase::Uploading;
            j.retry_at = None;
        }
    }

    /// The bytes are sent; the server's copy is being checked.
    pub fn verifying(&self, id: u64) {
        if let Some(j) = self.lock().jobs.get_mut(&id) {
            j.phase = Phase::Verifying;
        }
    }

    /// The job's current remote path, if it still exists.
    pub fn current_path(&self, id: u64) -> Option<String> {
        self.lock().jobs.get(&id).map(|j| j.rec.remote_path.clone())
    }

    /// The upload of `p` is verified: drop the record and the spooled data
    /// and take the job out of `jobs` in one locked step (so a rename or
    /// cancel either happens before, and aborted this attempt, or sees no
    /// job at all), tell the fs (`on_complete`), and only then wake `wait`ers,
    /// so an fsync returns after the fs has seen the upload finish.
    /// `applied` is the [`Shared::wanted`] generation the worker applied
    /// on the server: when the fs changed the job's wanted mtime or mode
    /// since, nothing is committed and `false` is returned (apply again).
    pub fn complete(&self, p: &Picked, applied: u64) -> bool {
        let rec = {
            let Some(mut st) = self.end_attempt(p) else {
                return true;
            };
            let changed = st
                .jobs
                .get(&p.rec.id)
                .is_some_and(|j| Arc::ptr_eq(&j.abort, &p.abort) && j.wanted_gen != applied);
            if changed {
                st.busy_paths.insert(p.rec.remote_path.clone());
                return false;
            }
            let ours = st
                .jobs
                .get(&p.rec.id)
                .is_some_and(|j| Arc::ptr_eq(&j.abort, &p.abort));
            if !ours {
                // Replaced meanwhile: the new content still has to go.
                drop(st);
                self.aborted_locked_out(p);
                return true;
            }
            // Data, then record, unsynced: the verified server copy is what
            // keeps the content now (see `Journal::remove_uploaded`).
            if let Err(e) = self.journal.remove_uploaded(p.rec.id) {
                log::error!("journal: cannot remove job {}: {e}", p.rec.id);
            }
            let rec = st.jobs.remove(&p.rec.id).map(|j| j.rec);
            if let Some(r) = &rec {
                st.completing.push((r.id, r.remote_path.clone()));
            }
            rec
        };
        let leftover = match (&rec, &self.on_complete) {
            (Some(rec), Some(cb)) => cb(rec),
            _ => None,
        };
        self.lock().completing.retain(|(id, _)| *id != p.rec.id);
        self.cond.notify_all();
        // What the fs let go of (its descriptor of the data file) is
        // dropped only now: the last close of a large unlinked file frees
        // its blocks (125 ms for 256 MiB here), which neither the fs lock
        // nor `keyfs wait` should wait for.
        drop(leftover);
        // The fs has dropped its copy of the data file by now (unless a
        // reader still has it open): the recycled files can be emptied.
        self.journal.settle_recycled();
        true
    }

    /// The job's wanted mtime and mode now, and their generation.
    pub fn wanted(&self, id: u64) -> (Wanted, u64) {
        self.lock()
            .jobs
            .get(&id)
            .map(|j| (j.rec.wanted, j.wanted_gen))
            .unwrap_or_default()
    }

    /// The fs set the mtime or mode of a file whose job is pending: record
    /// it with the job (journal, no fsync). False when the job is gone
    /// (uploaded, or cancelled): the caller applies it on the server.
    pub fn set_wanted(&self, id: u64, wanted: Wanted) -> bool {
        let mut st = self.lock();
        let Some(j) = st.jobs.get_mut(&id) else {
            return false;
        };
        j.rec.wanted = wanted;
        j.wanted_gen += 1;
        if j.rec.state != JobState::Open {
            if let Err(e) = self.journal.record_volatile(&j.rec) {
                log::warn!("journal: cannot record the mtime/mode of job {id}: {e}");
            }
        }
        true
    }

    /// An attempt of `p` ended (verified or failed): frees its path and
    /// returns the locked state, or None when the job was aborted meanwhile
    /// (then it is requeued as by [`Shared::aborted`]).
    fn end_attempt(&self, p: &Picked) -> Option<MutexGuard<'_, State>> {
        let mut st = self.lock();
        st.busy_paths.remove(&p.rec.remote_path);
        if p.abort.load(Ordering::SeqCst) {
            drop(st);
            self.aborted_locked_out(p);
            return None;
        }
        Some(st)
    }

    /// The attempt stopped because the job was cancelled, replaced or renamed
    /// (or the uploader shuts down): requeue it if it still exists.
    pub fn aborted(&self, p: &Picked) {
        self.lock().busy_paths.remove(&p.rec.remote_path);
        self.aborted_locked_out(p);
    }

    fn aborted_locked_out(&self, p: &Picked) {
        let mut st = self.lock();
        let State { jobs, queue, .. } = &mut *st;
        if let Some(j) = jobs.get_mut(&p.rec.id) {
            j.running = false;
            j.phase = Phase::Queued;
            j.retry_at = None;
            if Arc::ptr_eq(&j.abort, &p.abort) && p.abort.load(Ordering::SeqCst) {
                j.abort = Arc::new(AtomicBool::new(false));
            }
            if j.rec.state == JobState::Queued && !queue.contains(&p.rec.id) {
                queue.push_back(p.rec.id);
            }
        }
        drop(st);
        self.cond.notify_all();
    }

    /// A permanent error: the job is recorded Failed, its data kept.
    pub fn failed(&self, p: &Picked, reason: &str) {
        let Some(mut st) = self.end_attempt(p) else {
            return;
        };
        if let Some(j) = st.jobs.get_mut(&p.rec.id) {
            j.running = false;
            j.rec.state = JobState::Failed(reason.to_string());
            j.last_error = Some(reason.to_string());
            if let Err(e) = self.journal.record(&j.rec) {
                log::error!("journal: cannot record failure of job {}: {e}", j.rec.id);
            }
        }
        drop(st);
        self.cond.notify_all();
    }

    /// Queues failed jobs again (`keyfs retry`): those whose remote path is
    /// in `paths`, every one when `None`. The data was kept; a fault that
    /// is fixed now (a permission on the server, a full disk there) no
    /// longer needs the file written again. Returns their paths.
    pub fn retry_failed(&self, paths: Option<&HashSet<String>>) -> Vec<String> {
        let mut st = self.lock();
        let State { jobs, queue, .. } = &mut *st;
        let mut again = Vec::new();
        for j in jobs.values_mut() {
            let JobState::Failed(reason) = &j.rec.state else {
                continue;
            };
            if paths.is_some_and(|p| !p.contains(&j.rec.remote_path)) {
                continue;
            }
            let reason = reason.clone();
            j.rec.state = JobState::Queued;
            // Not synced (this runs under the queue's lock, once per job): a
            // crash before the next sync leaves it failed, to retry again.
            if let Err(e) = self.journal.record_volatile(&j.rec) {
                log::error!("journal: cannot queue job {} again: {e}", j.rec.id);
                j.rec.state = JobState::Failed(reason);
                continue;
            }
            j.phase = Phase::Queued;
            j.retry_at = None;
            if !j.running && !queue.contains(&j.rec.id) {
                queue.push_back(j.rec.id);
            }
            log::info!(
                "{}: queued again (it had failed: {reason})",
                j.rec.remote_path
            );
            again.push(j.rec.remote_path.clone());
        }
        drop(st);
        self.cond.notify_all();
        again
    }

    /// Adds (or replaces) a job; other queued or failed jobs for the same
    /// path are cancelled (their data dropped). `durable`: the record is
    /// fsynced before return; otherwise only renamed into place (the caller
    /// hands the job to the syncer).
    pub fn submit(&self, mut rec: JobRecord, durable: bool) -> std::io::Result<()> {
        rec.state = JobState::Queued;
        let mut st = self.lock();
        let recorded = if durable {
            self.journal.record(&rec)
        } else {
            self.journal.record_volatile(&rec)
        };
        // A record that cannot be written (a full spool disk: the data fit,
        // its few hundred bytes of record did not) must not drop the file:
        // it is queued from memory and uploaded all the same; only a crash
        // before the upload would leave its data without a record (the next
        // mount warns about such data).
        if let Err(e) = recorded {
            log::error!(
                "journal: cannot record job {} ({}): {e}; uploading it without a record",
                rec.id,
                rec.remote_path
            );
        }
        let stale: Vec<u64> = st
            .jobs
            .values()
            .filter(|j| {
                j.rec.remote_path == rec.remote_path
                    && j.rec.id != rec.id
                    && j.rec.state != JobState::Open
            })
            .map(|j| j.rec.id)
            .collect();
        for id in stale {
            self.drop_job(&mut st, id);
        }
        let State { jobs, queue, .. } = &mut *st;
        match jobs.get_mut(&rec.id) {
            Some(j) => {
                // Same id, new content: a running attempt must start over.
                if j.running {
                    j.abort.store(true, Ordering::SeqCst);
                }
                j.rec = rec.clone();
                j.wanted_gen += 1;
                j.last_error = None;
                j.sent = 0;
            }
            None => {
                jobs.insert(
                    rec.id,
                    Job {
                        rec: rec.clone(),
                        sent: 0,
                        last_error: None,
                        abort: Arc::new(AtomicBool::new(false)),
                        running: false,
                        wanted_gen: 0,
                        tries: 0,
                        phase: Phase::Queued,
                        retry_at: None,
                    },
                );
            }
        }
        let running = jobs.get(&rec.id).is_some_and(|j| j.running);
        if !running && !queue.contains(&rec.id) {
            queue.push_back(rec.id);
        }
        drop(st);
        self.cond.notify_all();
        Ok(())
    }

    /// Loads a job found in the journal at start.
    pub fn adopt(&self, rec: JobRecord) {
        let mut st = self.lock();
        let queued = rec.state == JobState::Queued;
        let id = rec.id;
        st.jobs.insert(
            id,
            Job {
                last_error: match &rec.state {
                    JobState::Failed(r) => Some(r.clone()),
                    JobState::Open => Some("still open for writing when the daemon stopped".into()),
                    JobState::Queued => None,
                },
                rec,
                sent: 0,
                abort: Arc::new(AtomicBool::new(false)),
                running: false,
                wanted_gen: 0,
                tries: 0,
                phase: Phase::Queued,
                retry_at: None,
            },
        );
        if queued {
            st.queue.push_back(id);
        }
    }

    /// Removes a job, its record and data; a running attempt stops.
    fn drop_job(&self, st: &mut State, id: u64) {
        if let Some(j) = st.jobs.remove(&id) {
            j.abort.store(true, Ordering::SeqCst);
            if let Err(e) = self.journal.remove(id) {
                log::error!("journal: cannot remove job {id}: {e}");
            }
        }
        st.queue.retain(|q| *q != id);
    }

    pub fn cancel(&self, path: &str) {
        let mut st = self.lock();
        let ids: Vec<u64> = st
            .jobs
            .values()
            .filter(|j| j.rec.remote_path == path && j.rec.state != JobState::Open)
            .map(|j| j.rec.id)
            .collect();
        for id in ids {
            self.drop_job(&mut st, id);
        }
        drop(st);
        self.cond.notify_all();
    }

    /// Renames pending jobs at `from` (or under it, for a directory) and
    /// returns their records as renamed. A job that is done (verified and
    /// gone from `jobs`) or whose record is no longer in the journal is left
    /// alone: writing its record back would upload it again at the next
    /// start, with its data already dropped.
    pub fn rename(&self, from: &str, to: &str) -> Vec<JobRecord> {
        let mut st = self.lock();
        let prefix = format!("{}/", from.trim_end_matches('/'));
        let State { jobs, queue, .. } = &mut *st;
        let mut changed = Vec::new();
        let mut moved = Vec::new();
        // Records left `Open` by a crashed daemon belong to the fs: never
        // touched here (kept and reported, neither uploaded nor deleted).
        for j in jobs.values_mut().filter(|j| j.rec.state != JobState::Open) {
            let new_path = if j.rec.remote_path == from {
                to.to_string()
            } else if let Some(rest) = j.rec.remote_path.strip_prefix(&prefix) {
                format!("{}/{rest}", to.trim_end_matches('/'))
            } else {
                continue;
            };
            match self.journal.load(j.rec.id) {
                Ok(Some(_)) => {}
                Ok(None) => {
                    log::warn!(
                        "journal: job {} ({}) has no record any more; not renaming it",
                        j.rec.id,
                        j.rec.remote_path
                    );
                    continue;
                }
                Err(e) => {
                    log::error!("journal: cannot read job {}: {e}", j.rec.id);
                    continue;
                }
            }
            j.rec.remote_path = new_path;
            if matches!(j.rec.state, JobState::Failed(_)) {
                // A new name may fix a permanent error (553 bad name).
                j.rec.state = JobState::Queued;
            }
            if let Err(e) = self.journal.record(&j.rec) {
                log::error!("journal: cannot record rename of job {}: {e}", j.rec.id);
            }
            moved.push(j.rec.clone());
            if j.running {
                j.abort.store(true, Ordering::SeqCst);
            } else if j.rec.state == JobState::Queued {
                changed.push(j.rec.id);
            }
        }
        for id in changed {
            if !queue.contains(&id) {
                queue.push_back(id);
            }
        }
        drop(st);
        self.cond.notify_all();
        moved
    }

    pub fn wait(&self, path: &str, timeout: Duration) -> Result<(), UploadError> {
        let deadline = Instant::now().checked_add(timeout);
        let mut st = self.lock();
        loop {
            let job = st
                .jobs
                .values()
                .filter(|j| j.rec.remote_path == path && j.rec.state != JobState::Open)
                .max_by_key(|j| j.rec.id);
            let completing = st.completing.iter().any(|(_, p)| p == path);
            match job {
                None if !completing => return Ok(()),
                None => {}
                Some(j) => {
                    if let JobState::Failed(r) = &j.rec.state {
                        return Err(UploadError::Permanent(r.clone()));
                    }
                }
            }
            if st.shutdown {
                return Err(UploadError::Cancelled);
            }
            let Some(left) = time_left(deadline) else {
                return Err(UploadError::Timeout);
            };
            st = self
                .cond
                .wait_timeout(st, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    /// Sleeps until a job changes state (queued, completed, failed, retried,
    /// cancelled, renamed) or `timeout` passes, whichever comes first.
    pub fn wait_change(&self, timeout: Duration) {
        let st = self.lock();
        let _ = self.cond.wait_timeout(st, timeout);
    }

    /// Waits until no worker is uploading to `path` (an attempt stopped by
    /// cancel or rename has dropped its partial by then). False on timeout.
    pub fn wait_idle(&self, path: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.lock();
        loop {
            if !st.busy_paths.contains(path) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = self
                .cond
                .wait_timeout(st, (deadline - now).min(Duration::from_millis(200)))
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    pub fn status(&self) -> Vec<JobStatus> {
        self.lock()
            .jobs
            .values()
            .map(|j| JobStatus {
                record: j.rec.clone(),
                sent: j.sent,
                last_error: j.last_error.clone(),
                phase: if j.running { j.phase } else { Phase::Queued },
                tries: j.tries,
                retry_in: j
                    .retry_at
                    .filter(|_| j.running)
                    .map(|t| t.saturating_duration_since(Instant::now())),
            })
            .collect()
    }

    pub fn shutdown(&self) {
        let mut st = self.lock();
        st.shutdown = true;
        for j in st.jobs.values() {
            if j.running {
                j.abort.store(true, Ordering::SeqCst);
            }
        }
        drop(st);
        self.cond.notify_all();
    }

    pub fn is_shutdown(&self) -> bool {
        self.lock().shutdown
    }
}
