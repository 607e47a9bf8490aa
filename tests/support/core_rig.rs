//! A filesystem core (no FUSE) against a real in-process keyftpd on
//! 127.0.0.1:0, for the `fs_*` tests that drive `keyfs::fs::Core` directly.
//! Included with `#[path]` (and `#[macro_use]` for [`over_both!`]) so a
//! test compiles only this helper.
//!
//! The core talks FTP to keyftpd, or HTTP to its HTTP face on the same
//! root: [`over_both!`] turns each `fn name() {..}` into the tests
//! `name::ftp` and `name::http`, and [`Rig::new`] serves the transport of
//! the test that calls it.
#![allow(dead_code)] // each test file uses its own subset

use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use keyfs::fs::{Core, FsConfig};
use keyfs::server::http::{HttpConfig, HttpHandle, HttpServer};
use keyfs::server::{Server, ServerConfig, ServerHandle};
use keyfs::transport::{Endpoint, Scheme};
use keyfs::upload::resume::Policy;

thread_local! {
    /// The transport of the test running on this thread (each test has
    /// its own thread); FTP unless [`over_both!`] says otherwise.
    static TRANSPORT: Cell<Scheme> = const { Cell::new(Scheme::Ftp) };
}

/// From now on [`Rig::new`] on this thread serves `scheme`.
pub fn set_transport(scheme: Scheme) {
    TRANSPORT.with(|t| t.set(scheme));
}

/// Runs `f` with [`Rig::new`] serving `scheme`.
pub fn with_transport(scheme: Scheme, f: impl FnOnce()) {
    set_transport(scheme);
    f();
}

/// The transport of this test (for messages).
pub fn transport() -> Scheme {
    TRANSPORT.with(|t| t.get())
}

/// Each `fn name() { .. }` becomes two tests, `name::ftp` and
/// `name::http`, running the same body over each transport.
#[macro_export]
macro_rules! over_both {
    ($( $(#[$m:meta])* fn $name:ident() $body:block )*) => { $(
        $(#[$m])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            fn scenario() $body
            #[test]
            fn ftp() {
                $crate::core_rig::with_transport(keyfs::transport::Scheme::Ftp, scenario)
            }
            #[test]
            fn http() {
                $crate::core_rig::with_transport(keyfs::transport::Scheme::Http, scenario)
            }
        }
    )* };
}

/// How long a test waits for an upload or a state change.
pub const WAIT: Duration = Duration::from_secs(30);

pub struct Rig {
    /// The server's root directory.
    pub root: tempfile::TempDir,
    /// The core's spool directory.
    pub spool: tempfile::TempDir,
    server: Option<ServerHandle>,
    http: Option<HttpHandle>,
    /// The port the core talks to: keyftpd's FTP port, or its HTTP port
    /// for a test over HTTP.
    pub port: u16,
    pub scheme: Scheme,
}

impl Rig {
    pub fn new() -> Rig {
        let root = tempfile::tempdir().unwrap();
        let cfg = ServerConfig::new(root.path().to_path_buf(), "127.0.0.1:0".parse().unwrap())
            .with_user("u", "pw");
        let server = Server::bind(cfg).expect("bind keyftpd");
        let scheme = transport();
        let (port, http) = match scheme {
            Scheme::Ftp => (server.local_addr().port(), None),
            Scheme::Http => {
                let h =
                    HttpServer::beside(&server, HttpConfig::new("127.0.0.1:0".parse().unwrap()))
                        .expect("bind keyftpd's HTTP face");
                let port = h.local_addr().expect("a plain HTTP listener").port();
                (port, Some(h.spawn().expect("start keyftpd's HTTP face")))
            }
        };
        Rig {
            root,
            spool: tempfile::tempdir().unwrap(),
            server: Some(server.spawn()),
            http,
            port,
            scheme,
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

    /// Where a client reaches the server, over this test's transport.
    pub fn endpoint(&self) -> Endpoint {
        self.endpoint_at(self.port)
    }

    /// The endpoint through `port` (the server's own, or a proxy's).
    pub fn endpoint_at(&self, port: u16) -> Endpoint {
        Endpoint {
            scheme: self.scheme,
            host: "127.0.0.1".into(),
            port,
            user: "u".into(),
            password: "pw".into(),
            root: "/".into(),
            tls: Default::default(),
        }
    }

    /// A core that talks to the server through `port` (the server's own, or
    /// a proxy's in front of it).
    pub fn core_with(&self, port: u16, workers: usize, bwlimit: Option<u64>) -> Arc<Core> {
        Core::start(FsConfig {
            endpoint: self.endpoint_at(port),
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
        // The stop flag is shared: the HTTP face ends with the FTP one.
        if let Some(h) = self.http.take() {
            h.join();
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

/// Writes `body` to a new file `n` in directory `parent` and closes it.
pub fn put_in(core: &Core, parent: u64, n: &str, body: &[u8]) {
    let (_, o) = core
        .create(parent, std::ffi::OsStr::new(n), libc::O_WRONLY)
        .unwrap();
    core.write(o.fh, 0, body).unwrap();
    core.release(o.fh).unwrap();
}

/// Every byte of the file at `path` ("dir/name") read through the core,
/// looking each component up (`None` when it does not exist).
pub fn read_path(core: &Core, path: &str) -> Option<Vec<u8>> {
    let mut ino = keyfs::fs::inode::ROOT;
    for part in path.split('/') {
        ino = core.lookup(ino, std::ffi::OsStr::new(part)).ok()?.ino;
    }
    let o = core.open(ino, libc::O_RDONLY).unwrap();
    let mut out = Vec::new();
    loop {
        let c = core.read(o.fh, out.len() as u64, 64 * 1024).unwrap();
        if c.is_empty() {
            break;
        }
        out.extend_from_slice(&c);
    }
    core.release(o.fh).unwrap();
    Some(out)
}

/// Waits until the upload of `path` has sent some bytes (it is in flight).
pub fn wait_in_flight(core: &Core, path: &str) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let st = core.uploader().status();
        if st
            .iter()
            .any(|j| j.record.remote_path == path && j.sent > 0)
        {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{path} never started");
        std::thread::sleep(Duration::from_millis(20));
    }
}
