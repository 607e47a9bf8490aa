//! An HTTP upload as a `Write`. Over plain `http://` the body goes straight
//! into its socket ([`super::direct::Sender`]), by `write` or `sendfile`,
//! as into an FTP data connection. Otherwise ureq runs the request on its
//! own thread and reads the body from a bounded channel (it copies a body
//! through an 8 KiB buffer, one `send` each); memory stays at a few chunks.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::direct::Sender;
use super::seed::{self, State};
use crate::transport::{RemoteError, Sent};

/// Chunks in flight between the worker and the request thread.
const IN_FLIGHT: usize = 2;

pub struct HttpUpload {
    tx: Option<SyncSender<Vec<u8>>>,
    abort: Arc<AtomicBool>,
    done: Option<JoinHandle<Result<Option<String>, RemoteError>>>,
    /// The path of a keyftpd POST, whose answer is the upload's state.
    seed_path: Option<String>,
    /// The body's own socket (plain HTTP); then `tx` and `done` are None.
    direct: Option<Sender>,
    /// The request, for messages.
    what: String,
}

/// What a finished upload leaves: for keyftpd's POST, the path and the
/// state it answered; after a direct upload, its connection when the
/// server keeps it open.
pub(super) type Finished = (Option<(String, State)>, Option<TcpStream>);

/// Largest answer to an upload that is read (a state is some 60 bytes).
const ANSWER_MAX: u64 = 64 << 10;

struct Body {
    rx: Receiver<Vec<u8>>,
    /// Sent after the last chunk, unless the upload was abandoned.
    tail: Option<Vec<u8>>,
    abort: Arc<AtomicBool>,
    cur: Vec<u8>,
    pos: usize,
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.abort.load(Ordering::SeqCst) {
                // An error, not an end: the server must not take a cut
                // body for a whole one.
                return Err(io::Error::other("upload abandoned"));
            }
            if self.pos < self.cur.len() {
                let n = buf.len().min(self.cur.len() - self.pos);
                buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            match self.rx.recv() {
                Ok(v) => {
                    self.cur = v;
                    self.pos = 0;
                }
                // The sender is gone: the end of the body, unless it was
                // abandoned.
                Err(_) if self.abort.load(Ordering::SeqCst) => {
                    return Err(io::Error::other("upload abandoned"))
                }
                Err(_) => match self.tail.take() {
                    Some(t) => {
                        self.cur = t;
                        self.pos = 0;
                    }
                    None => return Ok(0),
                },
            }
        }
    }
}

impl HttpUpload {
    /// Runs `req` with a body of `head`, the bytes written, then `tail`.
    /// `seed_path`: this is keyftpd's POST of that path; it answers the
    /// upload's state, and a 409 means the offset or key no longer matches
    /// (asking again decides anew).
    pub(super) fn start(
        req: ureq::Request,
        peer: super::Peer,
        what: String,
        head: Vec<u8>,
        tail: Vec<u8>,
        seed_path: Option<String>,
    ) -> HttpUpload {
        let conflict_is_transient = seed_path.is_some();
        let what2 = what.clone();
        let (tx, rx) = sync_channel(IN_FLIGHT);
        let abort = Arc::new(AtomicBool::new(false));
        let body = Body {
            rx,
            tail: Some(tail),
            abort: abort.clone(),
            cur: head,
            pos: 0,
        };
        let done = std::thread::spawn(move || match req.send(body) {
            // Read to its end, so ureq keeps the connection for the next
            // request.
            Ok(resp) => {
                let mut answer = String::new();
                match resp
                    .into_reader()
                    .take(ANSWER_MAX)
                    .read_to_string(&mut answer)
                {
                    Ok(_) => Ok(Some(answer)),
                    Err(_) => Ok(None),
                }
            }
            Err(ureq::Error::Status(409, _)) if conflict_is_transient => Err(RemoteError::Status {
                errno: libc::EAGAIN,
                permanent: false,
                text: format!("HTTP 409 to {what}: the server's partial changed"),
            }),
            Err(e) => Err(peer.error(e, &what)),
        });
        HttpUpload {
            tx: Some(tx),
            abort,
            done: Some(done),
            seed_path,
            direct: None,
            what: what2,
        }
    }

