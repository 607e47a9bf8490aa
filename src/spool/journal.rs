//! The upload journal: one record per job, written atomically (temp file,
//! fsync, rename, fsync of the directory), so a restarted daemon finds every
//! pending upload. OWNER: engine helper; signatures are the contract.

use std::io;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobState {
    /// Still open for writing in the mount. After a crash such a file is
    /// reported and kept, never uploaded half-written nor deleted.
    Open,
    /// Closed and waiting for (or in) upload.
    Queued,
    /// A permanent error (e.g. 553); the spooled copy is kept.
    Failed(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRecord {
    pub id: u64,
    /// Path relative to the mount root, `/`-separated.
    pub remote_path: String,
    pub size: u64,
    pub crc: u32,
    pub state: JobState,
}

pub struct Journal {
    _dir: PathBuf,
}

impl Journal {
    /// Opens (creating if needed) the journal under `spool_dir`.
    pub fn open(_spool_dir: &Path) -> io::Result<Journal> {
        unimplemented!("engine helper")
    }
    /// Where the data of job `id` lives in the spool.
    pub fn data_path(&self, _id: u64) -> PathBuf {
        unimplemented!("engine helper")
    }
    /// A fresh job id, unique across restarts of the same spool.
    pub fn next_id(&self) -> io::Result<u64> {
        unimplemented!("engine helper")
    }
    /// Writes or replaces the record atomically and durably.
    pub fn record(&self, _rec: &JobRecord) -> io::Result<()> {
        unimplemented!("engine helper")
    }
    /// Removes the record and the job's data file.
    pub fn remove(&self, _id: u64) -> io::Result<()> {
        unimplemented!("engine helper")
    }
    /// Every record, ignoring (and reporting) torn or foreign files.
    pub fn load_all(&self) -> io::Result<Vec<JobRecord>> {
        unimplemented!("engine helper")
    }
}
