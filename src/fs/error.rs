//! One error type for the filesystem core; every variant has an errno, which
//! the fuser adapter replies with (after logging the error once).

use crate::transport::RemoteError;
use crate::upload::UploadError;

#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("errno {0}")]
    Errno(i32),
    #[error(transparent)]
    Remote(#[from] RemoteError),
    #[error("spool: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Upload(#[from] UploadError),
}

pub type FsResult<T> = Result<T, FsError>;

impl FsError {
    pub fn errno(&self) -> i32 {
        match self {
            FsError::Errno(e) => *e,
            FsError::Remote(e) => e.to_errno(),
            FsError::Io(e) => e.raw_os_error().unwrap_or(libc::EIO),
            FsError::Upload(_) => libc::EIO,
        }
    }

    /// Expected outcomes (ENOENT on lookup, ...) are not worth a warning.
    pub fn is_quiet(&self) -> bool {
        matches!(self.errno(), libc::ENOENT | libc::EEXIST | libc::ENOTEMPTY)
    }
}

pub fn errno(e: i32) -> FsError {
    FsError::Errno(e)
}
