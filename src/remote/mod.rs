//! The FTP transport: one `Session` is one logged-in control connection
//! (suppaftp, binary mode), with the server's features read from FEAT. The
//! fs and the uploader reach it only through [`crate::transport::Conn`].
//!
//! The work is split by concern:
//! - [`session`]: connect, login, TYPE I, FEAT, socket timeouts, namespace ops;
//! - [`listing`]: MLSD/MLST and LIST line parsing (pure);
//! - [`errno`]: reply codes to errno, permanent vs. transient;
//! - [`transfer`]: RETR at an offset, STOR/APPE at an offset with the
//!   same-name prompt; `sendfile` uploads from a file (`sendfile.rs`);
//! - [`checksum`]: KEY, KEY NULL, SIZE, XCRC, HASH and the MLST key facts;
//! - [`attrs`]: MFMT and SITE CHMOD;
//! - [`upload`]: what the server holds for a path, replace, send from an offset;
//! - [`verify`]: the post-upload check (MLST key facts, or SIZE + XCRC/HASH).
//!
//! Remote paths are relative to the mount root and `/`-separated
//! (`"a/b.txt"`, `""` is the root itself); the session resolves them
//! against the URL's directory and refuses `..`, `.` and control characters,
//! so a path can never leave the root or smuggle a second command.
//!
//! suppaftp's `custom_command` maps reply codes it does not know (KEY's 230
//! is fine, but e.g. a 350 to STOR) to `Status::Unknown`, so every raw
//! command here reads the code from the reply text with [`crate::key::reply_code`].

pub mod attrs;
pub mod checksum;
pub mod errno;
pub mod listing;
mod sendfile;
pub mod session;
pub mod tls;
pub mod transfer;
pub mod upload;
pub mod verify;

use std::time::{Duration, SystemTime};

pub use sendfile::{send_file_to, ChunkSizer, Sent};
pub use transfer::{StoreStart, Upload};

/// Where to connect: parsed from `ftp://[user@]host[:port][/dir]` plus the password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The protocol; FTP unless the URL says `http://`.
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    /// Absolute directory on the server, e.g. `/` or `/incoming`.
    pub root: String,
    /// Plain FTP or FTPS (explicit or implicit), and what is trusted.
    pub tls: tls::Tls,
}

/// The protocol behind an [`Endpoint`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scheme {
    #[default]
    Ftp,
    /// WebDAV, with keyftpd's resumable uploads where the server has them.
    Http,
}

impl Scheme {
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Ftp => 21,
            Scheme::Http => 80,
        }
    }
}

/// What the server offers, from FEAT.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Features {
    pub key: bool,
    pub xcrc: bool,
    pub hash_crc32: bool,
    pub mlsd: bool,
    /// MFMT: set a file's modification time.
    pub mfmt: bool,
}

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

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("server replied {code} {text}")]
    Reply { code: u16, text: String },
    #[error("{}", io_text(.0))]
    Io(#[from] std::io::Error),
    #[error("protocol error: {0}")]
    Protocol(String),
    /// An answer of a transport other than FTP, mapped by it to an errno
    /// and to whether a retry can help (e.g. HTTP 404: ENOENT, permanent).
    #[error("server answered {text}")]
    Status {
        errno: i32,
        permanent: bool,
        text: String,
    },
}

/// An I/O error's text: a network error, except `InvalidInput`, which
/// here is a refusal made locally (an untrusted certificate, a bad path).
fn io_text(e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::InvalidInput {
        e.to_string()
    } else if e.raw_os_error() == Some(libc::EAGAIN) {
        // A socket timeout reads as EAGAIN ("Resource temporarily
        // unavailable"), which says nothing to someone reading `keyfs status`.
        "network error: timed out (no answer)".into()
    } else {
        format!("network error: {e}")
    }
}

impl RemoteError {
    /// The errno a filesystem operation reports for this error.
    pub fn to_errno(&self) -> i32 {
        errno::to_errno(self)
    }
    /// True for errors a retry will not fix (530 login, 553 name not allowed, ...).
    pub fn is_permanent(&self) -> bool {
        errno::is_permanent(self)
    }
    /// The server refused the request outright (a 5xx reply): asking
    /// again will not help.
    pub fn is_refusal(&self) -> bool {
        match self {
            RemoteError::Status { permanent, .. } => *permanent,
            _ => self.code().is_some_and(|c| c >= 500),
        }
    }
    /// The object is busy (450: an upload we just stopped still holds it).
    pub fn is_busy(&self) -> bool {
        match self {
            RemoteError::Status { errno, .. } => *errno == libc::EBUSY,
            _ => self.code() == Some(450),
        }
    }
    /// The connection is gone or unusable (cut, timeout, garbled, 421).
    pub fn is_link_lost(&self) -> bool {
        matches!(self, RemoteError::Io(_) | RemoteError::Protocol(_)) || self.code() == Some(421)
    }
    /// The server answered (as opposed to a network or protocol failure).
    pub fn server_answered(&self) -> bool {
        matches!(self, RemoteError::Status { .. }) || self.code().is_some()
    }
    /// A refusal whose reply names no cause: FTP's 550 (or 553), "file
    /// unavailable (e.g., file not found, no access)" (RFC 959), worded
    /// freely by servers, which the generic mapping gave ENOENT for want of
    /// a better word. The caller decides from what the namespace looks
    /// like afterwards. An HTTP status always says what it means.
    pub fn is_vague_refusal(&self) -> bool {
        matches!(self.code(), Some(550) | Some(553)) && self.to_errno() == libc::ENOENT
    }
    /// The reply code, when the server answered.
    pub fn code(&self) -> Option<u16> {
        match self {
            RemoteError::Reply { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// One logged-in control connection.
pub struct Session {
    ftp: suppaftp::ImplFtpStream<tls::TlsData>,
    features: Features,
    /// The root directory, absolute, without a trailing `/` (empty for `/`).
    root: String,
    /// Timeout for connecting and for ordinary replies and data reads/writes.
    timeout: Duration,
    /// Timeout for replies that need the server to read a whole file.
    slow_timeout: Duration,
    /// Checksum commands the server listed but refused on this session,
    /// with its reply (see [`checksum::CrcMethod`]); no longer used here.
    refused: Vec<(checksum::CrcMethod, String)>,
    /// SITE CHMOD turned out unknown to the server.
    no_site_chmod: bool,
}

/// An open RETR data connection; implements `Read`.
pub struct Download {
    stream: Box<dyn transfer::DataConn>,
}

impl std::io::Read for Download {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.stream.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_read_well() {
        let t = RemoteError::Io(std::io::Error::from_raw_os_error(libc::EAGAIN));
        assert_eq!(t.to_string(), "network error: timed out (no answer)");
        let c = RemoteError::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "cannot connect to nas:21: timed out",
        ));
        assert_eq!(
            c.to_string(),
            "network error: cannot connect to nas:21: timed out"
        );
        let u = RemoteError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "certificate of nas not trusted",
        ));
        assert_eq!(u.to_string(), "certificate of nas not trusted");
    }
}
