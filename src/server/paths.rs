//! Virtual paths and root confinement.
//!
//! A session sees a virtual tree whose `/` is the server root. Client paths
//! are resolved purely on strings first (`.`/`..` clamp at `/`, so nothing
//! textual can climb out), names are checked (no NUL, no control bytes, no
//! over-long names, not the reserved name `.keyftpd`). The kernel then
//! confines every open to the root (see `store::confined`), so a symlink
//! inside the tree cannot lead outside it.

use std::fmt;

/// The per-root directory where keyftpd once kept its metadata log: still
/// refused as a name and hidden from listings, so no client can plant a log
/// for the migration to read.
pub const META_DIR: &str = ".keyftpd";
/// Longest allowed path component, in bytes (the usual NAME_MAX).
pub const MAX_NAME: usize = 255;
/// Longest allowed virtual path, in bytes.
pub const MAX_PATH: usize = 4096;

/// Why a client path was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    /// Malformed: NUL, control bytes, too long, reserved name.
    Invalid(&'static str),
    /// Resolves (through a symlink) outside the root.
    Outside,
    /// A parent directory does not exist.
    NotFound,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathError::Invalid(why) => write!(f, "invalid path: {why}"),
            PathError::Outside => write!(f, "path leads outside the root"),
            PathError::NotFound => write!(f, "no such file or directory"),
        }
    }
}

/// A normalized virtual path: its components below `/`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VPath {
    comps: Vec<String>,
}

impl VPath {
    /// The virtual root `/`.
    pub fn root() -> VPath {
        VPath::default()
    }

    /// True for `/`.
    pub fn is_root(&self) -> bool {
        self.comps.is_empty()
    }

    /// The path relative to the root, `a/b` (empty for the root): the key
    /// under which metadata is stored.
    pub fn rel(&self) -> String {
        self.comps.join("/")
    }

    /// The absolute virtual form, `/a/b`.
    pub fn display(&self) -> String {
        format!("/{}", self.rel())
    }

    /// The last component, if any.
    pub fn name(&self) -> Option<&str> {
        self.comps.last().map(String::as_str)
    }

    /// Resolves a client argument against this path (the cwd).
    pub fn resolve(&self, arg: &str) -> Result<VPath, PathError> {
        if arg.len() > MAX_PATH {
            return Err(PathError::Invalid("path too long"));
        }
        if arg.bytes().any(|b| b == 0) {
            return Err(PathError::Invalid("NUL byte in path"));
        }
        if arg.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return Err(PathError::Invalid("control character in path"));
        }
        let mut comps = if arg.starts_with('/') {
            Vec::new()
        } else {
            self.comps.clone()
        };
        for c in arg.split('/') {
            match c {
                "" | "." => {}
                ".." => {
                    comps.pop();
                }
                name => {
                    if name.len() > MAX_NAME {
                        return Err(PathError::Invalid("name too long"));
                    }
                    if name == META_DIR {
                        return Err(PathError::Invalid("reserved name"));
                    }
                    comps.push(name.to_string());
                }
            }
        }
        let out = VPath { comps };
        if out.rel().len() > MAX_PATH {
            return Err(PathError::Invalid("path too long"));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_clamps_and_rejects() {
        let cwd = VPath::root().resolve("/a/b").unwrap_or_default();
        assert_eq!(cwd.display(), "/a/b");
        assert_eq!(cwd.resolve("../c").map(|v| v.display()), Ok("/a/c".into()));
        assert_eq!(
            cwd.resolve("../../../../etc/passwd").map(|v| v.display()),
            Ok("/etc/passwd".into())
        );
        assert_eq!(cwd.resolve("/").map(|v| v.display()), Ok("/".into()));
        assert!(cwd.resolve("a\0b").is_err());
        assert!(cwd.resolve(".keyftpd/meta.log").is_err());
        assert!(cwd.resolve(&"x".repeat(256)).is_err());
        assert!(cwd.resolve("a\nb").is_err());
    }
}
