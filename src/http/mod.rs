//! The HTTP transport: WebDAV for the namespace (PROPFIND depth 1 for
//! listings, MKCOL, DELETE, MOVE, PROPPATCH of the time), GET with Range
//! for reads, and for uploads a whole PUT, restarted from zero after a cut,
//! verified by size (a stock WebDAV server such as `rclone serve webdav`
//! has no resumable upload); against keyftpd, its resumable POST with the
//! key, a partial checked by `?crc=N` and verified by `?state`. Sync
//! HTTP/1.1 (ureq), one kept-alive connection per [`Conn`].
//!
//! `https://` is the same over TLS, with the rustls client config FTPS
//! uses (the system roots and `--ca-file`, or `--pin-sha256`). ureq
//! reconnects by itself inside a session, so every request's failure is
//! looked at: a certificate that is not trusted, on the first connection
//! or on any later one (a server whose certificate was replaced), is the
//! permanent error of `crate::transport::tls::untrusted`, as over FTPS.
//!
//! Over plain `http://` the bulk bodies (GET of a file, the upload's PUT
//! or POST) go on a connection of their own, read and written straight
//! from the socket ([`direct`]): ureq moves a body 8 KiB per system call.
//! `https://` keeps them on ureq.
//!
//! Here the session and its errors; the namespace in [`dav`], reads and
//! uploads in [`transfer`].
//!
//! [`Conn`]: crate::transport::Conn

mod dav;
mod davxml;
mod direct;
pub mod seed;
mod transfer;
mod upload;

use std::io::{self, Read};
use std::time::{Duration, SystemTime};

use base64::Engine;

use crate::key::Key;
use crate::transport::{join_root, tls};
use crate::transport::{CrcMethod, Endpoint, RemoteError};

pub use upload::HttpUpload;

/// An open ranged GET body.
pub type HttpDownload = Box<dyn Read + Send + Sync + 'static>;

/// One logged-in HTTP client: its own connection pool of one.
pub struct Session {
    agent: ureq::Agent,
    /// `http://host:port` or `https://host:port`, without a path.
    origin: String,
    /// Who failures are reported against.
    peer: Peer,
    /// The root directory, absolute (`/` or `/dir`).
    root: String,
    auth: Option<String>,
    /// The server offers keyftpd's resumable POST (`?state`); found by
    /// OPTIONS advertising tus, dropped when a state query is not answered.
    seed: bool,
    /// The server has answered an upload's state (to a query or a POST):
    /// its seed flow is known to work, so a small file may skip the query.
    stated: bool,
    /// The key of the next upload (given to `probe` or `replace`).
    key: Option<Key>,
    /// The server answers `?crc=N` (keyftpd, with `seed`); dropped when
    /// refused, and the refusal kept for `take_refused`.
    crc: bool,
    refused: Vec<(CrcMethod, String)>,
    /// The state the last upload's POST answered, by path: it verifies
    /// that upload without asking again.
    answered: Option<(String, seed::State)>,
    /// The kept-alive connection of the last direct request (a state
    /// query or an upload), for the next.
    idle: Option<std::net::TcpStream>,
    timeout: Duration,
}

/// An HTTP status as the one error type: the errno a program sees and
/// whether a retry can help.
pub fn status_error(status: u16, what: &str) -> RemoteError {
    let (errno, permanent) = match status {
        401 | 403 => (libc::EACCES, true),
        404 | 410 => (libc::ENOENT, true),
        // MKCOL on an existing name; a method the server does not allow.
        405 => (libc::EEXIST, true),
        // A missing parent (MKCOL, PUT, MOVE).
        409 => (libc::ENOENT, true),
        412 => (libc::EEXIST, true),
        414 => (libc::ENAMETOOLONG, true),
        413 => (libc::ENOSPC, true),
        // The server's disk is full (keyftpd's 452 over FTP): room can be
        // made, and an upload then goes on by itself.
        507 => (libc::ENOSPC, false),
        416 => (libc::EINVAL, true),
        423 => (libc::EBUSY, false),
        501 => (libc::ENOSYS, true),
        400..=499 => (libc::EIO, true),
        _ => (libc::EIO, false),
    };
    RemoteError::Status {
        errno,
        permanent,
        text: format!("HTTP {status} to {what}"),
    }
}

/// A refused login (401, 403) with the one-line reason of its text body.
fn refusal(code: u16, why: &str, what: &str) -> RemoteError {
    status_error(code, &with_reason(what, why))
}

/// `what`, followed by the first line of a text answer `why` if it has one.
fn with_reason(what: &str, why: &str) -> String {
    match why.lines().next().map(str::trim).filter(|l| !l.is_empty()) {
        Some(line) => format!("{what} ({line})"),
        None => what.to_string(),
    }
}

/// The server a session talks to, for error messages: its host, and what
/// the client trusts when the connection is TLS.
#[derive(Clone, Debug)]
pub(crate) struct Peer {
    host: String,
    trust: Option<String>,
}

