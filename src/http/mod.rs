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
//! permanent error of [`crate::remote::tls::untrusted`], as over FTPS.
//!
//! Over plain `http://` the bulk bodies (GET of a file, the upload's PUT
//! or POST) go on a connection of their own, read and written straight
//! from the socket ([`direct`]): ureq moves a body 8 KiB per system call.
//! `https://` keeps them on ureq.
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
use crate::remote::tls;
use crate::transport::{
    Applied, CrcMethod, Endpoint, Holding, RemoteEntry, RemoteError, Verified, VerifyError,
};
use crate::upload::resume::StoredKey;

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
    /// The key of the next upload (given to `probe` or `replace`).
    key: Option<Key>,
    /// The server answers `?crc=N` (keyftpd, with `seed`); dropped when
    /// refused, and the refusal kept for `take_refused`.
    crc: bool,
    refused: Vec<(CrcMethod, String)>,
    /// The state the last upload's POST answered, by path: it verifies
    /// that upload without asking again.
    answered: Option<(String, seed::State)>,
    /// The connection of the last direct upload, kept alive for the next.
    idle: Option<std::net::TcpStream>,
    timeout: Duration,
}

/// The pause between two state queries about a partial of ours, and how
/// long to wait at most for its size to settle (see `settled_state`).
const SETTLE: Duration = Duration::from_millis(150);
const SETTLE_MAX: Duration = Duration::from_secs(5);

/// Largest PROPFIND answer read (some 100000 entries).
const LISTING_MAX: u64 = 64 << 20;

/// A listing answer larger than this is followed by a trim of the heaps.
const TRIM_AFTER: usize = 64 << 10;

