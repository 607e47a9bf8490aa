//! From a request to its handler: decode and confine the path, log in,
//! refuse writes to anonymous users, then dispatch on the method (and on
//! `?state`, `?crc`, `Tus-Resumable` and `Accept: text/html` where they
//! matter).
//!
//! URL paths are percent-decoded, then checked as FTP paths are
//! ([`VPath::resolve`]: no NUL, no control bytes, no over-long names, not
//! the metadata directory), and a `..` segment, raw or encoded, is refused
//! outright rather than clamped at the root.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, StatusCode};

use super::auth::{self, Who};
use super::reply::{self, Resp};
use super::{files, page, seed, tus, webdav, Ctx};
use crate::server::paths::VPath;

/// The methods this face answers.
pub(crate) const ALLOW: &str =
    "OPTIONS, GET, HEAD, POST, PUT, PATCH, DELETE, MKCOL, MOVE, COPY, PROPFIND, PROPPATCH";

/// Percent-decodes a URL path; None for a bad escape or non-UTF-8 bytes.
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A URL path (still percent-encoded) as a virtual path, or the reason
/// it is refused.
pub(crate) fn url_path(raw: &str) -> Result<VPath, String> {
    let decoded = percent_decode(raw).ok_or("malformed percent-encoding in path")?;
    if !decoded.starts_with('/') {
        return Err("path must start with /".into());
    }
    if decoded.split('/').any(|seg| seg == "..") {
        return Err("path has a .. segment".into());
    }
    VPath::root().resolve(&decoded).map_err(|e| e.to_string())
}

fn has_query(req: &Request<Incoming>, name: &str) -> bool {
    req.uri().query().is_some_and(|q| {
        q.split('&')
            .any(|p| p == name || p.starts_with(&format!("{name}=")))
    })
}

fn is_write(m: &Method) -> bool {
    !matches!(m.as_str(), "GET" | "HEAD" | "OPTIONS" | "PROPFIND")
}

/// Answers one request; `secure` when it came over TLS.
pub(crate) async fn handle(
    ctx: Arc<Ctx>,
    peer: SocketAddr,
    secure: bool,
    req: Request<Incoming>,
) -> Resp {
    let method = req.method().clone();
    let v = match url_path(req.uri().path()) {
        Ok(v) => v,
        Err(why) => return reply::text(StatusCode::BAD_REQUEST, &why),
    };
    let who = match auth::authenticate(&ctx, peer, secure, req.headers()).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    if is_write(&method) && who == Who::Anonymous {
        let has_credentials = req.headers().contains_key(header::AUTHORIZATION);
        return if has_credentials {
            reply::text(StatusCode::FORBIDDEN, "anonymous access is read-only")
        } else {
            auth::ask_login(
                &ctx,
                secure,
                "log in to write (anonymous access is read-only)",
            )
        };
    }
    let tus = req.headers().contains_key("tus-resumable");
    let mut r = dispatch(&ctx, &v, req, &who).await;
    if tus && method != Method::OPTIONS {
        tus::resumable(r.headers_mut());
    }
    log::debug!("http {peer}: {method} {} -> {}", v.display(), r.status());
    r
}

async fn dispatch(ctx: &Arc<Ctx>, v: &VPath, req: Request<Incoming>, who: &Who) -> Resp {
    let tus = req.headers().contains_key("tus-resumable");
    let dir_url = req.uri().path().ends_with('/');
    match req.method().as_str() {
        "OPTIONS" => options(),
        "GET" | "HEAD" => {
            let head = req.method() == Method::HEAD;
            if has_query(&req, "state") {
                return seed::state(ctx, v).await;
            }
            if has_query(&req, "crc") {
                return seed::crc(ctx, v, req.uri().query().unwrap_or("")).await;
            }
            if tus && head {
                return tus::head(ctx, v).await;
            }
            match webdav::stat(ctx, v).await {
                Ok(e) if e.dir => {
                    let html = req
                        .headers()
                        .get(header::ACCEPT)
                        .and_then(|a| a.to_str().ok())
                        .is_some_and(|a| a.contains("text/html"));
                    page::directory(ctx, v, html, head, who).await
                }
                Ok(_) => files::get(ctx, v, req.headers(), head).await,
                Err(r) => r,
            }
        }
        "POST" if tus => tus::create(ctx, v, dir_url, req, who).await,
        "POST" => seed::post(ctx, v, dir_url, req, who).await,
        "PATCH" => tus::patch(ctx, v, req, who).await,
        "PUT" => files::put(ctx, v, req, who).await,
        "DELETE" => webdav::delete(ctx, v, tus).await,
        "MKCOL" => webdav::mkcol(ctx, v, req).await,
        "MOVE" | "COPY" => webdav::move_copy(ctx, v, req, who).await,
        "PROPFIND" => webdav::propfind(ctx, v, req).await,
        "PROPPATCH" => webdav::proppatch(ctx, v, req).await,
        _ => {
            let mut r = reply::text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(ALLOW));
            r
        }
    }
}

fn options() -> Resp {
    let mut r = reply::status(StatusCode::OK);
    let h = r.headers_mut();
    h.insert(header::ALLOW, HeaderValue::from_static(ALLOW));
    h.insert("dav", HeaderValue::from_static("1"));
    h.insert("ms-author-via", HeaderValue::from_static("DAV"));
    tus::advertise(h);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(
            url_path("/a/b%20c").map(|v| v.display()),
            Ok("/a/b c".into())
        );
        assert_eq!(url_path("/").map(|v| v.display()), Ok("/".into()));
        assert!(url_path("/a/../b").is_err());
        assert!(url_path("/a/%2e%2e/b").is_err());
        assert!(url_path("/a/%2E%2E").is_err());
        assert!(url_path("/a%00b").is_err());
        assert!(url_path("/a%2").is_err());
        assert!(url_path("/%ff").is_err());
        assert!(url_path(&format!("/{}", "x".repeat(256))).is_err());
        assert!(url_path("/.keyftpd/meta.log").is_err());
    }
}
