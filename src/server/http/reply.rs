//! Responses: one-line text reasons for errors, the state JSON, and the
//! status code of each backend error.

use std::io;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};

use super::backend::{BackendError, UpState};
use crate::server::paths::PathError;
use crate::server::store::{ErrorKind, StoreError};

/// Every response body.
pub(crate) type Body = BoxBody<Bytes, io::Error>;

pub(crate) type Resp = Response<Body>;

/// A body of `bytes`.
pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|e| match e {}).boxed()
}

/// An empty body.
pub(crate) fn empty() -> Body {
    Empty::new().map_err(|e| match e {}).boxed()
}

/// A response with `status` and a body of `content_type`.
pub(crate) fn with(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// `status` with a one-line reason as text.
pub(crate) fn text(status: StatusCode, reason: &str) -> Resp {
    let line: String = reason
        .lines()
        .next()
        .unwrap_or("")
        .chars()
        .take(300)
        .collect();
    with(status, "text/plain; charset=utf-8", format!("{line}\n"))
}

/// `status` with no body.
pub(crate) fn status(status: StatusCode) -> Resp {
    let mut r = Response::new(empty());
    *r.status_mut() = status;
    r
}

/// `status` with the state JSON.
pub(crate) fn state(status: StatusCode, st: &UpState) -> Resp {
    with(status, "application/json", format!("{}\n", st.json()))
}

/// The response to a backend error.
pub(crate) fn backend_error(what: &str, e: BackendError) -> Resp {
    match e {
        BackendError::Path(PathError::Invalid(why)) => text(
            StatusCode::BAD_REQUEST,
            &format!("{what}: invalid path: {why}"),
        ),
        BackendError::Path(PathError::Outside) => text(
            StatusCode::FORBIDDEN,
            &format!("{what}: path leads outside the root"),
        ),
        BackendError::Path(PathError::NotFound) => text(
            StatusCode::NOT_FOUND,
            &format!("{what}: no such parent directory"),
        ),
        BackendError::NotFound => text(StatusCode::NOT_FOUND, &format!("{what}: not found")),
        BackendError::IsDir => text(StatusCode::CONFLICT, &format!("{what}: is a directory")),
        BackendError::Exists => text(
            StatusCode::PRECONDITION_FAILED,
            &format!("{what}: already exists"),
        ),
        BackendError::Busy => text(
            StatusCode::LOCKED,
            &format!("{what}: busy, an upload of it is in progress"),
        ),
        BackendError::Conflict(st) => state(StatusCode::CONFLICT, &st),
        BackendError::Refused(why) => text(StatusCode::FORBIDDEN, &format!("{what}: {why}")),
        BackendError::Store(e) => store_error(what, &e),
    }
}

/// The response to a store error, by its kind.
pub(crate) fn store_error(what: &str, e: &StoreError) -> Resp {
    let status = match e.kind {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Busy => StatusCode::LOCKED,
        ErrorKind::Conflict | ErrorKind::NotRegular => StatusCode::CONFLICT,
        ErrorKind::NoSpace => StatusCode::INSUFFICIENT_STORAGE,
        ErrorKind::Denied => StatusCode::FORBIDDEN,
        ErrorKind::Io => StatusCode::INTERNAL_SERVER_ERROR,
    };
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        log::warn!("http: {what}: {e}");
    }
    text(status, &format!("{what}: {}", e.msg))
}
