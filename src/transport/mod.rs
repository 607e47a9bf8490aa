//! The transport seam: one connection to the server, whatever protocol is
//! behind it. The filesystem core ([`crate::fs`]) and the uploader
//! ([`crate::upload`]) talk only to [`Conn`], [`Download`] and [`Upload`];
//! each protocol lives in its own module ([`crate::remote`] is FTP,
//! [`crate::http`] is HTTP/WebDAV) and
//! maps its failures to the one [`RemoteError`], whose methods say what
//! the callers need: the errno, permanent or transient, link lost, busy.
//!
//! An enum rather than a trait object: a download or an upload goes back
//! to the connection that opened it (to read the server's final reply),
//! which an enum checks by its variant without downcasting, and the
//! callers keep concrete types (no generics through the fs core).
//!
//! Paths are relative to the mount root and `/`-separated (`""` is the
//! root); each transport refuses `..`, `.` and control characters.

use std::fs::File;
use std::io::{self, Read, Write};
use std::time::{Duration, SystemTime};

use crate::key::Key;
use crate::{http, remote};

mod endpoint;
mod error;
mod sendfile;
pub mod tls;

pub use crate::remote::attrs::Applied;
pub use crate::remote::checksum::CrcMethod;
pub use crate::upload::resume::StoredKey;
pub use endpoint::{join_root, Endpoint, Scheme};
pub use error::RemoteError;
pub use sendfile::{send_file_to, ChunkSizer, Sent};

/// The longest command line assumed to pass, CRLF included: FTP servers
/// bound it (keyftpd, vsftpd's `VSFTP_MAX_COMMAND_LINE` and IIS's
/// `maxCommandLine` at 4096 bytes, pure-ftpd at its `MAXPATHLEN` + 32).
pub const MAX_COMMAND_LINE: usize = 4096;
/// The longest absolute server path any transport takes: the one that fits
/// in every FTP command keyfs sends with it, `XCRC <path> <start> <end>\r\n`
/// with offsets of up to 20 digits (an HTTP request line, of 8 KiB on
/// common servers, has room for it percent-encoded only up to about this).
pub const MAX_REMOTE_PATH: usize = MAX_COMMAND_LINE - "XCRC   \r\n".len() - 2 * 20;

/// One entry of a directory listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteEntry {
    pub name: String,
    pub is_dir: bool,
    pub size: u64,
    pub mtime: Option<SystemTime>,
    /// Permission bits, where the listing shows them (MLSD `UNIX.mode`,
    /// LIST `-rw-r--r--`).
    pub mode: Option<u32>,
}

/// One logged-in connection.
pub enum Conn {
    Ftp(remote::Session),
    Http(http::Session),
}

/// An open ranged read; implements `Read`. Give it back to the
/// [`Conn`] that opened it with [`Conn::finish_read`].
pub enum Download {
    Ftp(remote::Download),
    Http(http::HttpDownload),
}

/// An open upload; implements `Write`, and [`Upload::send_file`] for the
/// zero-copy path. Give it back with [`Conn::finish_send`] or
/// [`Conn::abandon_send`].
pub enum Upload {
    Ftp(remote::Upload),
    Http(http::HttpUpload),
}

/// What the server holds for a path before an upload.
pub enum Holding {
    /// No file. `open`: the upload from byte 0, already started when
    /// asking started it (the KEY STOR that would have prompted).
    Nothing { open: Option<Upload> },
    /// A file of `size` bytes, with the key the server stored for it.
    Partial { size: u64, key: StoredKey },
}

/// Why a verification failed.
pub enum VerifyError {
    /// The server's size (or its recorded key) differs from ours.
    Mismatch(String),
    /// The server has no such file (MLST or SIZE answered 550).
    Gone(String),
    /// The server's CRC of the whole file differs from our key: either the
    /// bytes changed on the way or the spooled copy no longer matches its
    /// record (worth re-reading it).
    CrcMismatch(String),
    Remote(RemoteError),
}

impl From<RemoteError> for VerifyError {
    fn from(e: RemoteError) -> Self {
        VerifyError::Remote(e)
    }
}

/// How far a successful verification went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verified {
    /// The server's CRC of the file (computed while writing, or read back)
    /// equals our key.
    Crc,
    /// Only the size could be checked (the server offers no CRC): the
    /// caller should make sure the spooled bytes matched their key.
    SizeOnly,
}

impl Conn {
    /// Connects and logs in (the password is checked here).
    pub fn connect(ep: &Endpoint, timeout: Duration) -> Result<Conn, RemoteError> {
        match ep.scheme {
            Scheme::Ftp => remote::Session::connect(ep, timeout).map(Conn::Ftp),
            Scheme::Http => http::Session::connect(ep, timeout).map(Conn::Http),
        }
    }

