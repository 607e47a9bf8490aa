//! WebDAV class 1 (RFC 4918) on the same paths: PROPFIND (depth 0 and 1;
//! `infinity` is refused as the RFC allows), MKCOL, DELETE, MOVE and COPY
//! with `Overwrite`. PROPFIND always answers every property it has (the
//! request body is read and not parsed): displayname, resourcetype,
//! getcontentlength, getlastmodified, getetag, getcontenttype, and in the
//! `urn:x-keyfs:` namespace `key` (`0x` + 8 hex digits, when a key is
//! stored) and `state` (`partial` or `complete`, when keyftpd has a record).
//! MOVE carries the key metadata; COPY copies it; DELETE drops it.
//! PROPPATCH sets the modification time and nothing else ([`proppatch`]).

mod proppatch;

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::{Request, StatusCode};

use super::auth::Who;
use super::backend::{BackendError, Entry};
use super::files::{etag, http_date};
use super::reply::{self, Resp};
use super::routing::url_path;
use super::Ctx;
use crate::server::paths::{PathError, VPath};

/// The namespace of keyftpd's own properties.
pub(crate) const NS: &str = "urn:x-keyfs:";

/// Largest request body of PROPFIND, PROPPATCH and MKCOL.
const XML_MAX: usize = 1 << 20;

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BackendError> + Send + 'static,
) -> Result<T, BackendError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(BackendError::Refused(if e.is_panic() {
            "internal error"
        } else {
            "cancelled"
        }))
    })
}

/// Stat of `v`, or the response for why not.
pub(crate) async fn stat(ctx: &Arc<Ctx>, v: &VPath) -> Result<Entry, Resp> {
    let be = ctx.backend.clone();
    let v2 = v.clone();
    match blocking(move || be.stat(&v2)).await {
        Ok(e) => Ok(e),
        Err(BackendError::Path(PathError::NotFound)) => {
            Err(reply::text(StatusCode::NOT_FOUND, "not found"))
        }
        Err(e) => Err(reply::backend_error("stat", e)),
    }
}

/// Reads a small request body (bounded, with the request timeout).
async fn small_body(ctx: &Ctx, body: Incoming) -> Result<Bytes, Resp> {
    let limited = Limited::new(body, XML_MAX);
    match tokio::time::timeout(ctx.cfg.timeout, limited.collect()).await {
        Err(_) => Err(reply::text(
            StatusCode::REQUEST_TIMEOUT,
            "request body timed out",
        )),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(reply::text(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large",
        )),
        Ok(Err(_)) => Err(reply::text(StatusCode::BAD_REQUEST, "request body cut off")),
        Ok(Ok(c)) => Ok(c.to_bytes()),
    }
}

