//! The upload journal: one record per job, written atomically (temp file,
//! fsync, rename, fsync of the directory), so a restarted daemon finds every
//! pending upload.
//!
//! Layout under the spool directory:
//! - `journal/<id>.job`: one record, a small text file ending in a CRC line,
//!   so a damaged record is recognised and skipped instead of misread;
//! - `journal/*.tmp`: a record being written; a crash can leave one behind,
//!   it is ignored by `load_all` and removed by the next `open`;
//! - `journal/next-id`: the high-water mark of reserved job ids (ids are
//!   reserved in blocks, so `next_id` rarely touches the disk);
//! - `data/<id>`: the job's spooled bytes (`data_path`);
//! - `free/<n>`: empty files kept for reuse ([`FilePool`]): new data files
//!   and record temp files are taken from there, and an uploaded job's
//!   files go back there, so the spool's churn allocates no inodes. Never
//!   named by a record; replay and `keyfs status` do not look there.
//!
//! Durability comes in two strengths. `record` and `remove` are durable on
//! return (fsync of the file and of the directory): for rare events
//! (failures, renames, cancels). The close path is cheaper:
//! `record_queued_volatile` only renames (no fsync) and the spool's
//! [`Syncer`](super::syncer::Syncer) commits such records in batches, data
//! before record, one directory fsync per batch. `remove_uploaded` takes
//! a verified job's data, then its record, out of their names (into the
//! pool, or unlinked) without fsync: a record that a
//! power cut brings back points at missing data, and replay drops it
//! (`is_stale_uploaded`). `remove` deletes the record before the data: a
//! crash in between leaves an orphan data file (space, never a job pointing
//! at missing bytes).

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::DirEntryExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::pool::{cap_for, FilePool};
pub use super::record::{decode, encode, percent_decode, JobRecord, JobState, Wanted};

/// How many ids one write of `next-id` reserves.
const ID_BLOCK: u64 = 1024;

/// A job's files, open to be made durable (see `open_for_sync`).
pub struct JobFiles {
    pub data: File,
    pub record: File,
}

pub struct Journal {
    dir: PathBuf,
    /// (next id to hand out, first id not yet reserved on disk)
    ids: Mutex<(u64, u64)>,
    tmp_seq: AtomicU64,
    /// Our pid, for temp file names (read once: a syscall per record saved).
    pid: u32,
    /// `Open` records noted but not written yet (`record_open_deferred`).
    /// Held while the syncer writes them, so a record written for the same
    /// id by anyone else (who first takes its entry out) always lands last.
    deferred: Mutex<BTreeMap<u64, JobRecord>>,
    /// Recycled files for data and record temp files (disabled for readers).
    pool: FilePool,
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn parse_job_name(name: &str) -> Option<u64> {
    name.strip_suffix(".job")?.parse().ok()
}

impl Journal {
    /// Opens (creating if needed) the journal under `spool_dir`, for the
    /// daemon that owns the spool: it also clears records torn by a crash.
    pub fn open(spool_dir: &Path) -> io::Result<Journal> {
        Self::open_as(spool_dir, true)
    }

    /// Opens the journal only to read it (`keyfs status`), changing nothing:
    /// a running daemon's `*.tmp` files are records being written, not
    /// torn ones, and removing them would make its rename fail.
    pub fn open_for_reading(spool_dir: &Path) -> io::Result<Journal> {
        Self::open_as(spool_dir, false)
    }

    fn open_as(spool_dir: &Path, owner: bool) -> io::Result<Journal> {
        let dir = spool_dir.join("journal");
        if owner {
            fs::create_dir_all(&dir)?;
            fs::create_dir_all(spool_dir.join("data"))?;
        }
        let mut max_seen = 0u64;
        // Inodes of the records and data files, so the pool never touches
        // one of them (see `FilePool::open_with`).
        let mut in_use = HashSet::new();
        for ent in fs::read_dir(&dir).into_iter().flatten() {
            let ent = ent?;
            in_use.insert(ent.ino());
            let name = ent.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".tmp") {
                // A record torn by a crash: the rename never happened.
                if owner {
                    let _ = fs::remove_file(ent.path());
                }
            } else if let Some(id) = parse_job_name(&name) {
                max_seen = max_seen.max(id + 1);
            }
        }
        for ent in fs::read_dir(spool_dir.join("data")).into_iter().flatten() {
            let ent = ent?;
            in_use.insert(ent.ino());
            if let Some(id) = ent.file_name().to_str().and_then(|n| n.parse::<u64>().ok()) {
                max_seen = max_seen.max(id + 1);
            }
        }
        let reserved = fs::read_to_string(dir.join("next-id"))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(1);
        let next = reserved.max(max_seen).max(1);
        let free = spool_dir.join("free");
        let pool = if owner {
            fs::create_dir_all(&free)?;
            FilePool::open_with(&free, cap_for(&free), &in_use)?
        } else {
            FilePool::disabled(&free)
        };
        Ok(Journal {
            pool,
            dir,
            ids: Mutex::new((next, next)),
            tmp_seq: AtomicU64::new(0),
            pid: std::process::id(),
            deferred: Mutex::new(BTreeMap::new()),
        })
    }

