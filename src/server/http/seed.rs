//! The seed's flow (CN101174954A claim 1, steps 3-9): `GET /PATH?state`
//! answers the upload's state; `POST /PATH` with `multipart/form-data`
//! fields `offset`, `key`, then a `file` part writes the bytes from that
//! offset. Offset 0 replaces; a non-zero offset must equal the stored size
//! and the key the stored key, else 409 with the state and nothing written.
//! A body cut off mid-way keeps every byte the reader handed over (it
//! holds back at most the length of the part delimiter, which those bytes
//! may be the start of; see [`super::form`]) and leaves the file partial.
//!
//! Beyond the seed, `GET /PATH?crc=N` answers the CRC-32 of the first N
//! bytes (`?crc`: the whole file) as `{"end": N, "crc": "0x1A2B3C4D"}`, so
//! a client can check a same-key partial before resuming it (FTP's XCRC);
//! N past the end: 416.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::{Request, StatusCode};

use super::auth::Who;
use super::backend::{BackendError, Begin, UpState};
use super::body::{self, Stop, StopCell};
use super::form::{Form, FormError};
use super::reply::{self, Resp};
use super::Ctx;
use crate::key::{parse_hex_key, Key};
use crate::server::paths::VPath;
use crate::server::store::ErrorKind;

/// Largest non-file field.
const FIELD_MAX: u64 = 1024;

/// `GET /PATH?state`.
pub(crate) async fn state(ctx: &Arc<Ctx>, v: &VPath) -> Resp {
    let be = ctx.backend.clone();
    let v2 = v.clone();
    match tokio::task::spawn_blocking(move || be.state(&v2)).await {
        Ok(Ok(st)) => reply::state(StatusCode::OK, &st),
        Ok(Err(e)) => reply::backend_error("state", e),
        Err(e) => reply::text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// The `crc` query's end: `None` for the whole file, else a byte count.
pub(crate) fn crc_end(query: &str) -> Result<Option<u64>, &'static str> {
    let v = query
        .split('&')
        .find_map(|p| match p.split_once('=') {
            Some(("crc", v)) => Some(v),
            None if p == "crc" => Some(""),
            _ => None,
        })
        .unwrap_or("");
    if v.is_empty() {
        return Ok(None);
    }
    parse_offset(v).map(Some)
}

/// `GET /PATH?crc[=N]`.
pub(crate) async fn crc(ctx: &Arc<Ctx>, v: &VPath, query: &str) -> Resp {
    let end = match crc_end(query) {
        Ok(e) => e,
        Err(why) => return reply::text(StatusCode::BAD_REQUEST, why),
    };
    let be = ctx.backend.clone();
    let v2 = v.clone();
    match tokio::task::spawn_blocking(move || be.crc(&v2, end)).await {
        Ok(Ok(c)) => {
            let end = match end {
                Some(e) => e.to_string(),
                None => "null".into(),
            };
            reply::with(
                StatusCode::OK,
                "application/json",
                format!("{{\"end\": {end}, \"crc\": \"0x{c:08X}\"}}\n"),
            )
        }
        Ok(Err(BackendError::Store(e))) if e.kind == ErrorKind::Conflict => reply::text(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "crc: past the end of the file",
        ),
        Ok(Err(e)) => reply::backend_error("crc", e),
        Err(e) => reply::text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// Parses the `offset` field: a decimal byte count a file can have.
pub(crate) fn parse_offset(s: &str) -> Result<u64, &'static str> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err("offset must be a decimal byte count");
    }
    match s.parse::<u64>() {
        Ok(n) if n <= i64::MAX as u64 => Ok(n),
        _ => Err("offset too large"),
    }
}

/// Parses the `key` field: empty for none, else `0x` + 1-8 hex digits.
pub(crate) fn parse_key(s: &str) -> Result<Option<Key>, &'static str> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    parse_hex_key(s)
        .map(Some)
        .map_err(|_| "key must be 0x and 1 to 8 hex digits")
}

fn stopped(why: Option<Stop>, e: &FormError) -> Resp {
    match why {
        Some(Stop::Timeout) => reply::text(StatusCode::REQUEST_TIMEOUT, "request body timed out"),
        Some(Stop::Cut) => reply::text(StatusCode::BAD_REQUEST, "request body cut off"),
        Some(Stop::TakenOver) => reply::text(StatusCode::CONFLICT, body::TAKEN_OVER),
        None => reply::text(
            StatusCode::BAD_REQUEST,
            &format!("malformed multipart body: {e}"),
        ),
    }
}

/// A client-given file name (tus's `filename`, a form's file part) that
/// names a file in a directory: no path, no `.` or `..`.
pub(crate) fn plain_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err("filename must be a plain name");
    }
    Ok(())
}

/// The file a form posted to directory `dir` goes to: the one its file
/// part's `filename` names there.
fn file_in(dir: &VPath, filename: Option<&str>) -> Result<VPath, Resp> {
    let Some(name) = filename else {
        return Err(reply::text(
            StatusCode::CONFLICT,
            "a directory: POST to a file's URL, or give the file part a filename",
        ));
    };
    plain_name(name).map_err(|why| reply::text(StatusCode::BAD_REQUEST, why))?;
    dir.resolve(name)
        .map_err(|e| reply::text(StatusCode::BAD_REQUEST, &e.to_string()))
}

