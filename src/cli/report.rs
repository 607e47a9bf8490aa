//! The status report: one JSON object, the same whether it comes from the
//! running daemon (its live file, [`super::live`]) or from the journal of
//! a spool no daemon runs on. `keyfs status --json` prints it; keyfs(1)
//! documents it (version 1). Fields are only ever added.

use std::path::Path;

use serde::{Deserialize, Serialize};

use keyfs::spool::journal::{JobRecord, JobState, Journal};

/// Bumped only when a field changes meaning or goes away.
pub const VERSION: u32 = 1;

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub version: u32,
    pub spool: String,
    /// Where the daemon is mounted (null without a daemon).
    pub mountpoint: Option<String>,
    /// The mount URL (never a password; null without a daemon).
    pub url: Option<String>,
    /// The running daemon, or null (then `files` comes from the journal).
    pub daemon: Option<Daemon>,
    /// Payload bytes sent since the mount (0 without a daemon).
    pub bytes_sent: u64,
    /// How uploads are verified, and any checksum command the server
    /// refused (null until a worker has connected, or without a daemon).
    #[serde(default)]
    pub checksum: Option<String>,
    pub files: Vec<FileStatus>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Daemon {
    pub pid: u32,
    /// When the daemon wrote this report (Unix time, seconds).
    pub updated: f64,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Open for writing in the mount.
    Writing,
    /// Closed, waiting for an upload worker.
    Queued,
    /// A worker is connecting, deciding where to resume, or sending.
    Uploading,
    /// Sent; the server's size and CRC are being checked.
    Verifying,
    /// The last attempt failed (`last_error`); the next starts after `retry_in`.
    Retrying,
    /// A permanent error (`last_error`); the spooled copy is kept.
    Failed,
    /// Was open for writing when a daemon stopped; kept, not uploaded.
    Kept,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Writing => "writing",
            State::Queued => "queued",
            State::Uploading => "uploading",
            State::Verifying => "verifying",
            State::Retrying => "retrying",
            State::Failed => "failed",
            State::Kept => "kept",
        }
    }
    /// Still to be uploaded by a running daemon.
    pub fn pending(self) -> bool {
        !matches!(self, State::Failed | State::Kept)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FileStatus {
    /// Path inside the mount, which is the path on the server from the
    /// URL's directory (`dir/b.txt`).
    pub path: String,
    pub state: State,
    /// The spool's job id (null while writing).
    pub id: Option<u64>,
    /// Bytes the server holds so far (of this version).
    pub bytes_sent: u64,
    pub bytes_total: u64,
    /// Upload rate over the last seconds, bytes per second.
    pub rate: Option<f64>,
    /// Seconds left at that rate.
    pub eta_seconds: Option<f64>,
    /// Attempts started since the mount.
    pub tries: u32,
    /// While retrying: seconds until the next attempt.
    pub retry_in: Option<f64>,
    pub last_error: Option<String>,
    /// The file's CRC-32 (its key), `0x` + 8 hex digits (null while writing).
    pub crc: Option<String>,
}

impl FileStatus {
    /// A job as the journal records it (no daemon).
    pub fn from_record(r: &JobRecord) -> FileStatus {
        let (state, err) = match &r.state {
            JobState::Queued => (State::Queued, None),
            JobState::Open => (
                State::Kept,
                Some("was open for writing when the daemon stopped; not uploaded".to_string()),
            ),
            JobState::Failed(why) => (State::Failed, Some(why.clone())),
        };
        FileStatus {
            path: r.remote_path.clone(),
            state,
            id: Some(r.id),
            bytes_sent: 0,
            bytes_total: r.size,
            rate: None,
            eta_seconds: None,
            tries: 0,
            retry_in: None,
            last_error: err,
            crc: Some(format!("0x{:08X}", r.crc)),
        }
    }
}

impl Report {
    /// What the spool's journal holds (read directly: records are replaced
    /// atomically, so this is safe while a daemon runs).
    pub fn from_journal(spool: &Path) -> Result<Report, String> {
        let mut files = Vec::new();
        if spool.join("journal").is_dir() {
            let recs = Journal::open_for_reading(spool)
                .and_then(|j| j.load_all())
                .map_err(|e| format!("{}: cannot read the journal: {e}", spool.display()))?;
            let mut recs = recs;
            recs.sort_by_key(|r| r.id);
            files = recs.iter().map(FileStatus::from_record).collect();
        }
        Ok(Report {
            checksum: None,
            version: VERSION,
            spool: spool.display().to_string(),
            files,
            ..Report::default()
        })
    }

    /// Files still to be uploaded (writing, queued, uploading, ...).
    pub fn pending(&self) -> usize {
        self.files.iter().filter(|f| f.state.pending()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_names_are_the_documented_ones() {
        let r = Report {
            checksum: None,
            version: VERSION,
            spool: "/s".into(),
            files: vec![FileStatus {
                path: "/a".into(),
                state: State::Retrying,
                id: Some(3),
                bytes_sent: 5,
                bytes_total: 10,
                rate: None,
                eta_seconds: None,
                tries: 2,
                retry_in: Some(1.5),
                last_error: Some("450 busy".into()),
                crc: Some("0x0000ABCD".into()),
            }],
            ..Report::default()
        };
        let v: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["daemon"], serde_json::Value::Null);
        assert_eq!(v["files"][0]["state"], "retrying");
        assert_eq!(v["files"][0]["bytes_total"], 10);
        assert_eq!(v["files"][0]["last_error"], "450 busy");
        let back: Report = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
    }
}
