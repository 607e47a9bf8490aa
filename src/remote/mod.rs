//! The FTP client side: one `Session` is one logged-in control connection
//! (suppaftp, binary mode), with the server's features read from FEAT.
//!
//! OWNER: engine helper. The signatures below are the contract the fs uses;
//! bodies are filled in by the engine work.
//!
//! Remote paths are relative to the mount root and `/`-separated
//! (`"a/b.txt"`, `""` is the root itself); the session resolves them
//! against the URL's directory.

use std::time::{Duration, SystemTime};

/// Where to connect: parsed from `ftp://[user@]host[:port][/dir]` plus the password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    /// Absolute directory on the server, e.g. `/` or `/incoming`.
    pub root: String,
}

/// What the server offers, from FEAT.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Features {
    pub key: bool,
    pub xcrc: bool,
    pub hash_crc32: bool,
    pub mlsd: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteEntry {
    pub name: String,
    pub is_dir: bool,
    pub size: u64,
    pub mtime: Option<SystemTime>,
}

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("server replied {code} {text}")]
    Reply { code: u16, text: String },
    #[error("network error: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl RemoteError {
    /// The errno a filesystem operation reports for this error.
    pub fn to_errno(&self) -> i32 {
        unimplemented!("engine helper")
    }
    /// True for errors a retry will not fix (530 login, 553 name not allowed, ...).
    pub fn is_permanent(&self) -> bool {
        unimplemented!("engine helper")
    }
}

pub struct Session {
    _private: (),
}

/// An open RETR data connection; implements `Read`.
pub struct Download {
    _private: (),
}

impl std::io::Read for Download {
    fn read(&mut self, _buf: &mut [u8]) -> std::io::Result<usize> {
        unimplemented!("engine helper")
    }
}

impl Session {
    /// Connects, logs in, sets binary mode, reads FEAT, changes to the root.
    pub fn connect(_ep: &Endpoint, _timeout: Duration) -> Result<Session, RemoteError> {
        unimplemented!("engine helper")
    }
    pub fn features(&self) -> Features {
        unimplemented!("engine helper")
    }
    /// Lists a directory (MLSD, falling back to LIST).
    pub fn list(&mut self, _dir: &str) -> Result<Vec<RemoteEntry>, RemoteError> {
        unimplemented!("engine helper")
    }
    /// One entry (MLST, or SIZE/MDTM, or a listing of the parent); `None` if absent.
    pub fn stat(&mut self, _path: &str) -> Result<Option<RemoteEntry>, RemoteError> {
        unimplemented!("engine helper")
    }
    pub fn mkdir(&mut self, _path: &str) -> Result<(), RemoteError> {
        unimplemented!("engine helper")
    }
    pub fn rmdir(&mut self, _path: &str) -> Result<(), RemoteError> {
        unimplemented!("engine helper")
    }
    pub fn delete(&mut self, _path: &str) -> Result<(), RemoteError> {
        unimplemented!("engine helper")
    }
    pub fn rename(&mut self, _from: &str, _to: &str) -> Result<(), RemoteError> {
        unimplemented!("engine helper")
    }
    /// Starts a download at `offset` (TYPE I, REST, RETR). Read the stream,
    /// then call `finish_retr`; to stop early, drop the stream and the
    /// session (the connection is then in an unknown state).
    pub fn retr_at(&mut self, _path: &str, _offset: u64) -> Result<Download, RemoteError> {
        unimplemented!("engine helper")
    }
    pub fn finish_retr(&mut self, _stream: Download) -> Result<(), RemoteError> {
        unimplemented!("engine helper")
    }
    /// NOOP, to check a pooled connection is alive.
    pub fn noop(&mut self) -> Result<(), RemoteError> {
        unimplemented!("engine helper")
    }
}
