//! The background uploader: N workers, each with its own FTP session, take
//! queued jobs, run the KEY / same-name prompt / KEY NULL / decide / REST+STOR
//! flow, verify size and CRC, then drop the spooled copy.
//! `resume` holds the pure resume decision.
//!
//! OWNER: engine helper. The signatures below are the contract the fs uses.
pub mod resume;

use std::sync::Arc;
use std::time::Duration;

use crate::remote::Endpoint;
use crate::spool::journal::{JobRecord, Journal};

pub struct UploadConfig {
    pub endpoint: Endpoint,
    /// Worker threads, each with its own connection (default 2).
    pub workers: usize,
    /// Upload bandwidth cap in bytes per second, shared by all workers.
    pub bwlimit: Option<u64>,
    pub policy: resume::Policy,
    /// Called after a job is uploaded and verified and its spooled copy dropped.
    pub on_complete: Option<Arc<dyn Fn(&JobRecord) + Send + Sync>>,
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
}

/// A handle to the uploader; cheap to clone.
#[derive(Clone)]
pub struct Uploader {
    _inner: Arc<()>,
}

impl Uploader {
    /// Starts the workers and queues every `Queued` job found in the journal.
    pub fn start(_cfg: UploadConfig, _journal: Arc<Journal>) -> std::io::Result<Uploader> {
        unimplemented!("engine helper")
    }
    /// Records `rec` as Queued in the journal and queues it. Never waits on the network.
    /// A pending job for the same remote path is cancelled (its data dropped).
    pub fn submit(&self, _rec: JobRecord) -> std::io::Result<()> {
        unimplemented!("engine helper")
    }
    /// The file was deleted in the mount: drop its pending job and data.
    pub fn cancel(&self, _remote_path: &str) {
        unimplemented!("engine helper")
    }
    /// The pending file was renamed in the mount: upload it under the new name.
    pub fn rename(&self, _from: &str, _to: &str) {
        unimplemented!("engine helper")
    }
    /// For fsync: waits until the job for `remote_path` is uploaded and verified.
    /// Ok(()) at once when nothing is pending for that path.
    pub fn wait(&self, _remote_path: &str, _timeout: Duration) -> Result<(), UploadError> {
        unimplemented!("engine helper")
    }
    pub fn status(&self) -> Vec<JobStatus> {
        unimplemented!("engine helper")
    }
    /// Stops the workers; pending jobs stay in the journal.
    pub fn shutdown(&self) {
        unimplemented!("engine helper")
    }
}