    /// The spool directory this journal lives in.
    pub fn spool_dir(&self) -> &Path {
        self.dir.parent().unwrap_or(&self.dir)
    }

    /// Where the data of job `id` lives in the spool.
    pub fn data_path(&self, id: u64) -> PathBuf {
        self.spool_dir().join("data").join(id.to_string())
    }

    /// A new, empty data file for job `id` (a recycled one when the pool
    /// has one), open for reading and writing.
    pub fn create_data(&self, id: u64) -> io::Result<File> {
        self.pool.take(&self.data_path(id))
    }

    /// The pool of recycled spool files.
    pub fn pool(&self) -> &FilePool {
        &self.pool
    }

    /// Empties recycled files whose last holders have closed them since
    /// (see [`FilePool::settle`]); called after an upload's completion.
    pub fn settle_recycled(&self) {
        self.pool.settle();
    }

    fn record_path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id}.job"))
    }

    /// A fresh job id, unique across restarts of the same spool.
    pub fn next_id(&self) -> io::Result<u64> {
        let mut ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        if ids.0 >= ids.1 {
            let reserved = ids.0 + ID_BLOCK;
            self.write_atomic(
                &self.dir.join("next-id"),
                format!("{reserved}\n").as_bytes(),
            )?;
            ids.1 = reserved;
        }
        let id = ids.0;
        ids.0 += 1;
        Ok(id)
    }

    /// Step 1 of an atomic write: the bytes in a fresh temp file, fsynced.
    pub fn write_temp(&self, bytes: &[u8]) -> io::Result<PathBuf> {
        let n = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
        let tmp = self.dir.join(format!("{}-{n}.tmp", self.pid));
        let written = self
            .pool
            .take(&tmp)
            .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        Ok(tmp)
    }

    fn write_atomic(&self, dest: &Path, bytes: &[u8]) -> io::Result<()> {
        let tmp = self.write_temp(bytes)?;
        if let Err(e) = fs::rename(&tmp, dest) {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        sync_dir(&self.dir)
    }

    /// Writes or replaces the record atomically and durably. An `Open`
    /// record still deferred is only updated in memory (it is written with
    /// the syncer's next batch, like the one it replaces).
    pub fn record(&self, rec: &JobRecord) -> io::Result<()> {
        if self.take_deferred(rec) {
            return Ok(());
        }
        self.write_atomic(&self.record_path(rec.id), encode(rec).as_bytes())
    }

    fn deferred(&self) -> MutexGuard<'_, BTreeMap<u64, JobRecord>> {
        self.deferred.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Before any write or removal of `rec`'s record: an `Open` record still
    /// deferred is replaced in memory (true: nothing to write); otherwise
    /// the deferred entry is dropped, so the syncer can no longer write it
    /// over what the caller writes next.
    fn take_deferred(&self, rec: &JobRecord) -> bool {
        let mut d = self.deferred();
        if rec.state == JobState::Open {
            if let Some(slot) = d.get_mut(&rec.id) {
                *slot = rec.clone();
                return true;
            }
            return false;
        }
        d.remove(&rec.id);
        false
    }

    fn forget_deferred(&self, id: u64) {
        self.deferred().remove(&id);
    }

    /// Notes the `Open` record of a version just created, without writing
    /// it: the syncer writes it (volatile) with its next batch, within
    /// [`LINGER`](super::syncer::LINGER), if the file is still open then.
    /// A file closed before (a small file in a `cp -r`) gets its `Queued`
    /// record instead and no `Open` record is ever written: one temp file
    /// and one rename less per file on the create path. The cost: a crash
    /// of the daemon in that window leaves the file as unreported spool
    /// data instead of a kept `Open` job (the application had not closed
    /// it; nothing it closed is affected).
    pub fn record_open_deferred(&self, rec: JobRecord) {
        self.deferred().insert(rec.id, rec);
    }

    /// Writes the deferred `Open` records (volatile); called by the syncer.
    /// Returns how many were written; a record that fails is logged and
    /// dropped (the file then has no `Open` record, as after a crash).
    pub fn write_deferred_open(&self) -> usize {
        let mut d = self.deferred();
        let mut n = 0;
        for rec in d.values() {
            match self.write_volatile(rec) {
                Ok(()) => n += 1,
                Err(e) => log::error!("journal: cannot record open job {}: {e}", rec.id),
            }
        }
        d.clear();
        n
    }

    /// Whether an `Open` record is noted but not written yet (for tests).
    pub fn has_deferred(&self, id: u64) -> bool {
        self.deferred().contains_key(&id)
    }

    /// Writes or replaces the record atomically (temp file + rename) but
    /// without any fsync: it survives a crash of the daemon at once, one of
    /// the machine only once synced. Used for the `Open` record of a file
    /// being written, and for the `Queued` record written at close, which
    /// the spool's [`Syncer`](super::syncer::Syncer) then commits in a batch
    /// (data, record, directories; typically within milliseconds). Until
    /// then a power cut can lose the job, as it can lose a just-closed file
    /// on a local disk. A torn record is never read: the rename is atomic.
    pub fn record_volatile(&self, rec: &JobRecord) -> io::Result<()> {
        if self.take_deferred(rec) {
            return Ok(());
        }
        self.write_volatile(rec)
    }

    fn write_volatile(&self, rec: &JobRecord) -> io::Result<()> {
        let n = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
        let tmp = self.dir.join(format!("{}-{n}.tmp", self.pid));
        let written = self
            .pool
            .take(&tmp)
            .and_then(|mut f| f.write_all(encode(rec).as_bytes()))
            .and_then(|()| fs::rename(&tmp, self.record_path(rec.id)));
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written
    }

    /// Removes the record and the job's data file, durably (the record
    /// first, then a directory fsync): a file deleted in the mount must not
    /// come back to be uploaded after a power cut. Plain unlinks, not the
    /// pool: cancels and deletes are rare, and their data file is often
    /// still open in the mount (it would only be dirty in the pool).
    pub fn remove(&self, id: u64) -> io::Result<()> {
        self.forget_deferred(id);
        self.remove_record(id)?;
        match fs::remove_file(self.data_path(id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Drops an uploaded (verified) job: the data file, then the record,
    /// with no fsync. The server copy is what makes the content safe now;
    /// should a power cut bring the record back, its data file is gone and
    /// replay drops the record ([`Journal::is_stale_uploaded`]). Both go
    /// to the pool ([`FilePool::retire`]: a rename, as atomic as the
    /// unlink it replaces) for the next files to reuse, once emptied by
    /// [`Journal::settle_recycled`] (the caller holds the queue's lock, and
    /// the fs still has the data file open).
    pub fn remove_uploaded(&self, id: u64) -> io::Result<()> {
        self.forget_deferred(id);
        match self.pool.retire(&self.data_path(id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        match self.pool.retire(&self.record_path(id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Replay check: a `Queued` record whose data file is missing is the
    /// leftover of a job that was uploaded and removed (data first, then
    /// the record, unsynced) just before a power cut. Not a failure: the
    /// upload happened.
    pub fn is_stale_uploaded(&self, rec: &JobRecord) -> bool {
        rec.state == JobState::Queued && !self.data_path(rec.id).exists()
    }

    /// The job's data file and (already renamed) record, opened for the
    /// syncer; None when the job is gone (uploaded or dropped meanwhile).
    pub fn open_for_sync(&self, id: u64) -> io::Result<Option<JobFiles>> {
        let gone = |e: &io::Error| e.kind() == io::ErrorKind::NotFound;
        // The record first: if it is already gone there is nothing to do.
        let record = match File::open(self.record_path(id)) {
            Ok(f) => f,
            Err(e) if gone(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        match File::open(self.data_path(id)) {
            Ok(data) => Ok(Some(JobFiles { data, record })),
            Err(e) if gone(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One fsync of the journal directory and one of the data directory:
    /// the renames and creations of a whole batch become durable at once.
    pub fn sync_dirs(&self) -> io::Result<()> {
        sync_dir(&self.spool_dir().join("data"))?;
        sync_dir(&self.dir)
    }

    /// Step 1 of `remove`: the record only (durably).
    pub fn remove_record(&self, id: u64) -> io::Result<()> {
        self.forget_deferred(id);
        match fs::remove_file(self.record_path(id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        sync_dir(&self.dir)
    }

    /// One record, if present and intact.
    pub fn load(&self, id: u64) -> io::Result<Option<JobRecord>> {
        match fs::read_to_string(self.record_path(id)) {
            Ok(t) => Ok(decode(&t).filter(|r| r.id == id)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Ids of spooled data files that no record (in `records`) names: a
    /// file still open when the daemon stopped before its `Open` record was
    /// written, or a removal cut short. Kept, for the user to look at.
    pub fn orphan_data(&self, records: &[JobRecord]) -> io::Result<Vec<u64>> {
        let known: std::collections::HashSet<u64> = records.iter().map(|r| r.id).collect();
        let mut out = Vec::new();
        for ent in fs::read_dir(self.spool_dir().join("data"))? {
            let ent = ent?;
            if let Some(id) = ent.file_name().to_str().and_then(|n| n.parse::<u64>().ok()) {
                if !known.contains(&id) {
                    out.push(id);
                }
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Every record, ignoring (and reporting) torn or foreign files.
    pub fn load_all(&self) -> io::Result<Vec<JobRecord>> {
        let mut out = Vec::new();
        for ent in fs::read_dir(&self.dir)? {
            let ent = ent?;
            let name = ent.file_name();
            let name = name.to_string_lossy();
            let Some(id) = parse_job_name(&name) else {
                if !name.ends_with(".tmp") && name != "next-id" {
                    log::warn!("journal: ignoring foreign file {name}");
                }
                continue;
            };
            match self.load(id)? {
                Some(r) => out.push(r),
                None => log::warn!("journal: ignoring damaged record {name}"),
            }
        }
        out.sort_by_key(|r| r.id);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rec(id: u64, path: &str, state: JobState) -> JobRecord {
        JobRecord {
            id,
            remote_path: path.into(),
            size: id * 10,
            crc: (id as u32).wrapping_mul(0x9E37_79B9),
            state,
            wanted: Default::default(),
        }
    }

    fn tmp_count(j: &Journal) -> usize {
        fs::read_dir(&j.dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".tmp")
            })
            .count()
    }

    #[test]
    fn record_load_remove() {
        let d = tempfile::tempdir().unwrap();
        let j = Journal::open(d.path()).unwrap();
        let a = rec(1, "a b/c.txt", JobState::Queued);
        let b = rec(2, "x\nweird%0A", JobState::Failed("553 no\nway".into()));
        let c = rec(3, "open.bin", JobState::Open);
        for r in [&a, &b, &c] {
            j.record(r).unwrap();
            fs::write(j.data_path(r.id), b"data").unwrap();
        }
        assert_eq!(j.load_all().unwrap(), vec![a.clone(), b.clone(), c.clone()]);
        let a2 = JobRecord {
            state: JobState::Failed("x".into()),
            ..a.clone()
        };
        j.record(&a2).unwrap();
        assert_eq!(j.load(1).unwrap(), Some(a2));
        j.remove(2).unwrap();
        assert!(!j.data_path(2).exists());
        assert!(j.data_path(1).exists());
        j.remove(2).unwrap(); // idempotent
        let ids: Vec<u64> = j.load_all().unwrap().iter().map(|r| r.id).collect();
        assert_eq!(ids, vec![1, 3]);
        assert_eq!(tmp_count(&j), 0);
    }

    #[test]
    fn ids_unique_across_restarts() {
        let d = tempfile::tempdir().unwrap();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..3 {
            let j = Journal::open(d.path()).unwrap();
            for _ in 0..(ID_BLOCK + 5) {
                assert!(seen.insert(j.next_id().unwrap()));
            }
        }
        // Data files written without a record (crash before record) are
        // never reused either.
        let j = Journal::open(d.path()).unwrap();
        let high = j.next_id().unwrap() + 5000;
        fs::write(j.data_path(high), b"x").unwrap();
        let j = Journal::open(d.path()).unwrap();
        assert!(j.next_id().unwrap() > high);
    }

    #[test]
    fn damaged_and_foreign_files_are_ignored() {
        let d = tempfile::tempdir().unwrap();
        let j = Journal::open(d.path()).unwrap();
        let a = rec(7, "a", JobState::Queued);
        j.record(&a).unwrap();
        let full = encode(&rec(8, "b", JobState::Queued));
        fs::write(j.dir.join("8.job"), &full[..full.len() / 2]).unwrap();
        fs::write(j.dir.join("9.job"), b"\xff\xfe garbage").unwrap();
        fs::write(j.dir.join("notes.txt"), b"hello").unwrap();
        // A record whose content names another id is not trusted.
        fs::write(
            j.dir.join("10.job"),
            encode(&rec(11, "c", JobState::Queued)),
        )
        .unwrap();
        assert_eq!(j.load_all().unwrap(), vec![a]);
    }

    /// Simulates a crash after each step of `record` (partial temp file,
    /// complete temp file, rename) and of `remove` (record gone, data left),
    /// then reopens the spool like a restarted daemon.
    #[test]
    fn crash_at_every_step() {
        let old = rec(5, "f.bin", JobState::Queued);
        let new = rec(5, "f.bin", JobState::Failed("553".into()));
        let bytes = encode(&new);
        for step in 0..=bytes.len() + 2 {
            let d = tempfile::tempdir().unwrap();
            let j = Journal::open(d.path()).unwrap();
            j.record(&old).unwrap();
            fs::write(j.data_path(5), b"payload").unwrap();
            if step <= bytes.len() {
                // Crash while (or right after) writing the temp file.
                let tmp = j.dir.join(format!("1-{step}.tmp"));
                fs::write(&tmp, &bytes.as_bytes()[..step]).unwrap();
            } else if step == bytes.len() + 1 {
                // Crash after the rename, before the directory fsync.
                let tmp = j.write_temp(bytes.as_bytes()).unwrap();
                fs::rename(tmp, j.record_path(5)).unwrap();
            } else {
                j.record(&new).unwrap();
            }
            drop(j);
            let j = Journal::open(d.path()).unwrap();
            let got = j.load_all().unwrap();
            let want = if step <= bytes.len() { &old } else { &new };
            assert_eq!(got, vec![want.clone()], "step {step}");
            assert_eq!(tmp_count(&j), 0, "temp files cleaned at open");
            assert!(j.data_path(5).exists());

            // remove: crash after the record is gone, before the data is.
            j.remove_record(5).unwrap();
            let j = Journal::open(d.path()).unwrap();
            assert!(j.load_all().unwrap().is_empty());
            assert!(j.next_id().unwrap() > 5, "orphan data id not reused");
            j.remove(5).unwrap();
            assert!(!j.data_path(5).exists());
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Record(u64, u8),
        Remove(u64),
        /// Crash in the middle of recording: a torn temp file of n bytes.
        TornRecord(u64, usize),
        Reopen,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u64..6, 0u8..3).prop_map(|(i, s)| Op::Record(i, s)),
            (0u64..6).prop_map(Op::Remove),
            (0u64..6, 0usize..80).prop_map(|(i, n)| Op::TornRecord(i, n)),
            Just(Op::Reopen),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn replay_matches_model(ops in proptest::collection::vec(op(), 1..30)) {
            let d = tempfile::tempdir().unwrap();
            let mut j = Journal::open(d.path()).unwrap();
            let mut model = std::collections::BTreeMap::new();
            for o in ops {
                match o {
                    Op::Record(id, s) => {
                        let state = match s {
                            0 => JobState::Open,
                            1 => JobState::Queued,
                            _ => JobState::Failed(format!("err {id}")),
                        };
                        let r = rec(id, &format!("p/{id}"), state);
                        j.record(&r).unwrap();
                        model.insert(id, r);
                    }
                    Op::Remove(id) => {
                        j.remove(id).unwrap();
                        model.remove(&id);
                    }
                    Op::TornRecord(id, n) => {
                        let b = encode(&rec(id, "torn", JobState::Queued));
                        let n = n.min(b.len());
                        fs::write(j.dir.join(format!("torn-{id}-{n}.tmp")), &b.as_bytes()[..n]).unwrap();
                    }
                    Op::Reopen => {
                        j = Journal::open(d.path()).unwrap();
                    }
                }
                let got = j.load_all().unwrap();
                let want: Vec<JobRecord> = model.values().cloned().collect();
                prop_assert_eq!(got, want);
            }
        }

        #[test]
        fn codec_roundtrip(id: u64, path in ".{0,60}", size: u64, crc: u32, reason in ".{0,40}", s in 0u8..3) {
            let state = match s { 0 => JobState::Open, 1 => JobState::Queued, _ => JobState::Failed(reason) };
            let r = JobRecord { id, remote_path: path, size, crc, state, wanted: Default::default() };
            let e = encode(&r);
            prop_assert_eq!(decode(&e), Some(r));
            // Every strict prefix (a torn write) is rejected.
            for cut in [0, e.len() / 3, e.len() / 2, e.len().saturating_sub(1)] {
                if cut < e.len() {
                    if let Some(prefix) = e.get(..cut) {
                        prop_assert_eq!(decode(prefix), None);
                    }
                }
            }
        }
    }

    #[test]
    fn deferred_open_records() {
        let d = tempfile::tempdir().unwrap();
        let j = Journal::open(d.path()).unwrap();
        // Closed before the syncer ran: only the Queued record is written.
        j.record_open_deferred(rec(1, "a", JobState::Open));
        assert!(j.has_deferred(1));
        assert_eq!(j.load(1).unwrap(), None, "deferred, not on disk");
        let q = rec(1, "a", JobState::Queued);
        j.record_volatile(&q).unwrap();
        assert!(!j.has_deferred(1));
        assert_eq!(j.write_deferred_open(), 0);
        assert_eq!(j.load(1).unwrap(), Some(q));
        // Renamed while open and still deferred: updated in memory, then
        // written under the new name by the syncer.
        j.record_open_deferred(rec(2, "b", JobState::Open));
        let renamed = rec(2, "b2", JobState::Open);
        j.record(&renamed).unwrap();
        assert_eq!(j.load(2).unwrap(), None);
        assert_eq!(j.write_deferred_open(), 1);
        assert_eq!(j.load(2).unwrap(), Some(renamed));
        // Once written, a later Queued record replaces it as before.
        let q2 = rec(2, "b2", JobState::Queued);
        j.record_volatile(&q2).unwrap();
        assert_eq!(j.load(2).unwrap(), Some(q2));
        // Dropped while deferred: nothing is ever written.
        j.record_open_deferred(rec(3, "c", JobState::Open));
        j.remove(3).unwrap();
        assert_eq!(j.write_deferred_open(), 0);
        assert_eq!(j.load(3).unwrap(), None);
        assert_eq!(tmp_count(&j), 0);
    }

    #[test]
    fn orphan_data_files_are_listed() {
        let d = tempfile::tempdir().unwrap();
        let j = Journal::open(d.path()).unwrap();
        let a = rec(1, "a", JobState::Queued);
        j.record(&a).unwrap();
        for id in [1, 2, 5] {
            fs::write(j.data_path(id), b"x").unwrap();
        }
        assert_eq!(j.orphan_data(&j.load_all().unwrap()).unwrap(), vec![2, 5]);
    }

    #[test]
    fn uploaded_removal_and_stale_records() {
        let d = tempfile::tempdir().unwrap();
        let j = Journal::open(d.path()).unwrap();
        let a = rec(4, "a", JobState::Queued);
        j.record_volatile(&a).unwrap();
        fs::write(j.data_path(4), b"x").unwrap();
        assert!(!j.is_stale_uploaded(&a));
        j.remove_uploaded(4).unwrap();
        assert!(!j.data_path(4).exists());
        assert_eq!(j.load(4).unwrap(), None);
        j.remove_uploaded(4).unwrap(); // idempotent
                                       // A power cut undid the record's removal, not the data's.
        j.record(&a).unwrap();
        assert!(j.is_stale_uploaded(&a));
        // Only Queued records: an Open one without data is kept (reported).
        assert!(!j.is_stale_uploaded(&rec(4, "a", JobState::Open)));
    }

    #[test]
    fn reading_leaves_a_daemons_temp_files_alone() {
        let d = tempfile::tempdir().unwrap();
        let owner = Journal::open(d.path()).unwrap();
        let tmp = owner.write_temp(b"in flight").unwrap();
        let reader = Journal::open_for_reading(d.path()).unwrap();
        assert!(tmp.exists(), "a reader removed a record being written");
        assert!(reader.load_all().unwrap().is_empty());
        drop(Journal::open(d.path()).unwrap());
        assert!(!tmp.exists(), "the owner clears torn records at open");
        let empty = tempfile::tempdir().unwrap();
        assert!(Journal::open_for_reading(empty.path()).is_ok());
        assert!(
            !empty.path().join("journal").exists(),
            "a reader created the journal"
        );
    }
}
