//! GET of a directory: an HTML page (listing and upload control) for
//! browsers, a plain list of names for everything else.

use std::sync::Arc;

use hyper::StatusCode;

use super::auth::Who;
use super::files::text_listing;
use super::reply::{self, Resp};
use super::webdav::{encode_path, xml_escape};
use super::Ctx;
use crate::server::paths::VPath;

/// Answers GET/HEAD of directory `v`.
pub(crate) async fn directory(
    ctx: &Arc<Ctx>,
    v: &VPath,
    html: bool,
    head: bool,
    who: &Who,
) -> Resp {
    let be = ctx.backend.clone();
    let v2 = v.clone();
    let list = match tokio::task::spawn_blocking(move || be.list(&v2)).await {
        Ok(Ok(l)) => l,
        Ok(Err(e)) => return reply::backend_error("listing", e),
        Err(e) => return reply::text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let mut r = if html {
        let mut rows = String::new();
        for e in &list {
            let Ok(cv) = v.resolve(&e.name) else {
                continue;
            };
            let mut href = encode_path(&cv.display());
            if e.dir {
                href.push('/');
            }
            rows.push_str(&format!(
                "<tr><td><a href=\"{}\">{}{}</a></td><td>{}</td><td>{}</td></tr>\n",
                xml_escape(&href),
                xml_escape(&e.name),
                if e.dir { "/" } else { "" },
                if e.dir {
                    String::new()
                } else {
                    e.size.to_string()
                },
                e.state.map(|s| s.as_str()).unwrap_or("")
            ));
        }
        let writable = matches!(who, Who::User(_));
        let html = format!(
            "<!doctype html><meta charset=utf-8><title>{t}</title><h1>{t}</h1><table>{rows}</table>{w}",
            t = xml_escape(&v.display()),
            w = if writable { "" } else { "<p>read-only</p>" }
        );
        reply::with(StatusCode::OK, "text/html; charset=utf-8", html)
    } else {
        text_listing(&list)
    };
    if head {
        *r.body_mut() = reply::empty();
    }
    r
}
