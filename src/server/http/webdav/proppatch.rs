//! PROPPATCH's body (RFC 4918 9.2), read without I/O: which properties it
//! sets or removes, and the one keyftpd can set, the modification time, in
//! either form clients send it:
//! - `{DAV:}lastmodified`, Unix seconds: the form ownCloud and Nextcloud
//!   take, which rclone's webdav backend sends to set the time of a file
//!   already on the server (and so does keyfs);
//! - `{DAV:}getlastmodified`, an HTTP date: the live property itself.
//!
//! Anything else is refused (403); a request is all or nothing, so a time
//! set beside a refused property is not set either (424).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::xml_escape;

/// A property as the client named it: (namespace, local name).
type Name = (String, String);

/// What a PROPPATCH asks for.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// The modification time to set (the last one given).
    pub mtime: Option<SystemTime>,
    /// The time properties as named, for the answer.
    time_names: Vec<Name>,
    /// Properties that cannot be set or removed here.
    pub refused: Vec<Name>,
}

fn is_dav(n: roxmltree::Node, name: &str) -> bool {
    n.is_element() && n.tag_name().namespace() == Some("DAV:") && n.tag_name().name() == name
}

/// The time a `set` of property `name` to `value` means, if it is a time
/// keyftpd can set.
fn time_of(name: &Name, value: &str) -> Option<SystemTime> {
    let value = value.trim();
    match (name.0.as_str(), name.1.as_str()) {
        ("DAV:", "lastmodified") => {
            let secs: i64 = value.parse().ok()?;
            let d = Duration::from_secs(secs.unsigned_abs());
            if secs >= 0 {
                UNIX_EPOCH.checked_add(d)
            } else {
                UNIX_EPOCH.checked_sub(d)
            }
        }
        ("DAV:", "getlastmodified") => httpdate::parse_http_date(value).ok(),
        _ => None,
    }
}

/// Reads a `propertyupdate` body; the error is the reason for a 400.
pub(crate) fn plan(body: &[u8]) -> Result<Plan, String> {
    let text = std::str::from_utf8(body).map_err(|_| "PROPPATCH body is not UTF-8")?;
    let doc = roxmltree::Document::parse(text)
        .map_err(|e| format!("PROPPATCH needs a propertyupdate body: {e}"))?;
    let root = doc.root_element();
    if !is_dav(root, "propertyupdate") {
        return Err("PROPPATCH body must be a DAV: propertyupdate".into());
    }
    let mut p = Plan::default();
    for op in root.children().filter(|n| n.is_element()) {
        let set = is_dav(op, "set");
        if !set && !is_dav(op, "remove") {
            continue;
        }
        for prop in op.children().filter(|n| is_dav(*n, "prop")) {
            for e in prop.children().filter(|n| n.is_element()) {
                let name = (
                    e.tag_name().namespace().unwrap_or("").to_string(),
                    e.tag_name().name().to_string(),
                );
                match set
                    .then(|| time_of(&name, e.text().unwrap_or("")))
                    .flatten()
                {
                    Some(t) => {
                        p.mtime = Some(t);
                        p.time_names.push(name);
                    }
                    None => p.refused.push(name),
                }
            }
        }
    }
    Ok(p)
}

fn propstat(names: &[Name], status: &str) -> String {
    let mut s = String::from("<D:propstat><D:prop>");
    for (ns, local) in names {
        s.push_str(&format!(
            "<P:{} xmlns:P=\"{}\"/>",
            xml_escape(local),
            xml_escape(ns)
        ));
    }
    s.push_str(&format!(
        "</D:prop><D:status>HTTP/1.1 {status}</D:status></D:propstat>"
    ));
    s
}

impl Plan {
    /// The `propstat` elements of the answer.
    pub fn propstats(&self) -> String {
        if self.refused.is_empty() {
            return propstat(&self.time_names, "200 OK");
        }
        let mut s = propstat(&self.refused, "403 Forbidden");
        if !self.time_names.is_empty() {
            s.push_str(&propstat(&self.time_names, "424 Failed Dependency"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(props: &str) -> Vec<u8> {
        format!(
            r#"<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:"><D:set><D:prop>{props}</D:prop></D:set></D:propertyupdate>"#
        )
        .into_bytes()
    }

    #[test]
    fn times_in_both_forms() {
        let p = plan(&body(
            r#"<lastmodified xmlns="DAV:">978307200</lastmodified>"#,
        ))
        .unwrap();
        assert_eq!(p.mtime, Some(UNIX_EPOCH + Duration::from_secs(978_307_200)));
        assert!(p.refused.is_empty());
        assert!(p.propstats().contains("lastmodified") && p.propstats().contains("200 OK"));
        let p = plan(&body(
            "<D:getlastmodified>Mon, 01 Jan 2001 00:00:00 GMT</D:getlastmodified>",
        ))
        .unwrap();
        assert_eq!(p.mtime, Some(UNIX_EPOCH + Duration::from_secs(978_307_200)));
    }

    #[test]
    fn others_refused_and_then_nothing_set() {
        let p = plan(&body(
            r#"<D:lastmodified>5</D:lastmodified><Z:color xmlns:Z="urn:z">red</Z:color>"#,
        ))
        .unwrap();
        assert_eq!(p.refused, vec![("urn:z".into(), "color".into())]);
        let s = p.propstats();
        assert!(s.contains("403 Forbidden") && s.contains("424 Failed Dependency"));
        // A bad value, and a remove, are refused too.
        assert_eq!(
            plan(&body("<D:lastmodified>soon</D:lastmodified>"))
                .unwrap()
                .refused
                .len(),
            1
        );
        let rm = br#"<D:propertyupdate xmlns:D="DAV:"><D:remove><D:prop><D:lastmodified/></D:prop></D:remove></D:propertyupdate>"#;
        let p = plan(rm).unwrap();
        assert!(p.mtime.is_none() && p.refused.len() == 1);
    }

    #[test]
    fn malformed_bodies() {
        assert!(plan(b"").is_err());
        assert!(plan(b"<a>").is_err());
        assert!(plan(b"<propfind xmlns=\"DAV:\"/>").is_err());
        assert!(plan(&[0xff, 0xfe]).is_err());
    }
}
