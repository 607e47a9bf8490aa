//! Parsing `ftp://[user@]host[:port][/dir]`, its TLS forms as FileZilla
//! names them, `ftpes://` (explicit TLS, port 21) and `ftps://` (implicit
//! TLS, port 990), `http://` (keyftpd's HTTP face or stock WebDAV, port
//! 80) and `https://` (the same over TLS, port 443). The password never
//! comes from the URL (it would show in `ps`); see [`super::password`].
use keyfs::spool::journal::percent_decode;
use keyfs::transport::Scheme;

/// A parsed mount URL, before the password is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FtpUrl {
    pub scheme: Scheme,
    /// `None` when the URL names no user (then ~/.netrc or anonymous).
    pub user: Option<String>,
    pub host: String,
    pub port: u16,
    /// Absolute directory on the server, without a trailing slash (`/` for the root).
    pub path: String,
    /// What the scheme asks for.
    pub tls: UrlTls,
}

/// The TLS a URL's scheme asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UrlTls {
    /// `ftp://`
    #[default]
    Plain,
    /// `ftpes://`
    Explicit,
    /// `ftps://` or `https://`: TLS from the first byte.
    Implicit,
}

/// Parses a mount URL; the error is a one-line message for the user.
pub fn parse(url: &str) -> Result<FtpUrl, String> {
    let bad = |why: &str| {
        format!("bad URL {url:?}: {why} (expected ftp://[user@]host[:port][/dir], ftpes://, ftps://, http:// or https://)")
    };
    let (scheme, tls, rest) = match url.split_once("://") {
        Some((s, rest)) => match s.to_ascii_lowercase().as_str() {
            "ftp" => (Scheme::Ftp, UrlTls::Plain, rest),
            "ftpes" => (Scheme::Ftp, UrlTls::Explicit, rest),
            "ftps" => (Scheme::Ftp, UrlTls::Implicit, rest),
            "http" => (Scheme::Http, UrlTls::Plain, rest),
            "https" => (Scheme::Http, UrlTls::Implicit, rest),
            _ => return Err(bad(&format!("unsupported scheme {s:?}"))),
        },
        None => return Err(bad("missing ftp://")),
    };
    if rest.contains(['?', '#']) || rest.chars().any(|c| c.is_control() || c == ' ') {
        return Err(bad("unexpected character"));
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (user, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => {
            if u.contains(':') {
                return Err(bad(
                    "a password in the URL is not accepted; use KEYFS_PASSWORD, ~/.netrc or --password-file",
                ));
            }
            let u = percent_decode(u).ok_or_else(|| bad("bad %-escape in user"))?;
            if u.is_empty() {
                return Err(bad("empty user"));
            }
            (Some(u), h)
        }
        None => (None, authority),
    };
    let (host, port) = if let Some(r) = hostport.strip_prefix('[') {
        let (h, after) = r.split_once(']').ok_or_else(|| bad("unclosed ["))?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(|| bad("junk after ]"))?),
        };
        (h.to_string(), port)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (hostport.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err(bad("missing host"));
    }
    if !host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
    {
        return Err(bad("bad host name"));
    }
    let port = match port {
        None if tls == UrlTls::Implicit && scheme == Scheme::Http => 443,
        None if tls == UrlTls::Implicit => 990,
        None => scheme.default_port(),
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(bad(&format!("bad port {p:?}"))),
        },
    };
    let path = percent_decode(path).ok_or_else(|| bad("bad %-escape in path"))?;
    let mut parts = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => return Err(bad("\"..\" in path")),
            s => parts.push(s),
        }
    }
    Ok(FtpUrl {
        scheme,
        user,
        host,
        port,
        path: format!("/{}", parts.join("/")),
        tls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_and_minimal() {
        assert_eq!(
            parse("ftp://bob@example.org:2121/incoming/tv/").unwrap(),
            FtpUrl {
                scheme: Scheme::Ftp,
                user: Some("bob".into()),
                host: "example.org".into(),
                port: 2121,
                path: "/incoming/tv".into(),
                tls: UrlTls::Plain,
            }
        );
        assert_eq!(
            parse("ftp://127.0.0.1").unwrap(),
            FtpUrl {
                scheme: Scheme::Ftp,
                user: None,
                host: "127.0.0.1".into(),
                port: 21,
                path: "/".into(),
                tls: UrlTls::Plain,
            }
        );
        assert_eq!(
            parse("FTP://a%40b@[::1]:99/x%20y").unwrap().user.as_deref(),
            Some("a@b")
        );
        assert_eq!(parse("ftp://h/x%20y//z").unwrap().path, "/x y/z");
        assert_eq!(parse("ftp://[::1]:99/").unwrap().host, "::1");
        let h = parse("http://bob@nas/share/").unwrap();
        assert_eq!(
            (h.scheme, h.port, h.path.as_str()),
            (Scheme::Http, 80, "/share")
        );
        assert_eq!(parse("HTTP://h:8080").unwrap().port, 8080);
    }

    #[test]
    fn tls_schemes_and_their_ports() {
        let p = |u: &str| parse(u).map(|x| (x.tls, x.port)).ok();
        assert_eq!(p("ftpes://h/"), Some((UrlTls::Explicit, 21)));
        assert_eq!(p("ftps://h/"), Some((UrlTls::Implicit, 990)));
        assert_eq!(p("FTPS://h:2990/"), Some((UrlTls::Implicit, 2990)));
        assert_eq!(p("ftp://h/"), Some((UrlTls::Plain, 21)));
        assert_eq!(p("https://h/"), Some((UrlTls::Implicit, 443)));
        assert_eq!(p("HTTPS://h:8443/"), Some((UrlTls::Implicit, 8443)));
        assert_eq!(parse("https://bob@h/d").map(|u| u.scheme), Ok(Scheme::Http));
        assert!(parse("sftp://h/").is_err());
    }

    #[test]
    fn rejects_bad_urls() {
        for u in [
            "",
            "https://u:pw@h/",
            "sftp://h/",
            "http://u:pw@h/",
            "h:21/x",
            "ftp://",
            "ftp://u:pw@h/",
            "ftp://h:0/",
            "ftp://h:70000/",
            "ftp://h:x/",
            "ftp://@h/",
            "ftp://h/../etc",
            "ftp://h/a?b",
            "ftp://h o/",
            "ftp://h/%zz",
        ] {
            let e = parse(u).unwrap_err();
            assert!(e.starts_with("bad URL"), "{u}: {e}");
            assert!(!e.contains('\n'));
        }
    }
}
