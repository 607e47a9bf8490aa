//! GET of a directory: for a browser (`Accept: text/html`) a page with the
//! listing and an upload control (`page.html`, `page.js`: the seed's
//! resumable upload with CRC-32, progress, retry and resume; no framework,
//! built into the binary); for everything else a plain list of names.

use std::sync::Arc;

use hyper::header::{HeaderValue, CACHE_CONTROL};
use hyper::StatusCode;

use super::auth::Who;
use super::backend::Entry;
use super::files::text_listing;
use super::reply::{self, Resp};
use super::webdav::{encode_path, xml_escape};
use super::Ctx;
use crate::server::paths::VPath;

const TEMPLATE: &str = include_str!("page.html");
const SCRIPT: &str = include_str!("page.js");
/// Without JavaScript, a plain form posts one file to the directory's URL
/// (the seed's POST with offset 0; the part's filename names the file).
const UPLOAD: &str = "<div id=\"drop\"><input type=\"file\" id=\"pick\" multiple> or drop files here</div>\n<div id=\"uploads\"></div>\n<noscript><form method=\"post\" enctype=\"multipart/form-data\"><input type=\"file\" name=\"file\"> <button>Upload</button></form></noscript>";
const READ_ONLY: &str = "<p class=\"ro\">Read-only: log in to upload.</p>";

/// Fills `{{NAME}}` placeholders in one pass (values are not searched).
fn render(template: &str, value: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(template.len() + 4096);
    let mut rest = template;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        match after
            .find("}}")
            .and_then(|j| value(&after[..j]).map(|v| (j, v)))
        {
            Some((j, v)) => {
                out.push_str(&v);
                rest = &after[j + 2..];
            }
            None => {
                out.push_str("{{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn rows(v: &VPath, list: &[Entry]) -> String {
    let mut rows = String::new();
    if !v.is_root() {
        rows.push_str("<tr><td><a href=\"../\">../</a></td><td></td><td></td></tr>\n");
    }
    for e in list {
        let Ok(cv) = v.resolve(&e.name) else {
            continue;
        };
        let mut href = encode_path(&cv.display());
        if e.dir {
            href.push('/');
        }
        rows.push_str(&format!(
            "<tr><td><a href=\"{}\">{}{}</a></td><td class=\"n\">{}</td><td>{}</td></tr>\n",
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
    rows
}

/// The page of directory `v` for `who`.
pub(crate) fn html(v: &VPath, list: &[Entry], who: &Who) -> String {
    let title = xml_escape(&v.display());
    render(TEMPLATE, |name| match name {
        "TITLE" => Some(title.clone()),
        "ROWS" => Some(rows(v, list)),
        "UPLOAD" => Some(
            if matches!(who, Who::User(_)) {
                UPLOAD
            } else {
                READ_ONLY
            }
            .to_string(),
        ),
        "SCRIPT" => Some(SCRIPT.to_string()),
        _ => None,
    })
}

/// Answers GET/HEAD of directory `v`.
pub(crate) async fn directory(
    ctx: &Arc<Ctx>,
    v: &VPath,
    html_wanted: bool,
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
    let mut r = if html_wanted {
        let mut r = reply::with(
            StatusCode::OK,
            "text/html; charset=utf-8",
            html(v, &list, who),
        );
        r.headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    } else {
        text_listing(&list)
    };
    if head {
        *r.body_mut() = reply::empty();
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped_and_placeholders_not_expanded_twice() {
        let v = VPath::root();
        let list = vec![Entry {
            name: "<b>{{SCRIPT}}&\"x".into(),
            dir: false,
            size: 3,
            mtime: std::time::SystemTime::UNIX_EPOCH,
            key: None,
            state: None,
        }];
        let page = html(&v, &list, &Who::User("u".into()));
        assert!(page.contains("&lt;b&gt;{{SCRIPT}}&amp;&quot;x"), "{page}");
        assert_eq!(page.matches("crcUpdate(crc, buf)").count(), 1);
        assert!(page.contains("id=\"pick\""));
        assert!(page.contains("<noscript><form method=\"post\" enctype=\"multipart/form-data\">"));
        let ro = html(&v, &list, &Who::Anonymous);
        assert!(!ro.contains("id=\"pick\"") && ro.contains("Read-only"));
    }
}
