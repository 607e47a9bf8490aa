//! The HTTP transport: WebDAV for the namespace (PROPFIND depth 1 for
//! listings, MKCOL, DELETE, MOVE), GET with Range for reads, and for
//! uploads a whole PUT, restarted from zero after a cut, verified by size
//! (a stock WebDAV server such as `rclone serve webdav` has no resumable
//! upload). Sync HTTP/1.1 (ureq), one kept-alive connection per [`Conn`];
//! over plain `http://` the bulk bodies (GET of a file, the upload's PUT or
//! POST) go on a connection of their own, read and written straight from
//! the socket ([`direct`]): ureq moves a body 8 KiB per system call.
//!
//! [`Conn`]: crate::transport::Conn

mod davxml;
mod direct;
pub mod seed;
mod upload;

use std::io::{self, Read};
use std::time::{Duration, SystemTime};

use base64::Engine;

use crate::key::Key;
use crate::remote::session::join_root;
use crate::transport::{Endpoint, Holding, RemoteEntry, RemoteError, Verified, VerifyError};
use crate::upload::resume::StoredKey;

pub use upload::HttpUpload;

/// An open ranged GET body.
pub type HttpDownload = Box<dyn Read + Send + Sync + 'static>;

/// One logged-in HTTP client: its own connection pool of one.
pub struct Session {
    agent: ureq::Agent,
    /// `http://host:port`, without a path.
    origin: String,
    /// The root directory, absolute (`/` or `/dir`).
    root: String,
    auth: Option<String>,
    /// The server offers keyftpd's resumable POST (`?state`); found by
    /// OPTIONS advertising tus, dropped when a state query is not answered.
    seed: bool,
    /// The key of the next upload (given to `probe` or `replace`).
    key: Option<Key>,
    /// The state the last upload's POST answered, by path: it verifies
    /// that upload without asking again.
    answered: Option<(String, seed::State)>,
    /// The connection of the last direct upload, kept alive for the next.
    idle: Option<std::net::TcpStream>,
    timeout: Duration,
}

/// Largest PROPFIND answer read (some 100000 entries).
const LISTING_MAX: u64 = 64 << 20;

const PROPFIND_BODY: &str = r#"<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:prop><D:resourcetype/><D:getcontentlength/><D:getlastmodified/></D:prop></D:propfind>"#;

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
        413 | 507 => (libc::ENOSPC, true),
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

