//! Plain file methods: GET and HEAD with a single `Range`, PUT (with
//! `Content-Range` a resume at the stored size that keeps the key; without,
//! a replace that clears it, as a plain STOR does), and the text listing of
//! a directory for clients that do not ask for HTML.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Request, Response, StatusCode};
use tokio::sync::mpsc;

use super::auth::Who;
use super::backend::{self, BackendError, Begin, Entry};
use super::body::{Stop, TAKEN_OVER};
use super::reply::{self, Resp};
use super::Ctx;
use crate::server::listing::utc;
use crate::server::paths::{PathError, VPath};

/// `Wed, 02 Dec 2026 01:52:49 GMT` (RFC 9110 IMF-fixdate).
pub(crate) fn http_date(t: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (y, mo, d, h, mi, s) = utc(t);
    let wd = DAYS[secs.div_euclid(86400).rem_euclid(7) as usize];
    let mon = MONTHS[(mo.clamp(1, 12) - 1) as usize];
    format!("{wd}, {d:02} {mon} {y:04} {h:02}:{mi:02}:{s:02} GMT")
}

/// An entity tag from size and mtime.
pub(crate) fn etag(e: &Entry) -> String {
    let ns = e
        .mtime
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("\"{:x}-{:x}\"", e.size, ns)
}

/// A `Range: bytes=...` request against a file of `len` bytes: None for the
/// whole file (no header, or one this server does not serve partly, such
/// as several ranges), Some(Ok((start, end_exclusive))), or Some(Err) for
/// an unsatisfiable range (416).
pub(crate) fn parse_range(h: Option<&str>, len: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = h?.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        if n == 0 || len == 0 {
            return Some(Err(()));
        }
        return Some(Ok((len - n.min(len), len)));
    }
    let start: u64 = a.parse().ok()?;
    let end = if b.is_empty() {
        len
    } else {
        let last: u64 = b.parse().ok()?;
        if last < start {
            return None;
        }
        last.saturating_add(1).min(len)
    };
    if start >= len {
        return Some(Err(()));
    }
    Some(Ok((start, end)))
}

fn file_headers(r: &mut Resp, e: &Entry) {
    let h = r.headers_mut();
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(v) = HeaderValue::from_str(&http_date(e.mtime)) {
        h.insert(header::LAST_MODIFIED, v);
    }
    if let Ok(v) = HeaderValue::from_str(&etag(e)) {
        h.insert(header::ETAG, v);
    }
    if let Some(k) = e.key {
        if let Ok(v) = HeaderValue::from_str(&k.to_string()) {
            h.insert("x-key", v);
        }
    }
}

/// GET or HEAD of file `v` (a directory goes to the caller's listing).
pub(crate) async fn get(ctx: &Arc<Ctx>, v: &VPath, headers: &HeaderMap, head: bool) -> Resp {
    let be = ctx.backend.clone();
    let v2 = v.clone();
    let opened = match tokio::task::spawn_blocking(move || be.open_read(&v2)).await {
        Ok(r) => r,
        Err(e) => return reply::text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let (file, e) = match opened {
        Ok(x) => x,
        Err(BackendError::Path(PathError::NotFound)) => {
            return reply::text(StatusCode::NOT_FOUND, "not found")
        }
        Err(err) => return reply::backend_error("GET", err),
    };
    let range = headers.get(header::RANGE).and_then(|h| h.to_str().ok());
    let (status, start, end) = match parse_range(range, e.size) {
        None => (StatusCode::OK, 0, e.size),
        Some(Ok((s, t))) => (StatusCode::PARTIAL_CONTENT, s, t),
        Some(Err(())) => {
            let mut r = reply::text(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable");
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{}", e.size)) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return r;
        }
    };
    let len = end - start;
    let body = if head || len == 0 {
        reply::empty()
    } else {
        let (tx, rx) = mpsc::channel(4);
        tokio::task::spawn_blocking(move || backend::send_range(file, start, len, tx));
        let s = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|r| (r.map(Frame::data), rx))
        });
        StreamBody::new(s).boxed()
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    file_headers(&mut r, &e);
    let h = r.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if status == StatusCode::PARTIAL_CONTENT {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{}", end - 1, e.size)) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    r
}

/// `Content-Range: bytes N-M/T` (or `N-M/*`) of a PUT: the offset N.
fn put_offset(h: &HeaderMap) -> Result<Option<u64>, &'static str> {
    let Some(v) = h.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let v = v.to_str().map_err(|_| "malformed Content-Range")?;
    let spec = v
        .trim()
        .strip_prefix("bytes ")
        .ok_or("Content-Range must be in bytes")?;
    let (range, _total) = spec.split_once('/').ok_or("malformed Content-Range")?;
    let (a, _) = range.split_once('-').ok_or("malformed Content-Range")?;
    let n = super::seed::parse_offset(a).map_err(|_| "malformed Content-Range")?;
    Ok(Some(n))
}

