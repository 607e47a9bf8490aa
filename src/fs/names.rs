//! What the server can name, and what its refusals mean.
//!
//! **Lengths.** Every path travels in a request to the server, and
//! servers bound those ([`MAX_REMOTE_PATH`], set by the transports). A
//! file whose remote path would not fit could be written into the spool
//! but never uploaded (refused for good), so create, mkdir, rename and
//! open for writing refuse it at once with ENAMETOOLONG. A name longer
//! than 255 bytes (NAME_MAX) is refused too.
//!
//! **Vague refusals.** A server may refuse without saying why (see
//! [`RemoteError::is_vague_refusal`]), e.g. answers a refused mkdir only
//! that it failed. Then [`refine`] decides per
//! operation from what the namespace looks like afterwards: a missing
//! source is ENOENT, a name that exists EEXIST, a directory where a file
//! was meant EISDIR (and the reverse ENOTDIR), a non-empty directory
//! ENOTEMPTY, and anything else the server simply refused: EACCES.
//!
//! [`RemoteError::is_vague_refusal`]: crate::transport::RemoteError::is_vague_refusal

use super::{errno, FsError, FsResult};

pub use crate::transport::MAX_REMOTE_PATH;
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

/// The namespace operations whose vague refusals are refined.
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

/// True for a refusal whose cause the server did not say.
pub fn needs_refining(e: &FsError) -> bool {
    match e {
        FsError::Remote(r) => r.is_vague_refusal(),
        _ => false,
    }
}

/// The errno of a vague refusal of `op` on `target`, given what is at
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
    fn refused_mkdir_is_eacces() {
        assert_eq!(refine(Op::Mkdir, Found::Missing, true), libc::EACCES);
        assert_eq!(refine(Op::Mkdir, Found::Missing, false), libc::ENOENT);
        assert_eq!(refine(Op::Mkdir, Found::File, true), libc::EEXIST);
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
