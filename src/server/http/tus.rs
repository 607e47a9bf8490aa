//! tus 1.0.0 (tus.io): core, creation, termination and checksum (crc32).
//!
//! The creation endpoint is a directory's URL; the upload URL is the
//! file's own URL, so HEAD/PATCH/DELETE act on the file. The declared
//! length of each upload is kept in memory (a restart forgets it; HEAD
//! then answers `Upload-Defer-Length: 1`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::{Request, StatusCode};

use super::reply::{self, Resp};
use super::Ctx;
use crate::server::paths::VPath;

/// Declared `Upload-Length` by virtual path.
#[derive(Default)]
pub(crate) struct Lengths(Mutex<HashMap<String, u64>>);

impl Lengths {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets `v` (and everything below it).
    pub fn forget(&self, v: &VPath) {
        let k = v.rel();
        let below = format!("{k}/");
        self.lock().retain(|p, _| p != &k && !p.starts_with(&below));
    }

    /// Follows a MOVE of `from` to `to`.
    pub fn rename(&self, from: &VPath, to: &VPath) {
        let mut m = self.lock();
        if let Some(n) = m.remove(&from.rel()) {
            m.insert(to.rel(), n);
        }
    }
}

/// Adds `Tus-Resumable: 1.0.0`.
pub(crate) fn resumable(h: &mut HeaderMap) {
    h.insert(
        "tus-resumable",
        hyper::header::HeaderValue::from_static("1.0.0"),
    );
}

/// The OPTIONS headers of tus discovery.
pub(crate) fn advertise(h: &mut HeaderMap) {
    resumable(h);
    h.insert(
        "tus-version",
        hyper::header::HeaderValue::from_static("1.0.0"),
    );
    h.insert(
        "tus-extension",
        hyper::header::HeaderValue::from_static("creation,termination,checksum"),
    );
    h.insert(
        "tus-checksum-algorithm",
        hyper::header::HeaderValue::from_static("crc32"),
    );
}

/// HEAD of an upload URL.
pub(crate) async fn head(_ctx: &Arc<Ctx>, _v: &VPath) -> Resp {
    reply::text(StatusCode::NOT_IMPLEMENTED, "tus is not served yet")
}

/// POST to a directory URL: creation.
pub(crate) async fn create(
    _ctx: &Arc<Ctx>,
    _v: &VPath,
    _dir_url: bool,
    _req: Request<Incoming>,
) -> Resp {
    reply::text(StatusCode::NOT_IMPLEMENTED, "tus is not served yet")
}

/// PATCH of an upload URL.
pub(crate) async fn patch(_ctx: &Arc<Ctx>, _v: &VPath, _req: Request<Incoming>) -> Resp {
    reply::text(StatusCode::NOT_IMPLEMENTED, "tus is not served yet")
}