/// `POST /PATH` with `multipart/form-data`. To a directory (as a plain
/// HTML form with a file input would post), the file part's `filename`
/// names the file in it.
pub(crate) async fn post(
    ctx: &Arc<Ctx>,
    v: &VPath,
    dir_url: bool,
    req: Request<Incoming>,
    who: &Who,
) -> Resp {
    let ct = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let boundary = match multer::parse_boundary(ct) {
        Ok(b) if ct.to_ascii_lowercase().starts_with("multipart/form-data") => b,
        _ => {
            return reply::text(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "POST needs multipart/form-data with a boundary (or Tus-Resumable)",
            )
        }
    };
    let why = StopCell::default();
    let stream = Box::pin(body::stream(req.into_body(), ctx.cfg.timeout, why.clone()));
    let mut form = Form::new(stream, &boundary);
    let (mut offset, mut key) = (0u64, None);
    loop {
        let name = match form.next_part().await {
            Ok(Some(name)) => name,
            Ok(None) => return reply::text(StatusCode::BAD_REQUEST, "no file part in the form"),
            Err(e) => return stopped(why.get(), &e),
        };
        match name.as_deref() {
            Some("file") => break,
            Some(name @ ("offset" | "key")) => {
                let text = match form.text(FIELD_MAX).await {
                    Ok(t) => t,
                    Err(e) => return stopped(why.get(), &e),
                };
                let parsed = if name == "offset" {
                    parse_offset(&text).map(|o| offset = o)
                } else {
                    parse_key(&text).map(|k| key = k)
                };
                if let Err(reason) = parsed {
                    return reply::text(StatusCode::BAD_REQUEST, reason);
                }
            }
            // Other form fields are read (bounded) and ignored.
            _ => {
                if let Err(e) = form.skip(FIELD_MAX).await {
                    return stopped(why.get(), &e);
                }
            }
        }
    }
    let how = if offset == 0 {
        Begin::Replace(key)
    } else {
        Begin::Resume {
            offset,
            expect: Some(key),
        }
    };
    // A URL ending in `/` names a directory; one without it may too, and
    // the store says so (no lookup added to every POST).
    let in_dir = if dir_url {
        match file_in(v, form.filename()) {
            Ok(t) => Some(t),
            Err(r) => return r,
        }
    } else {
        None
    };
    let up = match body::begin(ctx, in_dir.as_ref().unwrap_or(v), how, who.name()).await {
        Err(BackendError::IsDir) if in_dir.is_none() => match file_in(v, form.filename()) {
            Ok(t) => body::begin(ctx, &t, how, who.name()).await,
            Err(r) => return r,
        },
        r => r,
    };
    let mut up = match up {
        Ok(u) => u,
        Err(e) => return reply::backend_error("upload", e),
    };
    why.watch(&up);
    let mut clean = false;
    let mut err = None;
    loop {
        // Each piece is written and dropped before the next is read, so
        // the connection's read buffer is reused.
        match form.chunk().await {
            Ok(Some(b)) => {
                if !up.write(&b) {
                    break;
                }
            }
            Ok(None) => {
                clean = true;
                break;
            }
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    let end = up.finish(clean).await;
    let Some(end) = end else {
        return reply::text(StatusCode::INTERNAL_SERVER_ERROR, "upload thread failed");
    };
    if let Some(e) = &end.error {
        return reply::store_error("upload", e);
    }
    if let Some(e) = err {
        // Whatever arrived is kept; say so and how much there is.
        let st = end.state;
        let mut r = stopped(why.get(), &e);
        append_state(&mut r, &st);
        return r;
    }
    // The rest of the form (closing delimiter, late fields) is read and
    // ignored: the file part ended where the client meant it to.
    while let Ok(Some(_)) = form.next_part().await {}
    reply::state(StatusCode::OK, &end.state)
}

/// Adds the state as a header to an error reply that has a text reason.
fn append_state(r: &mut Resp, st: &UpState) {
    if let Ok(v) = hyper::header::HeaderValue::from_str(&st.json()) {
        r.headers_mut().insert("x-upload-state", v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_and_keys() {
        assert_eq!(parse_offset("0"), Ok(0));
        assert_eq!(parse_offset(" 1234 "), Ok(1234));
        assert!(parse_offset("-1").is_err());
        assert!(parse_offset("1e3").is_err());
        assert!(parse_offset("").is_err());
        assert!(parse_offset("99999999999999999999999").is_err());
        assert!(parse_offset("9223372036854775808").is_err());
        assert_eq!(parse_key(""), Ok(None));
        assert_eq!(parse_key("0x1A2B3C4D"), Ok(Some(Key(0x1A2B3C4D))));
        assert!(parse_key("1A2B3C4D").is_err());
        assert!(parse_key("0x123456789").is_err());
        assert!(parse_key("0xZZ").is_err());
    }

    #[test]
    fn crc_queries() {
        assert_eq!(crc_end("crc"), Ok(None));
        assert_eq!(crc_end("crc="), Ok(None));
        assert_eq!(crc_end("crc=150000"), Ok(Some(150_000)));
        assert_eq!(crc_end("x=1&crc=7"), Ok(Some(7)));
        assert!(crc_end("crc=-1").is_err());
        assert!(crc_end("crc=0x10").is_err());
    }
}
