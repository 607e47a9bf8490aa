//! Helpers for uploader tests: a spool with a journal, spooled jobs, and an
//! uploader with short test delays.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use keyfs::spool::journal::{JobRecord, JobState, Journal};
use keyfs::transport::Endpoint;
use keyfs::upload::resume::Policy;
use keyfs::upload::{Tuning, UploadConfig, Uploader};

pub struct Spool {
    pub dir: tempfile::TempDir,
    pub journal: Arc<Journal>,
}

impl Spool {
    pub fn new() -> Spool {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = Arc::new(Journal::open(dir.path()).expect("journal"));
        Spool { dir, journal }
    }

    /// Spools `data` as a new job for `path` (not yet submitted).
    pub fn job(&self, path: &str, data: &[u8]) -> JobRecord {
        let id = self.journal.next_id().expect("id");
        std::fs::write(self.journal.data_path(id), data).expect("spool write");
        JobRecord {
            id,
            remote_path: path.into(),
            size: data.len() as u64,
            crc: crc32fast::hash(data),
            state: JobState::Queued,
            wanted: Default::default(),
        }
    }
}

pub fn tuning() -> Tuning {
    Tuning {
        io_timeout: Duration::from_secs(5),
        slow_reply_timeout: Duration::from_secs(10),
        backoff_initial: Duration::from_millis(50),
        backoff_max: Duration::from_millis(500),
        chunk_size: 64 * 1024,
    }
}

#[allow(unused_imports)] // not every test that uses `support` needs it
pub use super::core_rig::data;

pub struct Started {
    pub up: Uploader,
    pub done: Arc<Mutex<Vec<JobRecord>>>,
}

pub fn start(
    ep: Endpoint,
    spool: &Spool,
    workers: usize,
    bwlimit: Option<u64>,
    policy: Policy,
) -> Started {
    start_tuned(ep, spool, workers, bwlimit, policy, tuning())
}

pub fn start_tuned(
    ep: Endpoint,
    spool: &Spool,
    workers: usize,
    bwlimit: Option<u64>,
    policy: Policy,
    tuning: Tuning,
) -> Started {
    let done = Arc::new(Mutex::new(Vec::new()));
    let d2 = done.clone();
    let cfg = UploadConfig {
        endpoint: ep,
        workers,
        bwlimit,
        policy,
        on_complete: Some(Arc::new(move |r: &JobRecord| {
            d2.lock().unwrap().push(r.clone());
            None
        })),
    };
    let up = Uploader::start_tuned(cfg, spool.journal.clone(), tuning).expect("start");
    Started { up, done }
}

/// A generous deadline for polls: CI runs on two loaded cores, and a poll
/// that succeeds returns at once anyway.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Waits (up to [`PATIENCE`]) until a job has sent more than `n` bytes.
pub fn sent_more_than(up: &Uploader, n: u64) -> bool {
    eventually(PATIENCE, || up.status().iter().any(|j| j.sent > n))
}

/// Polls `f` until true or the deadline; returns whether it became true.
pub fn eventually(max: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + max;
    while std::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// keyftpd in this process on 127.0.0.1:0 (user `u`, password `pw`).
pub struct InProcKeyftpd {
    pub root: tempfile::TempDir,
    handle: Option<keyfs::server::ServerHandle>,
    pub port: u16,
}

impl InProcKeyftpd {
    pub fn start() -> InProcKeyftpd {
        let root = tempfile::tempdir().expect("tempdir");
        let cfg = keyfs::server::ServerConfig::new(
            root.path().to_path_buf(),
            "127.0.0.1:0".parse().expect("addr"),
        )
        .with_user("u", "pw");
        let server = keyfs::server::Server::bind(cfg).expect("bind keyftpd");
        let port = server.local_addr().port();
        InProcKeyftpd {
            root,
            handle: Some(server.spawn()),
            port,
        }
    }

    pub fn endpoint(&self) -> Endpoint {
        endpoint(self.port, "u", "pw")
    }

    pub fn read(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.root.path().join(rel)).unwrap_or_default()
    }
}

impl Drop for InProcKeyftpd {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown();
        }
    }
}

pub fn endpoint(port: u16, user: &str, password: &str) -> Endpoint {
    Endpoint {
        scheme: Default::default(),
        host: "127.0.0.1".into(),
        port,
        user: user.into(),
        password: password.into(),
        root: "/".into(),
        tls: Default::default(),
    }
}
