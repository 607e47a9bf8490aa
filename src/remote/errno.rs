//! From FTP replies and socket errors to errno values and retry decisions.
//!
//! The fs reports `to_errno` to programs; the uploader asks `is_permanent`
//! to tell a fault worth retrying forever (cut connection, 421, 426, a
//! timeout) from one a retry cannot fix (530 login, 550 permission, 553 bad
//! name), which is recorded as a failed job instead.

use super::RemoteError;
use suppaftp::FtpError;

/// Builds a `RemoteError` from a raw reply (code read from the text, since
/// suppaftp maps unknown codes to `Status::Unknown`).
pub fn from_reply_body(body: &[u8]) -> RemoteError {
    let text = String::from_utf8_lossy(body);
    match crate::key::reply_code(&text) {
        Some((code, last)) => RemoteError::Reply {
            code,
            text: last.chars().take(300).collect(),
        },
        None => RemoteError::Protocol(format!(
            "malformed reply: {}",
            text.trim().chars().take(200).collect::<String>()
        )),
    }
}

impl From<FtpError> for RemoteError {
    fn from(e: FtpError) -> Self {
        match e {
            FtpError::ConnectionError(io) => RemoteError::Io(io),
            FtpError::UnexpectedResponse(resp) => from_reply_body(&resp.body),
            FtpError::BadResponse => RemoteError::Protocol("malformed reply".into()),
            FtpError::InvalidAddress(a) => RemoteError::Protocol(format!("bad address: {a}")),
            FtpError::DataConnectionAlreadyOpen => {
                RemoteError::Protocol("a data connection is already open".into())
            }
            // An untrusted certificate: permanent (InvalidInput), never retried
            // into a downgrade.
            FtpError::SecureError(s) => {
                // suppaftp wraps its connector's error in another "Secure error: ".
                let s = s.strip_prefix("Secure error: ").unwrap_or(&s).to_string();
                RemoteError::Io(std::io::Error::new(std::io::ErrorKind::InvalidInput, s))
            }
        }
    }
}

fn text_has(text: &str, words: &[&str]) -> bool {
    let t = text.to_ascii_lowercase();
    words.iter().any(|w| t.contains(w))
}

/// The errno for a filesystem operation that failed with `e`.
pub fn to_errno(e: &RemoteError) -> i32 {
    match e {
        // `500 Command line too long`, `553 Refused: path too long`,
        // `550 File name too long`: the name, not the server, is at fault.
        RemoteError::Reply { code, text }
            if matches!(*code, 500 | 501 | 550 | 553)
                && text_has(text, &["too long", "name too long"]) =>
        {
            libc::ENAMETOOLONG
        }
        RemoteError::Reply { code, text } => match *code {
            550 => {
                if text_has(text, &["permission", "denied", "not permitted", "access"]) {
                    libc::EACCES
                } else if text_has(text, &["exists"]) {
                    libc::EEXIST
                } else if text_has(text, &["not empty"]) {
                    libc::ENOTEMPTY
                } else if text_has(text, &["not a directory"]) {
                    libc::ENOTDIR
                } else if text_has(text, &["is a directory"]) {
                    libc::EISDIR
                } else {
                    libc::ENOENT
                }
            }
            530 | 532 | 553 => libc::EACCES,
            552 | 452 => libc::ENOSPC,
            450 => libc::EBUSY,
            501 => libc::EINVAL,
            502 | 504 | 500 | 202 => libc::ENOSYS,
            421 | 425 | 426 | 451 => libc::EIO,
            _ => libc::EIO,
        },
        RemoteError::Io(io) => match io.kind() {
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => libc::ETIMEDOUT,
            std::io::ErrorKind::InvalidInput => libc::EINVAL,
            _ => libc::EIO,
        },
        RemoteError::Protocol(_) => libc::EIO,
        RemoteError::Status { errno, .. } => *errno,
    }
}

/// True when a retry cannot fix `e`.
pub fn is_permanent(e: &RemoteError) -> bool {
    match e {
        RemoteError::Reply { code, .. } => matches!(*code, 500..=599),
        RemoteError::Io(io) => io.kind() == std::io::ErrorKind::InvalidInput,
        RemoteError::Protocol(_) => false,
        RemoteError::Status { permanent, .. } => *permanent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(code: u16, text: &str) -> RemoteError {
        RemoteError::Reply {
            code,
            text: text.into(),
        }
    }

    #[test]
    fn vague_refusals() {
        // vsftpd's refused MKD names no cause: the fs core refines it.
        assert!(reply(550, "Create directory operation failed.").is_vague_refusal());
        // A text that says why is not second-guessed.
        assert!(!reply(550, "Permission denied.").is_vague_refusal());
        assert!(!reply(550, "File exists").is_vague_refusal());
        assert!(!reply(421, "bye").is_vague_refusal());
    }

    #[test]
    fn errnos() {
        assert_eq!(
            to_errno(&reply(550, "No such file or directory")),
            libc::ENOENT
        );
        assert_eq!(to_errno(&reply(550, "Permission denied")), libc::EACCES);
        assert_eq!(
            to_errno(&reply(550, "Directory not empty")),
            libc::ENOTEMPTY
        );
        assert_eq!(to_errno(&reply(550, "File exists")), libc::EEXIST);
        assert_eq!(to_errno(&reply(553, "name not allowed")), libc::EACCES);
        assert_eq!(to_errno(&reply(530, "Login incorrect")), libc::EACCES);
        assert_eq!(to_errno(&reply(552, "quota")), libc::ENOSPC);
        assert_eq!(to_errno(&reply(421, "bye")), libc::EIO);
        assert_eq!(
            to_errno(&reply(500, "Command line too long")),
            libc::ENAMETOOLONG
        );
        assert_eq!(
            to_errno(&reply(553, "Refused: path too long")),
            libc::ENAMETOOLONG
        );
        assert_eq!(to_errno(&reply(500, "Unknown command")), libc::ENOSYS);
        let io = RemoteError::Io(std::io::Error::from(std::io::ErrorKind::TimedOut));
        assert_eq!(to_errno(&io), libc::ETIMEDOUT);
        assert_eq!(to_errno(&RemoteError::Protocol("x".into())), libc::EIO);
    }

    #[test]
    fn permanence() {
        assert!(is_permanent(&reply(553, "x")));
        assert!(is_permanent(&reply(530, "x")));
        assert!(is_permanent(&reply(550, "x")));
        assert!(!is_permanent(&reply(421, "x")));
        assert!(!is_permanent(&reply(426, "x")));
        let io = RemoteError::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(!is_permanent(&io));
    }

    #[test]
    fn reply_bodies() {
        let e = from_reply_body(b"350 Partial file exists, size 5\r\n");
        assert!(matches!(e, RemoteError::Reply { code: 350, .. }));
        let e = from_reply_body(b"garbage");
        assert!(matches!(e, RemoteError::Protocol(_)));
    }
}
