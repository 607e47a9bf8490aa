//! What the server can name, and what its refusals mean.
//!
//! **Lengths.** Every path travels in an FTP command line, and servers
//! bound those: keyftpd, vsftpd (`VSFTP_MAX_COMMAND_LINE`) and IIS
//! (`maxCommandLine`) at 4096 bytes, pure-ftpd at its `MAXPATHLEN` + 32.
//! A file whose remote path would not fit in the longest command keyfs
//! sends for it (`XCRC <path> <start> <end>`) could be written into the
//! spool but never uploaded (`500 Command line too long`, for good), so
//! create, mkdir, rename and open for writing refuse it at once with
//! ENAMETOOLONG. A name longer than 255 bytes (NAME_MAX) is refused too.
//!
//! **550.** RFC 959 gives one code, 550, to "file unavailable (e.g., file
//! not found, no access)", and servers word it freely: vsftpd answers a
//! refused MKD with `550 Create directory operation failed.`. When the
//! text names no cause, [`refine`] decides per operation from what the
//! namespace looks like afterwards: a missing source is ENOENT, a name
//! that exists EEXIST, a directory where a file was meant EISDIR (and the
//! reverse ENOTDIR), a non-empty directory ENOTEMPTY, and anything else the
//! server simply refused: EACCES.

use super::{errno, FsError, FsResult};

/// The longest command line assumed to pass, CRLF included.
pub const MAX_COMMAND_LINE: usize = 4096;
/// The longest absolute server path that fits in every command keyfs
/// sends with it: `XCRC <path> <start> <end>\r\n`, offsets of up to 20 digits.
pub const MAX_REMOTE_PATH: usize = MAX_COMMAND_LINE - "XCRC   \r\n".len() - 2 * 20;
/// The longest name of one entry (NAME_MAX).
pub const MAX_NAME: usize = 255;

/// Checks that `rel` (relative to the mount root `root`, an absolute server
/// directory) can be named in a command: ENAMETOOLONG otherwise.
pub fn check_remote_len(root: &str, rel: &str) -> FsResult<()> {
    let root = root.trim_end_matches('/');
    // `root/rel`, as the session builds it.
    let abs = root.len() + 1 + rel.len();
    if abs > MAX_REMOTE_PATH {
        return Err(errno(libc::ENAMETOOLONG));
    }
    Ok(())
}

/// The namespace operations whose 550 is refined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Mkdir,
    Rmdir,
    Unlink,
    Rename,
}

/// What is at a path after the refusal, as far as a listing tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    Missing,
    File,
    /// A directory; `empty` when its listing has no entries.
    Dir {
        empty: bool,
    },
}

/// True for a 550 (or 553) whose text the generic mapping could not place
/// (it gave ENOENT for want of a better word).
pub fn needs_refining(e: &FsError) -> bool {
    match e {
        FsError::Remote(r) => {
            matches!(r.code(), Some(550) | Some(553)) && e.errno() == libc::ENOENT
        }
        _ => false,
    }
}

/// The errno of an unexplained 550 to `op` on `target`, given what is at
/// `target` and whether its parent directory exists. For a rename,
/// `target` is the source and `parent` that of the destination.
pub fn refine(op: Op, target: Found, parent: bool) -> i32 {
    match (op, target) {
        (Op::Mkdir, Found::Missing) if !parent => libc::ENOENT,
        (Op::Mkdir, Found::Missing) => libc::EACCES,
        (Op::Mkdir, _) => libc::EEXIST,
        (Op::Rmdir, Found::Missing) => libc::ENOENT,
        (Op::Rmdir, Found::File) => libc::ENOTDIR,
        (Op::Rmdir, Found::Dir { empty: false }) => libc::ENOTEMPTY,
        (Op::Rmdir, Found::Dir { empty: true }) => libc::EACCES,
        (Op::Unlink, Found::Missing) => libc::ENOENT,
        (Op::Unlink, Found::Dir { .. }) => libc::EISDIR,
        (Op::Unlink, Found::File) => libc::EACCES,
        (Op::Rename, Found::Missing) => libc::ENOENT,
        (Op::Rename, _) if !parent => libc::ENOENT,
        (Op::Rename, _) => libc::EACCES,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::RemoteError;

    fn reply(code: u16, text: &str) -> FsError {
        FsError::Remote(RemoteError::Reply {
            code,
            text: text.into(),
        })
    }

    #[test]
    fn lengths() {
        assert_eq!(MAX_REMOTE_PATH, 4096 - 9 - 40);
        let ok = "a".repeat(MAX_REMOTE_PATH - 1);
        assert!(check_remote_len("/", &ok).is_ok());
        assert!(check_remote_len("", &ok).is_ok());
        let e = check_remote_len("/", &format!("{ok}b")).unwrap_err();
        assert_eq!(e.errno(), libc::ENAMETOOLONG);
        // The root directory counts.
        assert!(check_remote_len("/in", &ok).is_err());
    }

    #[test]
    fn vsftpd_refused_mkdir_is_eacces() {
        let e = reply(550, "Create directory operation failed.");
        assert!(needs_refining(&e));
        assert_eq!(refine(Op::Mkdir, Found::Missing, true), libc::EACCES);
        assert_eq!(refine(Op::Mkdir, Found::Missing, false), libc::ENOENT);
        assert_eq!(refine(Op::Mkdir, Found::File, true), libc::EEXIST);
        // A text that says why is not second-guessed.
        assert!(!needs_refining(&reply(550, "Permission denied.")));
        assert!(!needs_refining(&reply(550, "File exists")));
        assert!(!needs_refining(&reply(421, "bye")));
    }

    #[test]
    fn other_ops() {
        assert_eq!(refine(Op::Rmdir, Found::File, true), libc::ENOTDIR);
        assert_eq!(
            refine(Op::Rmdir, Found::Dir { empty: false }, true),
            libc::ENOTEMPTY
        );
        assert_eq!(
            refine(Op::Rmdir, Found::Dir { empty: true }, true),
            libc::EACCES
        );
        assert_eq!(
            refine(Op::Unlink, Found::Dir { empty: true }, true),
            libc::EISDIR
        );
        assert_eq!(refine(Op::Unlink, Found::File, true), libc::EACCES);
        assert_eq!(refine(Op::Unlink, Found::Missing, true), libc::ENOENT);
        assert_eq!(refine(Op::Rename, Found::File, false), libc::ENOENT);
        assert_eq!(refine(Op::Rename, Found::File, true), libc::EACCES);
    }
}
