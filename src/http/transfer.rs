//! Reads and uploads: ranged GETs; the upload's probe, start and
//! verification, by keyftpd's state query and resumable POST (see
//! [`super::seed`]) or a whole PUT; keyftpd's CRC of a prefix.

use std::io::{self, Read};
use std::time::Duration;

use super::{
    direct, encode_path, io_error, rand_u64, refusal, seed, status_error, HttpDownload, HttpUpload,
    Session,
};
use crate::key::Key;
use crate::transport::{CrcMethod, Holding, RemoteError, Verified, VerifyError};
use crate::upload::resume::StoredKey;

/// The pause between two state queries about a partial of ours, and how
/// long to wait at most for its size to settle (see `settled_state`).
const SETTLE: Duration = Duration::from_millis(150);
const SETTLE_MAX: Duration = Duration::from_secs(5);
/// Files up to this size are uploaded whole without asking what the
/// server holds: a resume could save at most these bytes, less than the
/// state query's round trip costs on most links (and on loopback, where
/// 1000 small files made 2000 requests, the query was half the server's
/// work). The server still answers the upload's state, which verifies it.
const ASK_ABOVE: u64 = 64 << 10;
/// Largest state answer read (one is some 60 bytes).
const ANSWER_MAX: u64 = 64 << 10;

impl Session {
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
        self.stated |= answered.is_some();
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
    pub(super) fn offers_seed(&self) -> bool {
        let Ok(url) = self.url("") else { return false };
        match self.request("OPTIONS", &url).call() {
            Ok(r) => r.header("tus-resumable").is_some() && r.header("dav").is_some(),
            Err(_) => false,
        }
    }

    /// `GET path?state`; `None` when the answer is not a state (then the
    /// server is not keyftpd after all).
    fn state(&mut self, path: &str) -> Result<Option<seed::State>, RemoteError> {
        let what = format!("GET {path:?}?state");
        if let Some(a) = self.origin.strip_prefix("http://") {
            let target = encode_path(&self.abs(path)?) + "?state";
            let req = direct::request_head("GET", a, &target, self.auth.as_deref(), &[], None);
            let r = direct::call(a, &req, ANSWER_MAX, self.timeout, self.idle.take())
                .map_err(|e| io_error(e, &what))?;
            self.idle = r.keep;
            let body = String::from_utf8_lossy(&r.body);
            return match r.status {
                401 | 403 if r.content_type == "text/plain" => Err(refusal(r.status, &body, &what)),
                code @ 400.. => Err(status_error(code, &what)),
                _ if r.content_type == "application/json" => {
                    let st = seed::parse_state(&body)?;
                    self.stated = true;
                    Ok(Some(st))
                }
                _ => Ok(None),
            };
        }
        let url = self.url(path)? + "?state";
        match self.request("GET", &url).call() {
            Ok(r) if r.content_type() == "application/json" => {
                let body = r.into_string().map_err(RemoteError::Io)?;
                let st = seed::parse_state(&body)?;
                self.stated = true;
                Ok(Some(st))
            }
            Ok(_) => Ok(None),
            Err(e) => Err(self.peer.error(e, &what)),
        }
    }

    /// What the server holds for `path`: by the state query where the
    /// server keeps keys; else (a stock WebDAV server) nothing it could
    /// resume. A file of up to [`ASK_ABOVE`] bytes is not asked about
    /// once the server has answered a state (so it is keyftpd's flow, not
    /// another server's tus): it goes whole, by a POST from 0, which
    /// replaces whatever is there.
    pub fn probe(&mut self, path: &str, key: Key, size: u64) -> Result<Holding, RemoteError> {
        self.key = Some(key);
        if self.seed && self.stated && size <= ASK_ABOVE {
            return Ok(Holding::Nothing { open: None });
        }
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
}