/// PUT: replace (the key is cleared), or resume at the stored size with a
/// `Content-Range` (the key is kept).
pub(crate) async fn put(ctx: &Arc<Ctx>, v: &VPath, req: Request<Incoming>, who: &Who) -> Resp {
    let offset = match put_offset(req.headers()) {
        Ok(o) => o,
        Err(why) => return reply::text(StatusCode::BAD_REQUEST, why),
    };
    let how = match offset {
        None | Some(0) => Begin::Replace(None),
        Some(offset) => Begin::Resume {
            offset,
            expect: None,
        },
    };
    let up = match super::body::begin(ctx, v, how, who.name()).await {
        Ok(u) => u,
        Err(BackendError::Path(PathError::NotFound)) => {
            return reply::text(StatusCode::CONFLICT, "PUT: no such parent directory")
        }
        Err(BackendError::Conflict(st)) => {
            let mut r = reply::state(StatusCode::RANGE_NOT_SATISFIABLE, &st);
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{}", st.size)) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return r;
        }
        Err(e) => return reply::backend_error("PUT", e),
    };
    let existed = up.start.size > 0 || offset.is_some();
    let (end, stop) = up.pump(req.into_body(), ctx.cfg.timeout).await;
    let Some(end) = end else {
        return reply::text(StatusCode::INTERNAL_SERVER_ERROR, "upload thread failed");
    };
    if let Some(e) = &end.error {
        return reply::store_error("PUT", e);
    }
    match stop {
        Some(Stop::Timeout) => reply::text(
            StatusCode::REQUEST_TIMEOUT,
            &format!("request body timed out; {} bytes kept", end.state.size),
        ),
        Some(Stop::Cut) => reply::text(
            StatusCode::BAD_REQUEST,
            &format!("request body cut off; {} bytes kept", end.state.size),
        ),
        Some(Stop::TakenOver) => reply::text(
            StatusCode::CONFLICT,
            &format!("{}; {} bytes kept", TAKEN_OVER, end.state.size),
        ),
        None if existed => reply::status(StatusCode::NO_CONTENT),
        None => reply::status(StatusCode::CREATED),
    }
}

/// A directory as text: one name per line, directories with a `/`.
pub(crate) fn text_listing(entries: &[Entry]) -> Resp {
    let mut s = String::new();
    for e in entries {
        s.push_str(&e.name);
        if e.dir {
            s.push('/');
        }
        s.push('\n');
    }
    reply::with(StatusCode::OK, "text/plain; charset=utf-8", Bytes::from(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10), None);
        assert_eq!(parse_range(Some("bytes=0-4"), 10), Some(Ok((0, 5))));
        assert_eq!(parse_range(Some("bytes=5-"), 10), Some(Ok((5, 10))));
        assert_eq!(parse_range(Some("bytes=-3"), 10), Some(Ok((7, 10))));
        assert_eq!(parse_range(Some("bytes=-30"), 10), Some(Ok((0, 10))));
        assert_eq!(parse_range(Some("bytes=8-100"), 10), Some(Ok((8, 10))));
        assert_eq!(parse_range(Some("bytes=10-"), 10), Some(Err(())));
        assert_eq!(parse_range(Some("bytes=0-1,3-4"), 10), None);
        assert_eq!(parse_range(Some("bytes=5-2"), 10), None);
        assert_eq!(parse_range(Some("items=0-1"), 10), None);
    }

    #[test]
    fn dates() {
        let t = UNIX_EPOCH + std::time::Duration::from_secs(784_111_777);
        assert_eq!(http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
    }
}
