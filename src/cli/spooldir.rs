//! The default spool directory, derived from the URL's server, port, user
//! and path *only*: a remount of the same URL finds its pending uploads
//! whatever the password, the options or their order.

use std::path::PathBuf;

use super::url::FtpUrl;
use keyfs::transport::Scheme;

/// `<cache>/keyfs/<host>_<port>_<user>_<path>-<crc>`: readable, with a short
/// hash of the exact fields so that sanitising never merges two URLs. An
/// http:// URL gets an `http_` prefix (and its own hash), so the same
/// server over FTP and HTTP never shares a spool; ftp:// names stay as
/// they were.
pub fn name_for(url: &FtpUrl, user: &str) -> String {
    let scheme = match url.scheme {
        Scheme::Ftp => "",
        Scheme::Http => "http_",
    };
    let exact = format!("{scheme}{}\n{}\n{}\n{}", url.host, url.port, user, url.path);
    let raw = format!(
        "{scheme}{}_{}_{}_{}",
        url.host,
        url.port,
        user,
        url.path.trim_start_matches('/')
    );
    let mut clean: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    while clean.ends_with('_') {
        clean.pop();
    }
    clean.truncate(100);
    format!("{clean}-{:08x}", crc32fast::hash(exact.as_bytes()))
}

/// The cache base: `$XDG_CACHE_HOME/keyfs`, else `~/.cache/keyfs`.
pub fn cache_base(xdg: Option<String>, home: Option<String>) -> Result<PathBuf, String> {
    match (xdg.filter(|x| x.starts_with('/')), home) {
        (Some(x), _) => Ok(PathBuf::from(x).join("keyfs")),
        (None, Some(h)) if !h.is_empty() => Ok(PathBuf::from(h).join(".cache").join("keyfs")),
        _ => Err("cannot find a spool directory: set --spool, XDG_CACHE_HOME or HOME".into()),
    }
}

pub fn default_spool(url: &FtpUrl, user: &str) -> Result<PathBuf, String> {
    let base = cache_base(
        std::env::var("XDG_CACHE_HOME").ok(),
        std::env::var("HOME").ok(),
    )?;
    Ok(base.join(name_for(url, user)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::url::parse;

    #[test]
    fn depends_on_url_fields_only() {
        let a = parse("ftp://bob@example.org:2121/tv/rec").unwrap();
        let n = name_for(&a, "bob");
        assert!(n.starts_with("example.org_2121_bob_tv_rec-"), "{n}");
        assert_eq!(
            n,
            name_for(&parse("ftp://bob@example.org:2121/tv/rec/").unwrap(), "bob")
        );
        assert_ne!(
            n,
            name_for(&parse("ftp://bob@example.org:2121/tv_rec").unwrap(), "bob")
        );
        assert_ne!(
            n,
            name_for(&parse("ftp://bob@example.org/tv/rec").unwrap(), "bob")
        );
        assert!(!n.contains('/'));
        let h = name_for(&parse("http://bob@example.org:2121/tv/rec").unwrap(), "bob");
        assert!(h.starts_with("http_example.org_2121_bob_tv_rec-"), "{h}");
    }

    #[test]
    fn base() {
        assert_eq!(
            cache_base(Some("/x".into()), Some("/h".into())).unwrap(),
            PathBuf::from("/x/keyfs")
        );
        assert_eq!(
            cache_base(Some("rel".into()), Some("/h".into())).unwrap(),
            PathBuf::from("/h/.cache/keyfs")
        );
        assert!(cache_base(None, None).is_err());
    }
}