    /// Timeout for replies that need the server to read a whole file.
    pub fn set_slow_timeout(&mut self, d: Duration) {
        match self {
            Conn::Ftp(s) => s.set_slow_timeout(d),
            Conn::Http(_) => {}
        }
    }

    /// Checks that an idle connection is alive.
    pub fn noop(&mut self) -> Result<(), RemoteError> {
        match self {
            Conn::Ftp(s) => s.noop(),
            Conn::Http(s) => s.noop(),
        }
    }

    /// Says goodbye; errors are ignored.
    pub fn quit(self) {
        match self {
            Conn::Ftp(s) => s.quit(),
            Conn::Http(_) => {}
        }
    }

    // ---- namespace ----

    pub fn list(&mut self, dir: &str) -> Result<Vec<RemoteEntry>, RemoteError> {
        match self {
            Conn::Ftp(s) => s.list(dir),
            Conn::Http(s) => s.list(dir),
        }
    }

    /// One entry, `None` when there is none.
    pub fn stat(&mut self, path: &str) -> Result<Option<RemoteEntry>, RemoteError> {
        match self {
            Conn::Ftp(s) => s.stat(path),
            Conn::Http(s) => s.stat(path),
        }
    }

    pub fn mkdir(&mut self, path: &str) -> Result<(), RemoteError> {
        match self {
            Conn::Ftp(s) => s.mkdir(path),
            Conn::Http(s) => s.mkdir(path),
        }
    }

    pub fn rmdir(&mut self, path: &str) -> Result<(), RemoteError> {
        match self {
            Conn::Ftp(s) => s.rmdir(path),
            Conn::Http(s) => s.rmdir(path),
        }
    }

    pub fn delete(&mut self, path: &str) -> Result<(), RemoteError> {
        match self {
            Conn::Ftp(s) => s.delete(path),
            Conn::Http(s) => s.delete(path),
        }
    }

    pub fn rename(&mut self, from: &str, to: &str) -> Result<(), RemoteError> {
        match self {
            Conn::Ftp(s) => s.rename(from, to),
            Conn::Http(s) => s.rename(from, to),
        }
    }

    pub fn set_mtime(&mut self, path: &str, t: SystemTime) -> Result<Applied, RemoteError> {
        match self {
            Conn::Ftp(s) => s.set_mtime(path, t),
            Conn::Http(s) => s.set_mtime(path, t),
        }
    }

    /// Over HTTP no mode is kept (WebDAV has no property for it).
    pub fn chmod(&mut self, path: &str, mode: u32) -> Result<Applied, RemoteError> {
        match self {
            Conn::Ftp(s) => s.chmod(path, mode),
            Conn::Http(_) => Ok(Applied::Unsupported),
        }
    }

    // ---- ranged reads ----

    /// Starts reading `path` from `offset` to its end.
    pub fn open_read(&mut self, path: &str, offset: u64) -> Result<Download, RemoteError> {
        match self {
            Conn::Ftp(s) => s.retr_at(path, offset).map(Download::Ftp),
            Conn::Http(s) => s.open_read(path, offset).map(Download::Http),
        }
    }

    /// Ends a read that reached its end, leaving the connection reusable.
    /// A read stopped early is dropped together with its connection.
    pub fn finish_read(&mut self, d: Download) -> Result<(), RemoteError> {
        match (self, d) {
            (Conn::Ftp(s), Download::Ftp(d)) => s.finish_retr(d),
            (Conn::Http(_), Download::Http(_)) => Ok(()),
            _ => Err(RemoteError::Protocol(
                "a read given back to another connection".into(),
            )),
        }
    }

    // ---- uploads ----

    /// Whether [`Conn::probe`] may create the file on the server.
    pub fn probe_may_create(&self) -> bool {
        match self {
            Conn::Ftp(s) => s.probe_may_create(),
            Conn::Http(_) => false,
        }
    }

    /// What the server holds for `path`, for an upload keyed `key` of a
    /// file of `size` bytes (a transport may skip asking when resuming
    /// could not save more than the asking costs).
    pub fn probe(&mut self, path: &str, key: Key, size: u64) -> Result<Holding, RemoteError> {
        match self {
            Conn::Ftp(s) => s.probe(path, key),
            Conn::Http(s) => s.probe(path, key, size),
        }
    }

    /// The server's CRC of `[0, n)` of `path` (`None`: the whole file),
    /// where it offers one. Call it only for a file the server just said
    /// exists.
    pub fn prefix_crc(&mut self, path: &str, n: Option<u64>) -> Result<Option<u32>, RemoteError> {
        match self {
            Conn::Ftp(s) => s.remote_crc(path, n),
            Conn::Http(s) => s.prefix_crc(path, n),
        }
    }

    /// Drops what the server holds for `path` so that an upload keyed
    /// `key` starts from zero.
    pub fn replace(&mut self, path: &str, key: Key) -> Result<(), RemoteError> {
        match self {
            Conn::Ftp(s) => s.replace(path, key),
            Conn::Http(s) => {
                s.replace(key);
                Ok(())
            }
        }
    }