    /// An upload whose body goes straight into `sender`'s socket.
    pub(super) fn direct(sender: Sender, what: String, seed_path: Option<String>) -> HttpUpload {
        HttpUpload {
            tx: None,
            abort: Arc::new(AtomicBool::new(false)),
            done: None,
            seed_path,
            direct: Some(sender),
            what,
        }
    }

    /// Sends up to `count` bytes of `file` from `*offset` by `sendfile`
    /// (see `remote::Upload::send_file`); `None` when this upload cannot.
    pub fn send_file(
        &mut self,
        file: &File,
        offset: &mut u64,
        count: usize,
        budget: Duration,
    ) -> io::Result<Option<Sent>> {
        let Some(s) = self.direct.as_mut() else {
            return Ok(None);
        };
        let sent = crate::transport::send_file_to(s.fd(), file, offset, count, budget)?;
        if let Some(n) = &sent {
            s.sent(n.bytes);
        }
        Ok(sent)
    }

    /// Ends the body and waits for the server's answer (see [`Finished`];
    /// no state when the answer was not one).
    pub(super) fn finish(mut self) -> Result<Finished, RemoteError> {
        self.tx = None;
        if let Some(s) = self.direct.take() {
            return self.finish_direct(s);
        }
        let answer = match self.done.take().map(|h| h.join()) {
            Some(Ok(r)) => r?,
            _ => {
                return Err(RemoteError::Protocol(
                    "upload thread ended abnormally".into(),
                ))
            }
        };
        let answered = match (self.seed_path.take(), answer) {
            (Some(p), Some(a)) => seed::parse_state(&a).ok().map(|st| (p, st)),
            _ => None,
        };
        Ok((answered, None))
    }

    fn finish_direct(mut self, s: Sender) -> Result<Finished, RemoteError> {
        let what = std::mem::take(&mut self.what);
        let r = s
            .finish(ANSWER_MAX)
            .map_err(|e| RemoteError::Io(io::Error::new(e.kind(), format!("{what}: {e}"))))?;
        if let Some(e) = self.refused(r.status, &what) {
            return Err(e);
        }
        let answer = String::from_utf8_lossy(&r.body);
        let answered = self
            .seed_path
            .take()
            .and_then(|p| seed::parse_state(&answer).ok().map(|st| (p, st)));
        Ok((answered, r.keep))
    }

    /// The error an answer `status` to this upload means; None for 2xx.
    fn refused(&self, status: u16, what: &str) -> Option<RemoteError> {
        match status {
            200..=299 => None,
            409 if self.seed_path.is_some() => Some(RemoteError::Status {
                errno: libc::EAGAIN,
                permanent: false,
                text: format!("HTTP 409 to {what}: the server's partial changed"),
            }),
            code => Some(super::status_error(code, what)),
        }
    }

    /// After a failed send: the server's answer if it refused the upload
    /// before taking the whole body (a file locked by another upload, a
    /// full disk, a refused write), as the error it means, with its first
    /// line of text; instead of the broken pipe it left behind.
    pub fn refusal(&mut self) -> Option<RemoteError> {
        let r = self.direct.as_ref()?.early_answer(ANSWER_MAX)?;
        let what = match r.content_type.as_str() {
            "text/plain" => super::with_reason(&self.what, &String::from_utf8_lossy(&r.body)),
            _ => self.what.clone(),
        };
        self.refused(r.status, &what)
    }

    /// Gives up without waiting for the server.
    pub fn abandon(mut self) {
        // Closing the socket before the announced length is a cut.
        self.direct = None;
        self.abort.store(true, Ordering::SeqCst);
        self.tx = None;
        self.done = None;
    }
}

impl Write for HttpUpload {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let gone = || io::Error::new(io::ErrorKind::BrokenPipe, "upload request ended");
        if let Some(s) = self.direct.as_mut() {
            return s.write(buf);
        }
        match &self.tx {
            Some(tx) => tx.send(buf.to_vec()).map_err(|_| gone())?,
            None => return Err(gone()),
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for HttpUpload {
    fn drop(&mut self) {
        if self.done.is_some() {
            // Neither finished nor abandoned: never let it end as complete.
            self.abort.store(true, Ordering::SeqCst);
        }
    }
}
