//! The one error of every transport, and what it means to the callers:
//! an errno, permanent or transient, link lost, busy.

use crate::remote::errno;

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
