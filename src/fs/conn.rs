//! Server connections used by the filesystem (the uploader has its own):
//! one dedicated *namespace* connection for listings and mkdir, rmdir,
//! delete and rename,
//! reconnected on a network failure, and a small pool of connections for
//! downloads (reads of remote files, fetches into the spool).
//!
//! The namespace connection is separate from every data path so `ls`
//! answers while a large read or upload runs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::transport::{Conn, Endpoint, RemoteError};

/// Idle download connections kept for reuse.
const POOL_IDLE: usize = 2;

/// Cheap to clone: clones share the connections (a read-ahead thread
/// keeps one to reconnect and to give its connection back).
#[derive(Clone)]
pub struct Conns {
    inner: Arc<Inner>,
}

struct Inner {
    ep: Endpoint,
    timeout: Duration,
    ns: Mutex<Option<Conn>>,
    idle: Mutex<Vec<Conn>>,
}

fn transient(e: &RemoteError) -> bool {
    e.is_link_lost()
}

impl Conns {
    pub fn new(ep: Endpoint, timeout: Duration, first: Option<Conn>) -> Conns {
        Conns {
            inner: Arc::new(Inner {
                ep,
                timeout,
                ns: Mutex::new(first),
                idle: Mutex::new(Vec::new()),
            }),
        }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.inner.ep
    }

    /// Runs `op` on the namespace connection, connecting if needed. On a
    /// network failure the connection is dropped and `op` is tried once more
    /// on a fresh one.
    pub fn ns<T>(
        &self,
        mut op: impl FnMut(&mut Conn) -> Result<T, RemoteError>,
    ) -> Result<T, RemoteError> {
        let mut guard = self.inner.ns.lock().unwrap_or_else(|e| e.into_inner());
        for attempt in 0..2 {
            if guard.is_none() {
                *guard = Some(Conn::connect(&self.inner.ep, self.inner.timeout)?);
            }
            let Some(s) = guard.as_mut() else { continue };
            match op(s) {
                Ok(v) => return Ok(v),
                Err(e) if transient(&e) && attempt == 0 => {
                    log::info!("namespace connection lost ({e}); reconnecting");
                    *guard = None;
                }
                Err(e) => {
                    if transient(&e) {
                        *guard = None;
                    }
                    return Err(e);
                }
            }
        }
        Err(RemoteError::Protocol("reconnect failed".into()))
    }

    /// A connection for a download: an idle one or a new one.
    pub fn take(&self) -> Result<Conn, RemoteError> {
        let idle = self
            .inner
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop();
        match idle {
            Some(s) => Ok(s),
            None => Conn::connect(&self.inner.ep, self.inner.timeout),
        }
    }

    /// Returns a connection in a known-good state to the pool.
    pub fn give_back(&self, s: Conn) {
        let mut idle = self.inner.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < POOL_IDLE {
            idle.push(s);
        }
    }
}