fn transport_error(e: ureq::Error, what: &str) -> RemoteError {
    match e {
        ureq::Error::Status(code, _) => status_error(code, what),
        ureq::Error::Transport(t) => RemoteError::Io(io::Error::other(format!("{what}: {t}"))),
    }
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
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(timeout)
            .timeout_read(timeout)
            .timeout_write(timeout)
            .max_idle_connections_per_host(1)
            .redirects(0)
            .build();
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
            origin: format!("http://{host}:{}", ep.port),
            root,
            auth,
            seed: false,
            key: None,
            answered: None,
            idle: None,
            timeout,
        };
        match s.stat("")? {
            Some(e) if e.is_dir => {
                s.seed = s.offers_seed();
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

    fn propfind(&mut self, rel: &str, depth: &str) -> Result<Option<String>, RemoteError> {
        let mut url = self.url(rel)?;
        if depth == "1" && !url.ends_with('/') {
            url.push('/');
        }
        let r = self
            .request("PROPFIND", &url)
            .set("Depth", depth)
            .set("Content-Type", "application/xml; charset=utf-8")
            .send_string(PROPFIND_BODY);
        match r {
            // Not `into_string`: its 10 MB cap is a directory of ~20000
            // entries.
            Ok(resp) => {
                let mut body = String::new();
                resp.into_reader()
                    .take(LISTING_MAX + 1)
                    .read_to_string(&mut body)?;
                if body.len() as u64 > LISTING_MAX {
                    return Err(RemoteError::Protocol(format!(
                        "PROPFIND {rel:?}: answer over {LISTING_MAX} bytes"
                    )));
                }
                Ok(Some(body))
            }
            Err(ureq::Error::Status(404, _)) => Ok(None),
            Err(e) => Err(transport_error(e, &format!("PROPFIND {rel:?}"))),
        }
    }

    pub fn list(&mut self, dir: &str) -> Result<Vec<RemoteEntry>, RemoteError> {
        let abs = self.abs(dir)?;
        match self.propfind(dir, "1")? {
            Some(body) => davxml::entries(&body, &abs, false),
            None => Err(status_error(404, &format!("PROPFIND {dir:?}"))),
        }
    }

    pub fn stat(&mut self, path: &str) -> Result<Option<RemoteEntry>, RemoteError> {
        let abs = self.abs(path)?;
        match self.propfind(path, "0")? {
            Some(body) => Ok(davxml::entries(&body, &abs, true)?.into_iter().next()),
            None => Ok(None),
        }
    }

    fn simple(&mut self, method: &str, url: &str, what: &str) -> Result<(), RemoteError> {
        self.request(method, url)
            .call()
            .map(drain)
            .map_err(|e| transport_error(e, what))
    }

    pub fn mkdir(&mut self, path: &str) -> Result<(), RemoteError> {
        let url = self.url(path)? + "/";
        self.simple("MKCOL", &url, &format!("MKCOL {path:?}"))
    }

    /// WebDAV's DELETE of a collection is recursive: an rmdir checks first
    /// that the directory is one, and empty.
    pub fn rmdir(&mut self, path: &str) -> Result<(), RemoteError> {
        match self.stat(path)? {
            None => return Err(status_error(404, &format!("rmdir {path:?}"))),
            Some(e) if !e.is_dir => {
                return Err(RemoteError::Status {
                    errno: libc::ENOTDIR,
                    permanent: true,
                    text: format!("{path:?} is not a directory"),
                })
            }
            Some(_) => {}
        }
        if !self.list(path)?.is_empty() {
            return Err(RemoteError::Status {
                errno: libc::ENOTEMPTY,
                permanent: true,
                text: format!("{path:?} is not empty"),
            });
        }
        let url = self.url(path)? + "/";
        self.simple("DELETE", &url, &format!("DELETE {path:?}"))
    }

    pub fn delete(&mut self, path: &str) -> Result<(), RemoteError> {
        if let Some(e) = self.stat(path)? {
            if e.is_dir {
                return Err(RemoteError::Status {
                    errno: libc::EISDIR,
                    permanent: true,
                    text: format!("{path:?} is a directory"),
                });
            }
        }
        let url = self.url(path)?;
        self.simple("DELETE", &url, &format!("DELETE {path:?}"))
    }

    pub fn rename(&mut self, from: &str, to: &str) -> Result<(), RemoteError> {
        let dir = self.stat(from)?.is_some_and(|e| e.is_dir);
        let slash = if dir { "/" } else { "" };
        let src = self.url(from)? + slash;
        let dst = self.url(to)? + slash;
        self.request("MOVE", &src)
            .set("Destination", &dst)
            .set("Overwrite", "T")
            .call()
            .map(drain)
            .map_err(|e| transport_error(e, &format!("MOVE {from:?} {to:?}")))
    }

    /// Checks that the connection is alive.
    pub fn noop(&mut self) -> Result<(), RemoteError> {
        self.stat("").map(drop)
    }

    /// A GET from `offset` to the end: over plain HTTP read straight from
    /// the socket ([`direct`]), else (or when that reader cannot take the
    /// answer) through ureq.
    pub fn open_read(&mut self, path: &str, offset: u64) -> Result<HttpDownload, RemoteError> {
        if let Some(authority) = self.origin.strip_prefix("http://") {
            let target = encode_path(&self.abs(path)?);
            let what = format!("GET {path:?}");
            match direct::get(
                authority,
                &target,
                self.auth.as_deref(),
                offset,
                self.timeout,
            ) {
                Ok(direct::Answer::Body { status, body }) => {
                    return skip_to(Box::new(body), status, offset)
                }
                Ok(direct::Answer::Status(416)) => return Ok(Box::new(io::empty())),
                Ok(direct::Answer::Status(code)) => return Err(status_error(code, &what)),
                Ok(direct::Answer::Unhandled) => {}
                Err(e) => return Err(io_error(e, &what)),
            }
        }
        let url = self.url(path)?;
        let mut req = self.request("GET", &url);
        if offset > 0 {
            req = req.set("Range", &format!("bytes={offset}-"));
        }
        match req.call() {
            Ok(resp) => {
                let status = resp.status();
                skip_to(resp.into_reader(), status, offset)
            }
            // At or past the end: nothing to read.
            Err(ureq::Error::Status(416, _)) => Ok(Box::new(io::empty())),
            Err(e) => Err(transport_error(e, &format!("GET {path:?}"))),
        }
    }

    /// Ends an upload: waits for the server's answer and keeps the state
    /// a POST answered for [`Session::verify`].
    pub fn finish_upload(&mut self, up: HttpUpload) -> Result<(), RemoteError> {
        let (answered, kept) = up.finish()?;
        self.answered = answered;
        self.idle = kept;
        Ok(())
    }

    /// Whether uploads go by keyftpd's resumable POST, with keys.
    pub fn keeps_keys(&self) -> bool {
        self.seed
    }

    /// keyftpd advertises tus in OPTIONS; its seed flow comes with it.
    fn offers_seed(&self) -> bool {
        let Ok(url) = self.url("") else { return false };
        match self.request("OPTIONS", &url).call() {
            Ok(r) => r.header("tus-resumable").is_some() && r.header("dav").is_some(),
            Err(_) => false,
        }
    }

    /// `GET path?state`; `None` when the answer is not a state (then the
    /// server is not keyftpd after all).
    fn state(&mut self, path: &str) -> Result<Option<seed::State>, RemoteError> {
        let url = self.url(path)? + "?state";
        match self.request("GET", &url).call() {
            Ok(r) if r.content_type() == "application/json" => {
                let body = r.into_string().map_err(RemoteError::Io)?;
                seed::parse_state(&body).map(Some)
            }
            Ok(_) => Ok(None),
            Err(e) => Err(transport_error(e, &format!("GET {path:?}?state"))),
        }
    }

    /// What the server holds for `path`: by the state query where the
    /// server keeps keys; else (a stock WebDAV server) nothing it could
    /// resume.
    pub fn probe(&mut self, path: &str, key: Key) -> Result<Holding, RemoteError> {
        self.key = Some(key);
        if self.seed {
            match self.state(path)? {
                Some(st) if st.is_nothing() => return Ok(Holding::Nothing { open: None }),
                Some(st) => {
                    return Ok(Holding::Partial {
                        size: st.size,
                        key: st.key().map_or(StoredKey::None, StoredKey::Some),
                    })
                }
                None => {
                    log::info!("the server answers no upload state; uploading by PUT");
                    self.seed = false;
                }
            }
        }
        // A stock server cannot append: whatever it holds is replaced by a
        // whole PUT, so there is nothing to resume from (even with
        // --resume=trust-size).
        Ok(Holding::Nothing { open: None })
    }

    /// The next upload of `path` starts from zero (a POST from 0 or a PUT
    /// replaces, so nothing is sent now).
    pub fn replace(&mut self, key: Key) {
        self.key = Some(key);
    }

    /// Starts the upload of the `len` bytes from `offset`: keyftpd's POST
    /// with the key, or a whole PUT (a stock server cannot append).
    pub fn send_from(
        &mut self,
        path: &str,
        offset: u64,
        len: u64,
    ) -> Result<HttpUpload, RemoteError> {
        let url = self.url(path)?;
        self.answered = None;
        if self.seed {
            let boundary = format!("keyfs{:016x}", rand_u64());
            let (head, tail) = seed::form(&boundary, offset, self.key);
            let total = head.len() as u64 + len + tail.len() as u64;
            let ct = format!("multipart/form-data; boundary={boundary}");
            if let Some(a) = self.origin.strip_prefix("http://") {
                let target = encode_path(&self.abs(path)?);
                let what = format!("POST {path:?}");
                let req = direct::request_head(
                    "POST",
                    a,
                    &target,
                    self.auth.as_deref(),
                    &[("Content-Type", &ct)],
                    Some(total),
                );
                let s = direct::Sender::start(
                    a,
                    &req,
                    head.as_bytes(),
                    tail.into_bytes(),
                    total,
                    self.timeout,
                    self.idle.take(),
                )
                .map_err(|e| io_error(e, &what))?;
                return Ok(HttpUpload::direct(s, what, Some(path.to_string())));
            }
            let req = self
                .request("POST", &url)
                .set("Content-Type", &ct)
                .set("Content-Length", &total.to_string());
            return Ok(HttpUpload::start(
                req,
                format!("POST {path:?}"),
                head.into_bytes(),
                tail.into_bytes(),
                Some(path.to_string()),
            ));
        }
        if offset != 0 {
            return Err(RemoteError::Status {
                errno: libc::EOPNOTSUPP,
                permanent: true,
                text: format!("{path:?}: this server cannot resume an upload"),
            });
        }
        if let Some(a) = self.origin.strip_prefix("http://") {
            let target = encode_path(&self.abs(path)?);
            let what = format!("PUT {path:?}");
            let req = direct::request_head("PUT", a, &target, self.auth.as_deref(), &[], Some(len));
            let s = direct::Sender::start(
                a,
                &req,
                &[],
                Vec::new(),
                len,
                self.timeout,
                self.idle.take(),
            )
            .map_err(|e| io_error(e, &what))?;
            return Ok(HttpUpload::direct(s, what, None));
        }
        let req = self
            .request("PUT", &url)
            .set("Content-Length", &len.to_string());
        Ok(HttpUpload::start(
            req,
            format!("PUT {path:?}"),
            Vec::new(),
            Vec::new(),
            None,
        ))
    }

    /// After an upload: keyftpd's state (complete, our size, our key: the
    /// server's CRC of what it wrote equals the key), else the size.
    pub fn verify(&mut self, path: &str, size: u64, crc: u32) -> Result<Verified, VerifyError> {
        if self.seed {
            // The POST's own answer is the state the server recorded for
            // that upload: no need to ask again.
            if let Some((p, st)) = self.answered.take() {
                if p == path {
                    return judge_state(&st, size, crc);
                }
            }
            if let Some(st) = self.state(path)? {
                return judge_state(&st, size, crc);
            }
        }
        match self.stat(path)? {
            None => Err(VerifyError::Gone(format!(
                "server has no file (PROPFIND 404) after upload of {size} bytes"
            ))),
            Some(e) if e.is_dir || e.size != size => Err(VerifyError::Mismatch(format!(
                "server size {} after upload, expected {size}",
                e.size
            ))),
            Some(_) => Ok(Verified::SizeOnly),
        }
    }
}

/// The verification rule on keyftpd's upload state (pure).
pub fn judge_state(st: &seed::State, size: u64, crc: u32) -> Result<Verified, VerifyError> {
    if st.is_nothing() && size > 0 {
        return Err(VerifyError::Gone(format!(
            "server has no file after upload of {size} bytes"
        )));
    }
    if st.size != size {
        return Err(VerifyError::Mismatch(format!(
            "server size {} after upload, expected {size}",
            st.size
        )));
    }
    match st.key() {
        Some(k) if k.0 != crc => Err(VerifyError::Mismatch(format!(
            "server key {:08X} after upload, expected {crc:08X}",
            k.0
        ))),
        Some(_) if st.complete => Ok(Verified::Crc),
        // Our key, our size, not complete: the server's CRC of the bytes
        // differs from the key.
        Some(_) => Err(VerifyError::CrcMismatch(format!(
            "server holds {size} bytes whose CRC is not the key {crc:08X}"
        ))),
        None => Err(VerifyError::Mismatch(format!(
            "server holds no key after upload, expected {crc:08X}"
        ))),
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

/// A GET body positioned at `offset`: a 200 (the whole file) is skipped
/// forward; a file shorter than `offset` reads as empty.
fn skip_to(mut r: HttpDownload, status: u16, offset: u64) -> Result<HttpDownload, RemoteError> {
    if status == 206 || offset == 0 {
        return Ok(r);
    }
    let skipped = io::copy(&mut (&mut r).take(offset), &mut io::sink())?;
    if skipped < offset {
        return Ok(Box::new(io::empty()));
    }
    Ok(r)
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

    fn st(size: u64, key: Option<&str>, complete: bool) -> seed::State {
        seed::State {
            size,
            key: key.map(String::from),
            complete,
        }
    }

    #[test]
    fn state_rule() {
        assert!(matches!(
            judge_state(&st(10, Some("0x7"), true), 10, 7),
            Ok(Verified::Crc)
        ));
        assert!(matches!(
            judge_state(&st(9, Some("0x7"), false), 10, 7),
            Err(VerifyError::Mismatch(_))
        ));
        assert!(matches!(
            judge_state(&st(10, Some("0x8"), true), 10, 7),
            Err(VerifyError::Mismatch(_))
        ));
        assert!(matches!(
            judge_state(&st(10, Some("0x7"), false), 10, 7),
            Err(VerifyError::CrcMismatch(_))
        ));
        assert!(matches!(
            judge_state(&st(0, None, false), 10, 7),
            Err(VerifyError::Gone(_))
        ));
        assert!(matches!(
            judge_state(&st(10, None, true), 10, 7),
            Err(VerifyError::Mismatch(_))
        ));
    }

    #[test]
    fn statuses_map_to_errnos() {
        for (code, errno, permanent) in [
            (404, libc::ENOENT, true),
            (401, libc::EACCES, true),
            (423, libc::EBUSY, false),
            (507, libc::ENOSPC, true),
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