    /// Starts sending the `len` bytes of `path` from `offset` (the key was given to
    /// [`Conn::probe`] or [`Conn::replace`]).
    pub fn send_from(&mut self, path: &str, offset: u64, len: u64) -> Result<Upload, RemoteError> {
        match self {
            Conn::Ftp(s) => s.send_from(path, offset).map(Upload::Ftp),
            Conn::Http(s) => s.send_from(path, offset, len).map(Upload::Http),
        }
    }

    /// Ends an upload and reads the server's verdict on the transfer.
    pub fn finish_send(&mut self, up: Upload) -> Result<(), RemoteError> {
        match (self, up) {
            (Conn::Ftp(s), Upload::Ftp(up)) => s.finish_store(up),
            (Conn::Http(s), Upload::Http(up)) => s.finish_upload(up),
            _ => Err(RemoteError::Protocol(
                "an upload given back to another connection".into(),
            )),
        }
    }

    /// Gives up on an upload without waiting; the connection is unusable
    /// afterwards: drop it.
    /// After a send into `up` failed: the server's refusal of the upload,
    /// if it gave one (over HTTP an answer before the whole body, over FTP
    /// the transfer's reply on the control connection), instead of the
    /// broken pipe it left.
    pub fn refusal(&mut self, up: &mut Upload) -> Option<RemoteError> {
        match (self, up) {
            (_, Upload::Http(u)) => u.refusal(),
            (Conn::Ftp(s), Upload::Ftp(_)) => s.store_refusal(),
            _ => None,
        }
    }

    pub fn abandon_send(&mut self, up: Upload) {
        match (self, up) {
            (Conn::Ftp(s), Upload::Ftp(up)) => s.abandon_store(up),
            (_, Upload::Http(up)) => up.abandon(),
            (_, up) => drop(up),
        }
    }

    /// Checks the server copy holds `size` bytes keyed `crc`, as far as the
    /// server can tell (see [`Verified`]).
    pub fn verify(&mut self, path: &str, size: u64, crc: u32) -> Result<Verified, VerifyError> {
        match self {
            Conn::Ftp(s) => remote::verify::verify_remote(s, path, size, crc),
            Conn::Http(s) => s.verify(path, size, crc),
        }
    }

    // ---- the checksum methods, remembered across connections ----

    /// How the server proves an upload against its key, when it keeps
    /// keys (for `keyfs status`).
    pub fn key_verification(&self) -> Option<&'static str> {
        match self {
            Conn::Ftp(s) => s.features().key.then_some("MLST x.key facts"),
            Conn::Http(s) => s.keeps_keys().then_some("the upload state"),
        }
    }

    /// The checksum methods the server offers, best first.
    pub fn crc_offered(&self) -> Vec<CrcMethod> {
        match self {
            Conn::Ftp(s) => {
                let f = s.features();
                let mut v = Vec::new();
                if f.xcrc {
                    v.push(CrcMethod::Xcrc);
                }
                if f.hash_crc32 {
                    v.push(CrcMethod::HashCrc32);
                }
                v
            }
            Conn::Http(s) => {
                if s.offers_crc() {
                    vec![CrcMethod::HttpCrc]
                } else {
                    Vec::new()
                }
            }
        }
    }

    /// Stops using `m` (refused here or on another connection).
    pub fn drop_crc_method(&mut self, m: CrcMethod) {
        match self {
            Conn::Ftp(s) => s.drop_crc_method(m),
            Conn::Http(s) => {
                if m == CrcMethod::HttpCrc {
                    s.drop_crc();
                }
            }
        }
    }

    /// The refusals seen since the last call.
    pub fn take_refused(&mut self) -> Vec<(CrcMethod, String)> {
        match self {
            Conn::Ftp(s) => s.take_refused(),
            Conn::Http(s) => s.take_refused(),
        }
    }
}

impl Read for Download {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Download::Ftp(d) => d.read(buf),
            Download::Http(d) => d.read(buf),
        }
    }
}

impl Write for Upload {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Upload::Ftp(u) => u.write(buf),
            Upload::Http(u) => u.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Upload::Ftp(u) => u.flush(),
            Upload::Http(u) => u.flush(),
        }
    }
}

impl Upload {
    /// Sends up to `count` bytes of `file` from `*offset` without copying
    /// them through user space, for at most about `budget`; `None` when
    /// this upload cannot (then write the bytes instead).
    pub fn send_file(
        &mut self,
        file: &File,
        offset: &mut u64,
        count: usize,
        budget: Duration,
    ) -> io::Result<Option<Sent>> {
        match self {
            Upload::Ftp(u) => u.send_file(file, offset, count, budget),
            Upload::Http(u) => u.send_file(file, offset, count, budget),
        }
    }
}
