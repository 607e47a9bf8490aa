//! Data transfers: RETR at an offset (reads), STOR/APPE at an offset
//! (uploads), including the KEY extension's same-name prompt.
//!
//! A transfer that `finish`es cleanly proves little: if our side of the data
//! socket broke, the server may still have seen a clean EOF. The uploader
//! therefore always verifies size and CRC afterwards.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use suppaftp::{DataStream, FtpError, TransferStream};

use super::ftps::TlsData;

use super::{send_file_to, Download, RemoteError, Sent, Session};

/// How long a failed upload waits for the server to say why.
const REFUSAL_WAIT: Duration = Duration::from_secs(1);

/// An open data connection that completes its transfer on `finish`.
pub(crate) trait DataConn: Read + Write + Send {
    fn finish(self: Box<Self>) -> Result<(), FtpError>;
    /// The plain TCP socket carrying the data, for `sendfile`; `None` under
    /// TLS (the bytes must go through the TLS layer).
    fn plain_socket(&self) -> Option<RawFd>;
    /// The TCP socket under the data connection, TLS or not.
    fn tcp_socket(&self) -> RawFd;
}

impl DataConn for TransferStream<TlsData> {
    fn finish(mut self: Box<Self>) -> Result<(), FtpError> {
        // Under TLS the server counts a transfer complete only after
        // close_notify (a bare EOF may be a cut).
        if let DataStream::Ssl(s) = self.get_mut() {
            s.close_notify().map_err(FtpError::ConnectionError)?;
        }
        TransferStream::finish(*self)
    }
    fn plain_socket(&self) -> Option<RawFd> {
        match self.get_ref() {
            DataStream::Tcp(s) => Some(s.as_raw_fd()),
            DataStream::Ssl(_) => None,
        }
    }
    fn tcp_socket(&self) -> RawFd {
        self.get_ref().get_ref().as_raw_fd()
    }
}

/// An open STOR/APPE data connection; write the bytes, then
/// [`Session::finish_store`].
pub struct Upload {
    pub(super) stream: Box<dyn DataConn>,
    /// Set once `sendfile` was refused (EINVAL/ENOSYS): copy from then on.
    pub(super) no_sendfile: bool,
    /// Bytes sent by `sendfile` so far.
    pub(super) sendfile_bytes: u64,
}

impl Write for Upload {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.stream.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.stream.flush()
    }
}

/// How the server answered a STOR.
pub enum StoreStart {
    /// The transfer is open.
    Started(Upload),
    /// The KEY same-name prompt (350): a partial of this size exists; nothing
    /// was transferred. Ask `KEY NULL`, then resume or restart.
    Prompt(u64),
}

impl Session {
    /// Starts a download at `offset` (TYPE I, REST, RETR). Read the stream,
    /// then call `finish_retr`; to stop early, drop the stream and the
    /// session (the connection is then in an unknown state).
    pub fn retr_at(&mut self, path: &str, offset: u64) -> Result<Download, RemoteError> {
        let abs = self.abs(path)?;
        let off = usize::try_from(offset)
            .map_err(|_| RemoteError::Protocol("offset too large".into()))?;
        self.ftp.resume_transfer(off)?;
        let stream = self.ftp.retr_as_stream(abs)?;
        Ok(Download {
            stream: Box::new(stream),
        })
    }

    pub fn finish_retr(&mut self, stream: Download) -> Result<(), RemoteError> {
        stream.stream.finish().map_err(RemoteError::from)
    }

