//! The store's error: a kind each face maps to its own reply codes, and a
//! one-line text.

use std::fmt;
use std::io;

/// What went wrong, protocol-neutral.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// No such file or directory.
    NotFound,
    /// The file is locked by an upload (this process or another).
    Busy,
    /// The request does not fit the file: an offset or range past its
    /// end, a name that exists, a directory moved into itself.
    Conflict,
    /// A FIFO, socket or device; or a file where a directory is needed,
    /// or the other way round.
    NotRegular,
    /// The disk (or quota) is full.
    NoSpace,
    /// Permission denied, or a path that leads outside the root.
    Denied,
    /// Any other I/O error.
    Io,
}

/// A store error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreError {
    pub kind: ErrorKind,
    pub msg: String,
}

impl StoreError {
    pub fn new(kind: ErrorKind, msg: impl Into<String>) -> StoreError {
        StoreError {
            kind,
            msg: msg.into(),
        }
    }

    /// Classifies an I/O error from acting on a file.
    pub fn io(what: &str, e: &io::Error) -> StoreError {
        let kind = match e.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => ErrorKind::NoSpace,
            Some(libc::EXDEV) | Some(libc::ELOOP) => {
                return StoreError::new(
                    ErrorKind::Denied,
                    format!("{what}: path leads outside the root"),
                )
            }
            Some(libc::ENXIO) | Some(libc::ENODEV) => {
                return StoreError::new(
                    ErrorKind::NotRegular,
                    format!("{what}: not a regular file or directory"),
                )
            }
            // A refusal, not a fault to retry: 550, as for EACCES.
            Some(libc::EROFS) => {
                return StoreError::new(ErrorKind::Denied, format!("{what}: read-only file system"))
            }
            Some(libc::ENOTDIR) => ErrorKind::NotFound,
            Some(libc::EISDIR) => ErrorKind::NotRegular,
            Some(libc::EWOULDBLOCK) => ErrorKind::Busy,
            Some(libc::EEXIST) | Some(libc::ENOTEMPTY) => ErrorKind::Conflict,
            _ => match e.kind() {
                io::ErrorKind::NotFound => ErrorKind::NotFound,
                io::ErrorKind::PermissionDenied => ErrorKind::Denied,
                io::ErrorKind::WouldBlock => ErrorKind::Busy,
                io::ErrorKind::AlreadyExists => ErrorKind::Conflict,
                _ => ErrorKind::Io,
            },
        };
        let text = match kind {
            ErrorKind::NotFound => "no such file or directory".to_string(),
            ErrorKind::NoSpace => "insufficient storage space".to_string(),
            ErrorKind::Denied => "permission denied".to_string(),
            _ => e.to_string().lines().next().unwrap_or("error").to_string(),
        };
        StoreError::new(kind, format!("{what}: {text}"))
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for StoreError {}
