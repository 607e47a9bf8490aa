//! A filesystem core (no FUSE) against a real in-process keyftpd on
//! 127.0.0.1:0, for the `fs_*` tests that drive `keyfs::fs::Core` directly.
//! Included with `#[path]` so a test compiles only this helper.
#![allow(dead_code)] // each test file uses its own subset

use std::sync::Arc;
use std::time::Duration;

use keyfs::fs::{Core, FsConfig};
use keyfs::remote::Endpoint;
use keyfs::server::{Server, ServerConfig, ServerHandle};
use keyfs::upload::resume::Policy;

/// How long a test waits for an upload or a state change.
pub const WAIT: Duration = Duration::from_secs(30);

pub struct Rig {
    /// The server's root directory.
    pub root: tempfile::TempDir,
    /// The core's spool directory.
    pub spool: tempfile::TempDir,
    server: Option<ServerHandle>,
    pub port: u16,
}

impl Rig {
    pub fn new() -> Rig {
        let root = tempfile::tempdir().unwrap();
        let cfg = ServerConfig::new(root.path().to_path_buf(), "127.0.0.1:0".parse().unwrap())
            .with_user("u", "pw");
        let server = Server::bind(cfg).expect("bind keyftpd");
        let port = server.local_addr().port();
        Rig {
            root,
            spool: tempfile::tempdir().unwrap(),
            server: Some(server.spawn()),
            port,
        }
    }

    /// A core with two upload workers.
    pub fn core(&self) -> Arc<Core> {
        self.core_bw(None)
    }

    /// The server's copy of `rel`, if any.
    pub fn server_file(&self, rel: &str) -> Option<Vec<u8>> {
        std::fs::read(self.root.path().join(rel)).ok()
    }

    /// A core with two upload workers, uploads capped at `bwlimit` bytes/s
    /// when given (to catch one in flight).
    pub fn core_bw(&self, bwlimit: Option<u64>) -> Arc<Core> {
        self.core_with(self.port, 2, bwlimit)
    }

    /// A core that talks to the server through `port` (the server's own, or
    /// a proxy's in front of it).
    pub fn core_with(&self, port: u16, workers: usize, bwlimit: Option<u64>) -> Arc<Core> {
        Core::start(FsConfig {
            endpoint: Endpoint {
                scheme: Default::default(),
                host: "127.0.0.1".into(),
                port,
                user: "u".into(),
                password: "pw".into(),
                root: "/".into(),
                tls: Default::default(),
            },
            spool_dir: self.spool.path().to_path_buf(),
            workers,
            bwlimit,
            policy: Policy::Safe,
            uid: 0,
            gid: 0,
            timeout: Duration::from_secs(10),
            fsync_timeout: WAIT,
        })
        .expect("core start")
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if let Some(h) = self.server.take() {
            h.shutdown();
        }
    }
}

/// Deterministic pseudo-random bytes (xorshift), different per seed.
pub fn data(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2654435761) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}