/// Gives the heaps' free pages back to the system. A big listing's answer
/// and its parsed tree (some 1.5 MiB for 1000 entries) are freed at once,
/// but glibc keeps a thread's freed heap memory resident, and each FUSE
/// thread has its own heap: over a `cp -r` into a large directory the
/// mount held several megabytes more than over FTP, whose listing is read
/// line by line.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}

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
                match why.lines().next().map(str::trim).filter(|l| !l.is_empty()) {
                    Some(line) => status_error(code, &format!("{what} ({line})")),
                    None => status_error(code, what),
                }
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
            Err(e) => Err(self.peer.error(e, &format!("PROPFIND {rel:?}"))),
        }
    }

    pub fn list(&mut self, dir: &str) -> Result<Vec<RemoteEntry>, RemoteError> {
        let abs = self.abs(dir)?;
        let Some(body) = self.propfind(dir, "1")? else {
            return Err(status_error(404, &format!("PROPFIND {dir:?}")));
        };
        let r = davxml::entries(&body, &abs, false);
        if body.len() > TRIM_AFTER {
            drop(body);
            release_free_memory();
        }
        r
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
            .map_err(|e| self.peer.error(e, what))
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
            .map_err(|e| self.peer.error(e, &format!("MOVE {from:?} {to:?}")))
    }

    /// Sets the modification time of `path` by PROPPATCH of
    /// `{DAV:}lastmodified` in Unix seconds: the form ownCloud, Nextcloud
    /// and keyftpd take (rclone's webdav backend sends it too). One request
    /// for a file already on the server, whenever the time was set, where a
    /// header on the upload (`X-OC-Mtime`) would serve only an upload.
    /// A server that does not set it (a 207 without a 2xx for it, or no
    /// PROPPATCH at all) keeps its own time: `Unsupported`.
    pub fn set_mtime(&mut self, path: &str, t: SystemTime) -> Result<Applied, RemoteError> {
        let secs = match t.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(d) => d.as_secs() as i64,
            Err(e) => -(e.duration().as_secs() as i64),
        };
        let body = format!(
            r#"<?xml version="1.0" encoding="utf-8"?><D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><D:lastmodified>{secs}</D:lastmodified></D:prop></D:set></D:propertyupdate>"#
        );
        let url = self.url(path)?;
        let r = self
            .request("PROPPATCH", &url)
            .set("Content-Type", "application/xml; charset=utf-8")
            .send_string(&body);
        match r {
            Ok(resp) => {
                let mut text = String::new();
                resp.into_reader().take(1 << 20).read_to_string(&mut text)?;
                Ok(if davxml::prop_was_set(&text, "lastmodified") {
                    Applied::Done
                } else {
                    Applied::Unsupported
                })
            }
            Err(ureq::Error::Status(404, _)) => {
                Err(status_error(404, &format!("PROPPATCH {path:?}")))
            }
            Err(ureq::Error::Status(401, _)) => {
                Err(status_error(401, &format!("PROPPATCH {path:?}")))
            }
            Err(ureq::Error::Status(_, _)) => Ok(Applied::Unsupported),
            Err(e) => Err(self.peer.error(e, &format!("PROPPATCH {path:?}"))),
        }
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
            Err(e) => Err(self.peer.error(e, &format!("GET {path:?}"))),
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

    /// Whether the server offers a CRC of a prefix (keyftpd's `?crc`).
    pub fn offers_crc(&self) -> bool {
        self.crc
    }

    /// Stops asking for the CRC of a prefix.
    pub fn drop_crc(&mut self) {
        self.crc = false;
    }

    /// The refusals of `?crc` since the last call.
    pub fn take_refused(&mut self) -> Vec<(CrcMethod, String)> {
        std::mem::take(&mut self.refused)
    }

    /// keyftpd's CRC of the first `end` bytes of `path` (`None`: all of
    /// it), asked as `GET path?crc=N`, to check a partial before resuming
    /// it as FTP's XCRC does; `None` where the server offers none. Call it
    /// only for a file the server just said exists: an answer that is not
    /// a CRC (4xx other than 404, or another body) means the server will
    /// not tell, so the method is dropped (and reported), as over FTP.
    pub fn prefix_crc(&mut self, path: &str, end: Option<u64>) -> Result<Option<u32>, RemoteError> {
        if !self.crc {
            return Ok(None);
        }
        let mut url = self.url(path)? + "?crc";
        if let Some(e) = end {
            url.push_str(&format!("={e}"));
        }
        let what = format!("GET {path:?}?crc");
        let why = match self.request("GET", &url).call() {
            Ok(r) if r.content_type() == "application/json" => {
                let body = r.into_string().map_err(RemoteError::Io)?;
                match seed::parse_crc(&body) {
                    Ok(c) => return Ok(Some(c)),
                    Err(e) => e.to_string(),
                }
            }
            Ok(r) => format!("{what}: answered {} with no CRC", r.status()),
            Err(ureq::Error::Status(code, _)) if (400..500).contains(&code) && code != 404 => {
                format!("HTTP {code} to {what}")
            }
            Err(e) => return Err(self.peer.error(e, &what)),
        };
        log::warn!("{path}: the server gives no CRC of a prefix ({why}); not asking any more");
        self.crc = false;
        self.refused.push((CrcMethod::HttpCrc, why));
        Ok(None)
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
            Err(e) => Err(self.peer.error(e, &format!("GET {path:?}?state"))),
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
                // A file with no key (put by a plain client): the POST
                // continues only a partial of the same key, so whatever is
                // there is replaced from zero, as on a stock server.
                Some(st) if st.key().is_none() => return Ok(Holding::Nothing { open: None }),
                Some(st) => {
                    let st = if st.key() == Some(key) && !st.complete {
                        self.settled_state(path, st)?
                    } else {
                        st
                    };
                    return Ok(Holding::Partial {
                        size: st.size,
                        key: st.key().map_or(StoredKey::None, StoredKey::Some),
                    });
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

    /// A partial of ours that may still be growing: right after a cut the
    /// server may still be writing what it received (FTP's probe waits for
    /// that under the file's lock; the state query takes none). A resume
    /// at a size that then grows is refused (409) only once the server has
    /// read the form, by when megabytes of body are in the socket buffers;
    /// so the state is asked again until two answers, `SETTLE` apart,
    /// agree (at most `SETTLE_MAX`).
    fn settled_state(
        &mut self,
        path: &str,
        mut st: seed::State,
    ) -> Result<seed::State, RemoteError> {
        let deadline = std::time::Instant::now() + SETTLE_MAX;
        loop {
            std::thread::sleep(SETTLE);
            let Some(again) = self.state(path)? else {
                return Ok(st);
            };
            if again == st || std::time::Instant::now() > deadline {
                return Ok(again);
            }
            st = again;
        }
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
                self.peer.clone(),
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
            self.peer.clone(),
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
