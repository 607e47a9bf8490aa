//! tus 1.0.0 (tus.io): core, creation, termination and checksum (crc32).
//!
//! The creation endpoint is a directory's URL (`POST /DIR/` with
//! `Upload-Length` and `Upload-Metadata: filename <b64>`); the upload URL
//! is the file's own URL, so HEAD/PATCH/DELETE act on the file and a client
//! that knows the file's name can always find its upload again.
//!
//! Beyond tusd: metadata `key <b64 of 0x1A2B3C4D>` binds the upload to the
//! whole file's CRC-32, as KEY does over FTP. A creation with a key that a
//! partial of that path already carries returns that upload (201 with its
//! `Upload-Offset`), so a client that lost its local state resumes anyway;
//! a different key replaces the partial. With a key, the upload is complete
//! when the file's CRC equals it; without, when it reaches its length.
//!
//! The declared length is kept beside the file (an extended attribute
//! where the file system has them) and in memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Request, StatusCode};

use super::auth::Who;
use super::backend::{BackendError, Begin, UpOpts, UpState};
use super::reply::{self, Resp};
use super::webdav::encode_path;
use super::Ctx;
use crate::key::Key;
use crate::server::paths::{PathError, VPath};

/// Declared `Upload-Length` by virtual path, for file systems without
/// extended attributes (and as a cache).
#[derive(Default)]
pub(crate) struct Lengths(Mutex<HashMap<String, u64>>);

impl Lengths {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, v: &VPath) -> Option<u64> {
        self.lock().get(&v.rel()).copied()
    }

    fn set(&self, v: &VPath, n: u64) {
        let mut m = self.lock();
        if m.len() > 100_000 {
            m.clear();
        }
        m.insert(v.rel(), n);
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
    h.insert("tus-resumable", HeaderValue::from_static("1.0.0"));
}

/// The OPTIONS headers of tus discovery.
pub(crate) fn advertise(h: &mut HeaderMap) {
    resumable(h);
    h.insert("tus-version", HeaderValue::from_static("1.0.0"));
    h.insert(
        "tus-extension",
        HeaderValue::from_static("creation,termination,checksum"),
    );
    h.insert("tus-checksum-algorithm", HeaderValue::from_static("crc32"));
}

/// 412 unless the client speaks tus 1.0.0.
fn version(h: &HeaderMap) -> Result<(), Resp> {
    match h.get("tus-resumable").and_then(|v| v.to_str().ok()) {
        Some("1.0.0") => Ok(()),
        _ => {
            let mut r = reply::text(
                StatusCode::PRECONDITION_FAILED,
                "Tus-Resumable must be 1.0.0",
            );
            r.headers_mut()
                .insert("tus-version", HeaderValue::from_static("1.0.0"));
            Err(r)
        }
    }
}

fn set(h: &mut HeaderMap, name: &'static str, v: impl ToString) {
    if let Ok(v) = HeaderValue::from_str(&v.to_string()) {
        h.insert(name, v);
    }
}

/// Parses `Upload-Metadata`: `name b64, name b64, name`.
pub(crate) fn parse_metadata(s: &str) -> Result<HashMap<String, String>, &'static str> {
    let mut out = HashMap::new();
    for pair in s.split(',') {
        let pair = pair.trim();
        if pair.is_empty() {
            continue;
        }
        let (k, v) = match pair.split_once(' ') {
            Some((k, v)) => (k, v.trim()),
            None => (pair, ""),
        };
        let raw = base64::engine::general_purpose::STANDARD
            .decode(v)
            .map_err(|_| "Upload-Metadata value is not base64")?;
        let v = String::from_utf8(raw).map_err(|_| "Upload-Metadata value is not UTF-8")?;
        out.insert(k.to_string(), v);
    }
    Ok(out)
}

/// Parses `Upload-Checksum: crc32 <b64 of 4 bytes, big-endian>`.
pub(crate) fn parse_checksum(s: &str) -> Result<u32, &'static str> {
    let (alg, b64) = s
        .trim()
        .split_once(' ')
        .ok_or("malformed Upload-Checksum")?;
    if !alg.eq_ignore_ascii_case("crc32") {
        return Err("unsupported checksum algorithm (crc32 only)");
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| "malformed Upload-Checksum")?;
    let b: [u8; 4] = raw
        .try_into()
        .map_err(|_| "crc32 checksum must be 4 bytes")?;
    Ok(u32::from_be_bytes(b))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Resp> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| reply::text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()))
}

fn declared(ctx: &Arc<Ctx>, v: &VPath) -> Option<u64> {
    ctx.tus.get(v).or_else(|| ctx.backend.declared_len(v))
}

