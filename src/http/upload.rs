//! An HTTP upload as a `Write`: the request runs on its own thread and
//! reads the body from a bounded channel, so the worker writes into it as
//! into an FTP data connection; memory stays at a few chunks.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::remote::RemoteError;

/// Chunks in flight between the worker and the request thread.
const IN_FLIGHT: usize = 2;

pub struct HttpUpload {
    tx: Option<SyncSender<Vec<u8>>>,
    abort: Arc<AtomicBool>,
    done: Option<JoinHandle<Result<(), RemoteError>>>,
}

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
    /// `conflict` is what a 409 answer means (keyftpd: the offset or key
    /// no longer matches; asking again decides anew).
    pub(super) fn start(
        req: ureq::Request,
        peer: super::Peer,
        what: String,
        head: Vec<u8>,
        tail: Vec<u8>,
        conflict_is_transient: bool,
    ) -> HttpUpload {
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
            Ok(_) => Ok(()),
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
        }
    }

    /// Ends the body and waits for the server's answer.
    pub fn finish(mut self) -> Result<(), RemoteError> {
        self.tx = None;
        match self.done.take().map(|h| h.join()) {
            Some(Ok(r)) => r,
            _ => Err(RemoteError::Protocol(
                "upload thread ended abnormally".into(),
            )),
        }
    }

    /// Gives up without waiting for the server.
    pub fn abandon(mut self) {
        self.abort.store(true, Ordering::SeqCst);
        self.tx = None;
        self.done = None;
    }
}

impl Write for HttpUpload {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let gone = || io::Error::new(io::ErrorKind::BrokenPipe, "upload request ended");
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