    /// Starts `STOR path` (with `REST offset` first when `offset > 0`), or
    /// `APPE path` when `append`. A 350 reply to the STOR itself is the KEY
    /// same-name prompt; its size is read from the text, or by SIZE.
    pub fn store_at(
        &mut self,
        path: &str,
        offset: u64,
        append: bool,
    ) -> Result<StoreStart, RemoteError> {
        let abs = self.abs(path)?;
        let off = usize::try_from(offset)
            .map_err(|_| RemoteError::Protocol("offset too large".into()))?;
        let res = if append {
            self.ftp.append_with_stream(&abs)
        } else {
            self.ftp.resume_transfer(off)?;
            self.ftp.put_with_stream(&abs)
        };
        match res {
            Ok(stream) => Ok(StoreStart::Started(Upload {
                stream: Box::new(stream),
                no_sendfile: false,
                sendfile_bytes: 0,
            })),
            Err(FtpError::UnexpectedResponse(resp)) => {
                let text = String::from_utf8_lossy(&resp.body).into_owned();
                match crate::key::reply_code(&text) {
                    Some((350, _)) => {
                        let size = match crate::key::parse_same_name_prompt(&text) {
                            Some(n) => n,
                            None => self.size(path)?.unwrap_or(0),
                        };
                        Ok(StoreStart::Prompt(size))
                    }
                    _ => Err(super::errno::from_reply_body(&resp.body)),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Gives up on an upload without waiting for anything: the data
    /// connection is reset (bytes still queued in our socket buffer are
    /// dropped rather than trickled out over a slow uplink, which the server
    /// would wait for before it replies), and the control connection is
    /// shut down so that closing the transfer does not wait for the
    /// server's reply. The session is unusable afterwards: drop it.
    pub fn abandon_store(&mut self, upload: Upload) {
        let fd = upload.stream.tcp_socket();
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: `fd` is the upload's open socket; `linger` is a valid
        // option value of the size given.
        let _ = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        let _ = self.ftp.get_ref().shutdown(std::net::Shutdown::Both);
        drop(upload);
    }

    /// After a send into an upload failed: the server's reply to the
    /// transfer if it stopped it (a local error, a full disk, a quota),
    /// read by a NOOP whose own answer comes after that reply, for
    /// at most [`REFUSAL_WAIT`]. None when the first reply is the NOOP's
    /// (the link broke, not the server) or none comes. The data connection
    /// is left as it is: the caller abandons it and the session.
    pub fn store_refusal(&mut self) -> Option<RemoteError> {
        let _ = self.ftp.get_ref().set_read_timeout(Some(REFUSAL_WAIT));
        let r = self.raw("NOOP");
        let _ = self.ftp.get_ref().set_read_timeout(Some(self.timeout));
        match r {
            // Only the replies that say why a transfer was stopped on the
            // server's side (RFC 959): a local error, no room, a quota.
            // Anything else may be about the NOOP itself (pure-ftpd answers
            // 500 to a command during a transfer) or the cut (426).
            Ok(reply) if matches!(reply.code, 451 | 452 | 552) => {
                Some(super::errno::from_reply_body(reply.text.as_bytes()))
            }
            _ => None,
        }
    }

    /// Closes the upload's data connection and reads the server's reply
    /// (with the longer timeout: the server may checksum the file first).
    pub fn finish_store(&mut self, upload: Upload) -> Result<(), RemoteError> {
        self.with_slow_replies(|_| upload.stream.finish().map_err(RemoteError::from))
    }
}

impl Upload {
    /// Sends up to `count` bytes of `file` from `*offset` to the data socket,
    /// advancing `*offset` by what was sent (the file position is not used),
    /// for at most about `budget`. Returns `None` when `sendfile` cannot be
    /// used on this connection (TLS, or the kernel refused with
    /// EINVAL/ENOSYS before any byte went out): copy instead.
    pub fn send_file(
        &mut self,
        file: &File,
        offset: &mut u64,
        count: usize,
        budget: Duration,
    ) -> io::Result<Option<Sent>> {
        if self.no_sendfile {
            return Ok(None);
        }
        let Some(sock) = self.stream.plain_socket() else {
            self.no_sendfile = true;
            return Ok(None);
        };
        let sent = send_file_to(sock, file, offset, count, budget)?;
        match sent {
            Some(s) => self.sendfile_bytes += s.bytes as u64,
            None => self.no_sendfile = true,
        }
        Ok(sent)
    }

    /// Payload bytes this upload sent by `sendfile` (the rest, if any, was
    /// copied through a buffer).
    pub fn sendfile_bytes(&self) -> u64 {
        self.sendfile_bytes
    }
}