/// Percent-encodes a path for an href (unreserved bytes and `/` stay).
pub(crate) fn encode_path(p: &str) -> String {
    let mut s = String::with_capacity(p.len());
    for b in p.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

/// Escapes text for XML.
pub(crate) fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn href(v: &VPath, dir: bool) -> String {
    let mut p = encode_path(&v.display());
    if dir && !p.ends_with('/') {
        p.push('/');
    }
    p
}

fn response_xml(out: &mut String, v: &VPath, e: &Entry) {
    out.push_str("<D:response><D:href>");
    out.push_str(&xml_escape(&href(v, e.dir)));
    out.push_str("</D:href><D:propstat><D:prop>");
    out.push_str(&format!(
        "<D:displayname>{}</D:displayname>",
        xml_escape(&e.name)
    ));
    if e.dir {
        out.push_str("<D:resourcetype><D:collection/></D:resourcetype>");
    } else {
        out.push_str("<D:resourcetype/>");
        out.push_str(&format!(
            "<D:getcontentlength>{}</D:getcontentlength>",
            e.size
        ));
        out.push_str("<D:getcontenttype>application/octet-stream</D:getcontenttype>");
        out.push_str(&format!("<D:getetag>{}</D:getetag>", xml_escape(&etag(e))));
        if let Some(k) = e.key {
            out.push_str(&format!("<K:key>{k}</K:key>"));
        }
        if let Some(st) = e.state {
            out.push_str(&format!("<K:state>{}</K:state>", st.as_str()));
        }
    }
    out.push_str(&format!(
        "<D:getlastmodified>{}</D:getlastmodified>",
        http_date(e.mtime)
    ));
    out.push_str("</D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>\n");
}

/// PROPFIND with depth 0 or 1.
pub(crate) async fn propfind(ctx: &Arc<Ctx>, v: &VPath, req: Request<Incoming>) -> Resp {
    let depth = match req.headers().get("depth").and_then(|d| d.to_str().ok()) {
        None | Some("1") => 1,
        Some("0") => 0,
        Some(d) if d.eq_ignore_ascii_case("infinity") => {
            return reply::text(StatusCode::FORBIDDEN, "Depth: infinity is not supported")
        }
        Some(_) => return reply::text(StatusCode::BAD_REQUEST, "Depth must be 0 or 1"),
    };
    if let Err(r) = small_body(ctx, req.into_body()).await {
        return r;
    }
    let me = match stat(ctx, v).await {
        Ok(e) => e,
        Err(r) => return r,
    };
    let children = if depth == 1 && me.dir {
        let be = ctx.backend.clone();
        let v2 = v.clone();
        match blocking(move || be.list(&v2)).await {
            Ok(l) => l,
            Err(e) => return reply::backend_error("PROPFIND", e),
        }
    } else {
        Vec::new()
    };
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<D:multistatus xmlns:D=\"DAV:\" xmlns:K=\"{NS}\">\n"
    );
    response_xml(&mut out, v, &me);
    for c in &children {
        if let Ok(cv) = v.resolve(&c.name) {
            response_xml(&mut out, &cv, c);
        }
    }
    out.push_str("</D:multistatus>\n");
    reply::with(
        StatusCode::MULTI_STATUS,
        "application/xml; charset=utf-8",
        out,
    )
}

/// PROPPATCH: the modification time can be set (see [`proppatch::plan`]);
/// every other property is refused (403), and then, the request being
/// all or nothing (RFC 4918 9.2), nothing is set (424 for the time).
pub(crate) async fn proppatch(ctx: &Arc<Ctx>, v: &VPath, req: Request<Incoming>) -> Resp {
    let body = match small_body(ctx, req.into_body()).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let me = match stat(ctx, v).await {
        Ok(e) => e,
        Err(r) => return r,
    };
    let plan = match proppatch::plan(&body) {
        Ok(p) => p,
        Err(why) => return reply::text(StatusCode::BAD_REQUEST, &why),
    };
    if let (Some(t), true) = (plan.mtime, plan.refused.is_empty()) {
        let be = ctx.backend.clone();
        let v2 = v.clone();
        if let Err(e) = blocking(move || be.set_mtime(&v2, t)).await {
            return reply::backend_error("PROPPATCH", e);
        }
    }
    let out = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<D:multistatus xmlns:D=\"DAV:\">\n<D:response><D:href>{}</D:href>{}</D:response>\n</D:multistatus>\n",
        xml_escape(&href(v, me.dir)),
        plan.propstats()
    );
    reply::with(
        StatusCode::MULTI_STATUS,
        "application/xml; charset=utf-8",
        out,
    )
}

/// MKCOL: 201, or 405 when something exists there, 409 without a parent.
pub(crate) async fn mkcol(ctx: &Arc<Ctx>, v: &VPath, req: Request<Incoming>) -> Resp {
    match small_body(ctx, req.into_body()).await {
        Ok(b) if !b.is_empty() => {
            return reply::text(StatusCode::UNSUPPORTED_MEDIA_TYPE, "MKCOL takes no body")
        }
        Ok(_) => {}
        Err(r) => return r,
    }
    let be = ctx.backend.clone();
    let v2 = v.clone();
    match blocking(move || be.mkdir(&v2)).await {
        Ok(()) => reply::status(StatusCode::CREATED),
        Err(BackendError::Exists) => {
            reply::text(StatusCode::METHOD_NOT_ALLOWED, "MKCOL: already exists")
        }
        Err(BackendError::NotFound) | Err(BackendError::Path(PathError::NotFound)) => {
            reply::text(StatusCode::CONFLICT, "MKCOL: no such parent directory")
        }
        Err(e) => reply::backend_error("MKCOL", e),
    }
}

