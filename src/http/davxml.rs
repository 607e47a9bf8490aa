//! Reading a WebDAV `multistatus` (PROPFIND) into entries (pure).

use std::time::SystemTime;

use crate::spool::record::percent_decode;
use crate::transport::RemoteEntry;
use crate::transport::RemoteError;

const DAV: &str = "DAV:";

/// The path part of an href (absolute URL or absolute path), decoded,
/// without a trailing `/` (the root stays `/`).
fn href_path(href: &str) -> Option<String> {
    let p = match href.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => href,
    };
    let d = percent_decode(p)?;
    let t = d.trim_end_matches('/');
    Some(if t.is_empty() { "/".into() } else { t.into() })
}

fn child<'a, 'i>(n: roxmltree::Node<'a, 'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
    n.descendants().find(|c| {
        c.is_element() && c.tag_name().name() == name && c.tag_name().namespace() == Some(DAV)
    })
}

/// Whether a PROPPATCH answer says property `{DAV:}name` was set: a
/// `propstat` naming it with a 2xx status.
pub fn prop_was_set(body: &str, name: &str) -> bool {
    let Ok(doc) = roxmltree::Document::parse(body) else {
        return false;
    };
    doc.descendants()
        .filter(|n| n.is_element() && n.tag_name().name() == "propstat")
        .any(|ps| {
            let ok = child(ps, "status")
                .and_then(|s| s.text())
                .and_then(|s| s.split_whitespace().nth(1))
                .is_some_and(|code| code.starts_with('2'));
            ok && child(ps, name).is_some()
        })
}

/// The entries of a PROPFIND answer about `abs` (absolute, no trailing
/// `/`). With `this`, the entry for `abs` itself (named by its last
/// segment); otherwise its children.
pub fn entries(body: &str, abs: &str, this: bool) -> Result<Vec<RemoteEntry>, RemoteError> {
    let doc = roxmltree::Document::parse(body)
        .map_err(|e| RemoteError::Protocol(format!("PROPFIND answer: {e}")))?;
    let want = {
        let t = abs.trim_end_matches('/');
        if t.is_empty() {
            "/".to_string()
        } else {
            t.to_string()
        }
    };
    let mut out = Vec::new();
    for r in doc.descendants().filter(|n| {
        n.is_element() && n.tag_name().name() == "response" && n.tag_name().namespace() == Some(DAV)
    }) {
        let Some(path) = child(r, "href")
            .and_then(|h| h.text())
            .and_then(|h| href_path(h.trim()))
        else {
            continue;
        };
        let is_self = path == want;
        if is_self != this {
            continue;
        }
        if !this {
            // Only direct children count.
            let parent = path.rsplit_once('/').map_or("", |(p, _)| p);
            let parent = if parent.is_empty() { "/" } else { parent };
            if parent != want {
                continue;
            }
        }
        let name = path.rsplit('/').next().unwrap_or("").to_string();
        if !this && (name.is_empty() || name == "." || name == "..") {
            continue;
        }
        let is_dir = child(r, "resourcetype").is_some_and(|t| child(t, "collection").is_some());
        let size = child(r, "getcontentlength")
            .and_then(|n| n.text())
            .and_then(|t| t.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let mtime: Option<SystemTime> = child(r, "getlastmodified")
            .and_then(|n| n.text())
            .and_then(|t| httpdate::parse_http_date(t.trim()).ok());
        out.push(RemoteEntry {
            name,
            is_dir,
            size: if is_dir { 0 } else { size },
            mtime,
            mode: None,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proppatch_answers() {
        let set = r#"<D:multistatus xmlns:D="DAV:"><D:response><D:href>/f</D:href><D:propstat><D:prop><P:lastmodified xmlns:P="DAV:"/></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response></D:multistatus>"#;
        assert!(prop_was_set(set, "lastmodified"));
        // golang.org/x/net/webdav (rclone serve webdav) without dead properties.
        let refused = r#"<D:multistatus xmlns:D="DAV:"><D:response><D:href>/f</D:href><D:propstat><D:prop><lastmodified xmlns="DAV:"/></D:prop><D:status>HTTP/1.1 403 Forbidden</D:status></D:propstat></D:response></D:multistatus>"#;
        assert!(!prop_was_set(refused, "lastmodified"));
        assert!(!prop_was_set("<html>", "lastmodified"));
    }

    const RCLONE: &str = r#"<?xml version="1.0" encoding="UTF-8"?><D:multistatus xmlns:D="DAV:">
<D:response><D:href>/d/</D:href><D:propstat><D:prop><D:resourcetype><D:collection xmlns:D="DAV:"/></D:resourcetype><D:getlastmodified>Wed, 02 Dec 2026 03:00:00 GMT</D:getlastmodified></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>
<D:response><D:href>/d/a%20b.txt</D:href><D:propstat><D:prop><D:resourcetype></D:resourcetype><D:getcontentlength>12</D:getcontentlength><D:getlastmodified>Wed, 02 Dec 2026 03:00:00 GMT</D:getlastmodified></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>
<D:response><D:href>http://h:1/d/sub/</D:href><D:propstat><D:prop><D:resourcetype><D:collection/></D:resourcetype></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>
</D:multistatus>"#;

    #[test]
    fn children_and_self() {
        let e = entries(RCLONE, "/d", false).unwrap();
        assert_eq!(e.len(), 2, "{e:?}");
        assert_eq!(e[0].name, "a b.txt");
        assert_eq!(e[0].size, 12);
        assert!(!e[0].is_dir);
        assert!(e[0].mtime.is_some());
        assert_eq!(e[1].name, "sub");
        assert!(e[1].is_dir);
        let me = entries(RCLONE, "/d", true).unwrap();
        assert_eq!(me.len(), 1);
        assert!(me[0].is_dir);
        assert!(entries("<x", "/d", false).is_err());
    }

    #[test]
    fn other_prefixes_count() {
        let b = r#"<multistatus xmlns="DAV:"><response><href>/f</href><propstat><prop><getcontentlength>3</getcontentlength></prop></propstat></response></multistatus>"#;
        let e = entries(b, "/f", true).unwrap();
        assert_eq!(
            (e[0].name.as_str(), e[0].size, e[0].is_dir),
            ("f", 3, false)
        );
        assert!(entries(b, "/", false).unwrap()[0].name == "f");
    }
}
