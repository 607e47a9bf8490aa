//! Virtual paths and root confinement.
//!
//! A session sees a virtual tree whose `/` is the server root. Client paths
//! are resolved purely on strings first (`.`/`..` clamp at `/`, so nothing
//! textual can climb out), names are checked (no NUL, no control bytes, no
//! over-long names, not our reserved metadata directory), and only then is
//! the real path checked against the canonical root so that a symlink inside
//! the tree cannot lead outside it.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// The hidden per-root directory holding key metadata; unreachable by any path.
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

/// The confined root on disk.
#[derive(Debug, Clone)]
pub struct Jail {
    root: PathBuf,
}

impl Jail {
    /// Canonicalizes `root`, which must be an existing directory.
    pub fn new(root: &Path) -> io::Result<Jail> {
        let root = root.canonicalize()?;
        if !root.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a directory", root.display()),
            ));
        }
        Ok(Jail { root })
    }

    /// The canonical root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The real path of `v`, unchecked.
    pub fn real(&self, v: &VPath) -> PathBuf {
        let mut p = self.root.clone();
        for c in &v.comps {
            p.push(c);
        }
        p
    }

    fn inside(&self, p: &Path) -> Result<(), PathError> {
        match p.canonicalize() {
            Ok(c) if c.starts_with(&self.root) => Ok(()),
            Ok(_) => Err(PathError::Outside),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(PathError::NotFound),
            Err(_) => Err(PathError::Outside),
        }
    }

    /// The real path of `v` after checking confinement: its parent must
    /// resolve inside the root, and with `follow_last` so must the entry
    /// itself when it exists (a dangling or escaping symlink is refused).
    pub fn check(&self, v: &VPath, follow_last: bool) -> Result<PathBuf, PathError> {
        let real = self.real(v);
        if v.is_root() {
            return Ok(real);
        }
        if let Some(parent) = real.parent() {
            self.inside(parent)?;
        }
        if follow_last {
            if let Ok(md) = std::fs::symlink_metadata(&real) {
                if md.file_type().is_symlink() {
                    match self.inside(&real) {
                        Ok(()) => {}
                        Err(PathError::NotFound) => return Err(PathError::Outside),
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(real)
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