/// DELETE of a file or a whole directory (also tus termination).
pub(crate) async fn delete(ctx: &Arc<Ctx>, v: &VPath, tus: bool) -> Resp {
    let be = ctx.backend.clone();
    let v2 = v.clone();
    match blocking(move || be.delete(&v2)).await {
        Ok(()) => {
            ctx.tus.forget(v);
            let mut r = reply::status(StatusCode::NO_CONTENT);
            if tus {
                super::tus::resumable(r.headers_mut());
            }
            r
        }
        Err(BackendError::Path(PathError::NotFound)) => {
            reply::text(StatusCode::NOT_FOUND, "DELETE: not found")
        }
        Err(e) => reply::backend_error("DELETE", e),
    }
}

/// The `Destination` header as a virtual path.
fn destination(h: &HeaderMap) -> Result<VPath, String> {
    let d = h
        .get("destination")
        .ok_or("Destination header missing")?
        .to_str()
        .map_err(|_| "malformed Destination header")?;
    let path = match d.find("://") {
        Some(i) => {
            let rest = &d[i + 3..];
            rest.find('/').map(|j| &rest[j..]).unwrap_or("/")
        }
        None => d,
    };
    let path = path.split(['?', '#']).next().unwrap_or("/");
    url_path(path)
}

/// MOVE or COPY to `Destination`, honouring `Overwrite` (default T).
pub(crate) async fn move_copy(
    ctx: &Arc<Ctx>,
    v: &VPath,
    req: Request<Incoming>,
    who: &Who,
) -> Resp {
    let is_move = req.method().as_str() == "MOVE";
    let what = if is_move { "MOVE" } else { "COPY" };
    let to = match destination(req.headers()) {
        Ok(t) => t,
        Err(why) => return reply::text(StatusCode::BAD_REQUEST, &why),
    };
    let overwrite = !req
        .headers()
        .get("overwrite")
        .and_then(|o| o.to_str().ok())
        .is_some_and(|o| o.trim().eq_ignore_ascii_case("F"));
    let be = ctx.backend.clone();
    let (from, to2) = (v.clone(), to.clone());
    let owner = who.name().to_string();
    let res = blocking(move || {
        let existed = be.stat(&to2).is_ok();
        let r = if is_move {
            be.rename(&from, &to2, overwrite)
        } else {
            be.copy(&from, &to2, overwrite, &owner)
        };
        r.map(|()| existed)
    })
    .await;
    match res {
        Ok(existed) => {
            if is_move {
                ctx.tus.rename(v, &to);
            }
            reply::status(if existed {
                StatusCode::NO_CONTENT
            } else {
                StatusCode::CREATED
            })
        }
        Err(BackendError::Path(PathError::NotFound)) | Err(BackendError::NotFound) => {
            // The source is missing (404), or the destination's parent (409).
            if stat(ctx, v).await.is_err() {
                reply::text(StatusCode::NOT_FOUND, &format!("{what}: not found"))
            } else {
                reply::text(
                    StatusCode::CONFLICT,
                    &format!("{what}: no such destination directory"),
                )
            }
        }
        Err(e) => reply::backend_error(what, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hrefs_and_destinations() {
        assert_eq!(encode_path("/a b/ü&"), "/a%20b/%C3%BC%26");
        let mut h = HeaderMap::new();
        h.insert(
            "destination",
            hyper::header::HeaderValue::from_static("http://127.0.0.1:8080/x/y%20z"),
        );
        assert_eq!(destination(&h).map(|v| v.display()), Ok("/x/y z".into()));
        h.insert(
            "destination",
            hyper::header::HeaderValue::from_static("/a/../b"),
        );
        assert!(destination(&h).is_err());
    }
}