impl Peer {
    /// A failed request as the one error type.
    pub(crate) fn error(&self, e: ureq::Error, what: &str) -> RemoteError {
        match e {
            // A refused login says why (e.g. keyftpd's --require-tls over
            // plain HTTP): its one-line text reason goes with the status.
            ureq::Error::Status(code @ (401 | 403), r) if r.content_type() == "text/plain" => {
                let mut why = String::new();
                let _ = r.into_reader().take(300).read_to_string(&mut why);
                refusal(code, &why, what)
            }
            ureq::Error::Status(code, _) => status_error(code, what),
            ureq::Error::Transport(t) => {
                if let (Some(trust), Some(tls)) = (&self.trust, rustls_cause(&t)) {
                    if let Some(msg) = tls::untrusted(&self.host, trust, tls) {
                        return tls::untrusted_error(msg);
                    }
                }
                RemoteError::Io(io::Error::other(format!("{what}: {t}")))
            }
        }
    }
}

/// The TLS error behind a transport failure, if any (ureq wraps it in an
/// `io::Error`, whose `source` skips the error it carries).
fn rustls_cause(t: &ureq::Transport) -> Option<&rustls::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(t);
    while let Some(e) = cur {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(r) = e
            .downcast_ref::<io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(r);
        }
        cur = e.source();
    }
    None
}

/// Percent-encodes an absolute path, segment by segment.
fn encode_path(abs: &str) -> String {
    let mut out = String::with_capacity(abs.len());
    for b in abs.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Session {
    /// Connects and checks the login and the root directory (PROPFIND).
    pub fn connect(ep: &Endpoint, timeout: Duration) -> Result<Session, RemoteError> {
        let mut builder = ureq::AgentBuilder::new()
            .timeout_connect(timeout)
            .timeout_read(timeout)
            .timeout_write(timeout)
            .max_idle_connections_per_host(1)
            .redirects(0);
        let client = ep.tls.client();
        if let Some(c) = client {
            builder = builder.tls_config(c.config.clone());
        }
        let agent = builder.build();
        let scheme = if client.is_some() { "https" } else { "http" };
        let host = if ep.host.contains(':') {
            format!("[{}]", ep.host)
        } else {
            ep.host.clone()
        };
        let auth = (!ep.user.is_empty() && ep.user != "anonymous").then(|| {
            let raw = format!("{}:{}", ep.user, ep.password);
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(raw)
            )
        });
        let root = join_root("", ep.root.trim_start_matches('/'))?;
        let mut s = Session {
            agent,
            origin: format!("{scheme}://{host}:{}", ep.port),
            peer: Peer {
                host: ep.host.clone(),
                trust: client.map(|c| c.trust.clone()),
            },
            root,
            auth,
            seed: false,
            stated: false,
            key: None,
            crc: false,
            refused: Vec::new(),
            answered: None,
            idle: None,
            timeout,
        };
        match s.stat("")? {
            Some(e) if e.is_dir => {
                s.seed = s.offers_seed();
                s.crc = s.seed;
                Ok(s)
            }
            Some(_) => Err(status_error(409, "the mount's root: not a directory")),
            None => Err(status_error(404, "the mount's root")),
        }
    }

    fn abs(&self, rel: &str) -> Result<String, RemoteError> {
        let root = self.root.trim_end_matches('/');
        join_root(root, rel)
    }

    fn url(&self, rel: &str) -> Result<String, RemoteError> {
        Ok(format!("{}{}", self.origin, encode_path(&self.abs(rel)?)))
    }

    pub(crate) fn request(&self, method: &str, url: &str) -> ureq::Request {
        let r = self.agent.request(method, url);
        match &self.auth {
            Some(a) => r.set("Authorization", a),
            None => r,
        }
    }
}

/// An I/O error of a request, with what the request was.
fn io_error(e: io::Error, what: &str) -> RemoteError {
    RemoteError::Io(io::Error::new(e.kind(), format!("{what}: {e}")))
}

/// Reads the rest of a small answer so ureq returns its connection to the
/// pool (a response dropped unread closes it: a new connection for the
/// next request).
fn drain(resp: ureq::Response) {
    let _ = io::copy(&mut resp.into_reader().take(64 << 10), &mut io::sink());
}

/// A multipart boundary that does not depend on the data.
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_untrusted_certificate_is_permanent_and_says_why() {
        let peer = Peer {
            host: "nas".into(),
            trust: Some("pin ab".into()),
        };
        // As ureq reports a failed handshake: an io::Error carrying rustls's.
        let tls_failure =
            |e: rustls::Error| ureq::Error::from(io::Error::new(io::ErrorKind::InvalidData, e));
        let expired = rustls::Error::InvalidCertificate(rustls::CertificateError::Expired);
        let r = peer.error(tls_failure(expired.clone()), "PROPFIND \"\"");
        assert!(r.is_permanent(), "{r}");
        assert_eq!(
            r.to_string(),
            "certificate of nas not trusted (pin ab): the certificate has expired"
        );
        // Another TLS failure (a garbled record) may pass: retried.
        let r = peer.error(tls_failure(rustls::Error::DecryptError), "GET");
        assert!(!r.is_permanent(), "{r}");
        // Plain HTTP has no certificate to judge.
        let plain = Peer {
            host: "nas".into(),
            trust: None,
        };
        assert!(!plain.error(tls_failure(expired), "GET").is_permanent());
    }

    #[test]
    fn statuses_map_to_errnos() {
        for (code, errno, permanent) in [
            (404, libc::ENOENT, true),
            (401, libc::EACCES, true),
            (423, libc::EBUSY, false),
            (507, libc::ENOSPC, false),
            (413, libc::ENOSPC, true),
            (503, libc::EIO, false),
        ] {
            let e = status_error(code, "x");
            assert_eq!(
                (e.to_errno(), e.is_permanent()),
                (errno, permanent),
                "{code}"
            );
        }
    }
}
