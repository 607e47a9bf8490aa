//! The FTP transport: one `Session` is one logged-in control connection
//! (suppaftp, binary mode), with the server's features read from FEAT. The
//! fs and the uploader reach it only through [`crate::transport::Conn`].
//!
//! The work is split by concern:
//! - [`session`]: connect, login, TYPE I, FEAT, socket timeouts, namespace ops;
//! - [`listing`]: MLSD/MLST and LIST line parsing (pure);
//! - [`errno`]: reply codes to errno, permanent vs. transient;
//! - [`transfer`]: RETR at an offset, STOR/APPE at an offset with the
//!   same-name prompt; `sendfile` uploads from a file;
//! - `ftps`: the TLS connector and stream suppaftp runs on.
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
mod ftps;
pub mod listing;
pub mod session;
pub mod transfer;
pub mod upload;
pub mod verify;

use std::time::Duration;

// The seam's shared types, for this module's files (`super::X`).
use crate::transport::{join_root, send_file_to, tls, Endpoint, RemoteEntry, RemoteError, Sent};
pub use transfer::{StoreStart, Upload};

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

/// One logged-in control connection.
pub struct Session {
    ftp: suppaftp::ImplFtpStream<ftps::TlsData>,
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