/// HEAD of an upload URL: its offset and length.
pub(crate) async fn head(ctx: &Arc<Ctx>, v: &VPath) -> Resp {
    let be = ctx.backend.clone();
    let v2 = v.clone();
    let (st, stored_len) = match blocking(move || (be.state(&v2), be.declared_len(&v2))).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let st = match st {
        Ok(st) if st.size > 0 || st.key.is_some() || stored_len.is_some() => st,
        Ok(_) => return reply::status(StatusCode::NOT_FOUND),
        Err(BackendError::Path(PathError::NotFound)) => {
            return reply::status(StatusCode::NOT_FOUND)
        }
        Err(e) => return reply::backend_error("HEAD", e),
    };
    let total = ctx.tus.get(v).or(stored_len);
    let mut r = reply::status(StatusCode::OK);
    let h = r.headers_mut();
    resumable(h);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    set(h, "upload-offset", st.size);
    match total {
        Some(n) => set(h, "upload-length", n),
        None if st.complete => set(h, "upload-length", st.size),
        None => set(h, "upload-defer-length", 1),
    }
    if let Some(k) = st.key {
        let b = base64::engine::general_purpose::STANDARD.encode(k.to_string());
        set(h, "upload-metadata", format!("key {b}"));
    }
    r
}

/// POST to a directory URL: creation (or, with a matching key, the
/// existing partial upload of that name).
pub(crate) async fn create(
    ctx: &Arc<Ctx>,
    dir: &VPath,
    dir_url: bool,
    req: Request<Incoming>,
    who: &Who,
) -> Resp {
    if let Err(r) = version(req.headers()) {
        return r;
    }
    let h = req.headers();
    let total = match h.get("upload-length").and_then(|v| v.to_str().ok()) {
        Some(s) => match super::seed::parse_offset(s) {
            Ok(n) => n,
            Err(_) => return reply::text(StatusCode::BAD_REQUEST, "bad Upload-Length"),
        },
        None => {
            return reply::text(
                StatusCode::BAD_REQUEST,
                "Upload-Length is required (deferred lengths are not supported)",
            )
        }
    };
    let meta = match h.get("upload-metadata").map(|v| v.to_str()) {
        Some(Ok(s)) => match parse_metadata(s) {
            Ok(m) => m,
            Err(why) => return reply::text(StatusCode::BAD_REQUEST, why),
        },
        Some(Err(_)) => return reply::text(StatusCode::BAD_REQUEST, "bad Upload-Metadata"),
        None => HashMap::new(),
    };
    let Some(name) = meta.get("filename").map(|n| n.as_str()) else {
        return reply::text(StatusCode::BAD_REQUEST, "Upload-Metadata needs a filename");
    };
    if let Err(why) = super::seed::plain_name(name) {
        return reply::text(StatusCode::BAD_REQUEST, why);
    }
    let key = match meta.get("key").map(|k| super::seed::parse_key(k)) {
        None => None,
        Some(Ok(k)) => k,
        Some(Err(why)) => return reply::text(StatusCode::BAD_REQUEST, why),
    };
    match super::webdav::stat(ctx, dir).await {
        Ok(e) if e.dir => {}
        Ok(_) if !dir_url => {
            return reply::text(
                StatusCode::BAD_REQUEST,
                "the tus creation endpoint is a directory URL",
            )
        }
        Ok(_) => return reply::text(StatusCode::CONFLICT, "not a directory"),
        Err(r) => return r,
    }
    let v = match dir.resolve(name) {
        Ok(v) => v,
        Err(e) => return reply::text(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    // The key extension: the same file's partial is this upload.
    let st = match existing(ctx, &v, key, total).await {
        Ok(Some(st)) => st,
        Ok(None) => {
            let up = match super::body::begin_with(
                ctx,
                &v,
                Begin::Replace(key),
                UpOpts {
                    total: Some(total),
                    body_crc: None,
                },
                who.name(),
            )
            .await
            {
                Ok(u) => u,
                Err(e) => return reply::backend_error("tus creation", e),
            };
            match up.finish(true).await {
                Some(end) => end.state,
                None => {
                    return reply::text(StatusCode::INTERNAL_SERVER_ERROR, "upload thread failed")
                }
            }
        }
        Err(r) => return r,
    };
    ctx.tus.set(&v, total);
    let be = ctx.backend.clone();
    let v2 = v.clone();
    let _ = blocking(move || be.set_declared_len(&v2, total)).await;
    let mut r = reply::state(StatusCode::CREATED, &st);
    let h = r.headers_mut();
    resumable(h);
    set(h, "location", encode_path(&v.display()));
    set(h, "upload-offset", st.size);
    r
}

/// The state of `v` when a partial with `key` and at most `total` bytes is
/// there to be continued.
async fn existing(
    ctx: &Arc<Ctx>,
    v: &VPath,
    key: Option<Key>,
    total: u64,
) -> Result<Option<UpState>, Resp> {
    let Some(key) = key else {
        return Ok(None);
    };
    let be = ctx.backend.clone();
    let v2 = v.clone();
    match blocking(move || be.state(&v2)).await? {
        Ok(st) if st.key == Some(key) && st.size <= total => Ok(Some(st)),
        Ok(_) => Ok(None),
        Err(e) => Err(reply::backend_error("tus creation", e)),
    }
}

/// PATCH of an upload URL: the bytes at `Upload-Offset`.
pub(crate) async fn patch(ctx: &Arc<Ctx>, v: &VPath, req: Request<Incoming>, who: &Who) -> Resp {
    if let Err(r) = version(req.headers()) {
        return r;
    }
    let h = req.headers();
    if h.get(header::CONTENT_TYPE).and_then(|c| c.to_str().ok())
        != Some("application/offset+octet-stream")
    {
        return reply::text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/offset+octet-stream",
        );
    }
    let offset = match h.get("upload-offset").and_then(|o| o.to_str().ok()) {
        Some(s) => match super::seed::parse_offset(s) {
            Ok(n) => n,
            Err(why) => return reply::text(StatusCode::BAD_REQUEST, why),
        },
        None => return reply::text(StatusCode::BAD_REQUEST, "Upload-Offset is required"),
    };
    let body_crc = match h.get("upload-checksum").map(|c| c.to_str()) {
        None => None,
        Some(Ok(s)) => match parse_checksum(s) {
            Ok(c) => Some(c),
            Err(why) => return reply::text(StatusCode::BAD_REQUEST, why),
        },
        Some(Err(_)) => return reply::text(StatusCode::BAD_REQUEST, "malformed Upload-Checksum"),
    };
    let total = declared(ctx, v);
    let body_len = h
        .get(header::CONTENT_LENGTH)
        .and_then(|l| l.to_str().ok())
        .and_then(|l| l.parse::<u64>().ok());
    if let (Some(t), Some(n)) = (total, body_len) {
        if offset.saturating_add(n) > t {
            return reply::text(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the body runs past Upload-Length",
            );
        }
    }
    let how = Begin::Resume {
        offset,
        expect: None,
    };
    let up =
        match super::body::begin_with(ctx, v, how, UpOpts { total, body_crc }, who.name()).await {
            Ok(u) => u,
            Err(BackendError::Conflict(st)) => {
                let mut r = reply::state(StatusCode::CONFLICT, &st);
                set(r.headers_mut(), "upload-offset", st.size);
                return r;
            }
            Err(BackendError::Path(PathError::NotFound)) => {
                return reply::text(StatusCode::NOT_FOUND, "no such upload")
            }
            Err(e) => return reply::backend_error("PATCH", e),
        };
    let (end, stop) = up.pump(req.into_body(), ctx.cfg.timeout).await;
    let Some(end) = end else {
        return reply::text(StatusCode::INTERNAL_SERVER_ERROR, "upload thread failed");
    };
    if let Some(e) = &end.error {
        return reply::store_error("PATCH", e);
    }
    let mut r = if end.checksum_mismatch && stop.is_none() {
        reply::text(
            StatusCode::from_u16(460).unwrap_or(StatusCode::BAD_REQUEST),
            "checksum mismatch; the bytes were dropped",
        )
    } else if stop == Some(super::body::Stop::Timeout) {
        reply::text(StatusCode::REQUEST_TIMEOUT, "request body timed out")
    } else if stop == Some(super::body::Stop::TakenOver) {
        reply::text(StatusCode::CONFLICT, super::body::TAKEN_OVER)
    } else {
        reply::status(StatusCode::NO_CONTENT)
    };
    set(r.headers_mut(), "upload-offset", end.state.size);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_and_checksums() {
        let m =
            parse_metadata("filename d29ybGRfZG9taW5hdGlvbi5wZGY=,is_confidential, key MHgxMjM0")
                .expect("parses");
        assert_eq!(m["filename"], "world_domination.pdf");
        assert_eq!(m["is_confidential"], "");
        assert_eq!(m["key"], "0x1234");
        assert!(parse_metadata("filename !!!").is_err());
        // crc32("123456789") = 0xCBF43926
        assert_eq!(parse_checksum("crc32 y/Q5Jg=="), Ok(0xCBF43926));
        assert!(parse_checksum("sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0=").is_err());
        assert!(parse_checksum("crc32 AAAA").is_err());
    }
}
