//! The root as an open directory handle, and every path opened beneath it
//! by the kernel: `openat2` with `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`.
//!
//! A `..`, an absolute symlink or a relative one that climbs out makes
//! the kernel fail the open (`EXDEV`) instead of leaving the root; a
//! symlink that stays inside still works. Names are resolved once: the
//! store then acts on the returned descriptor (read, write, CRC, stat,
//! times, attributes, locks), so a symlink swapped in after the open can
//! no longer redirect anything. Operations on a name itself (mkdir,
//! unlink, rename) act on the parent's descriptor with the last component,
//! which the `*at` calls never follow.
//!
//! The calls come from rustix rather than cap-std: cap-std does exactly
//! this on Linux (openat2 with `RESOLVE_BENEATH`), but the store also needs
//! `fgetxattr`/`fsetxattr`, `flock` and `O_PATH` probes on the same
//! descriptors, which cap-std does not offer and rustix (which cap-std is
//! built on) does, safely typed, without a second layer to go around.
//!
//! openat2 needs Linux 5.6; an older kernel is refused when the store
//! opens, so there is no fallback that checks names.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags};

use super::super::paths::VPath;

/// The open root directory.
pub struct Root {
    dir: File,
    path: PathBuf,
}

/// What an open found at a name.
pub enum Kind {
    File,
    Dir,
    /// A FIFO, socket or device: never opened for I/O.
    Special,
}

/// The kind of the file behind `md`.
pub fn kind(md: &std::fs::Metadata) -> Kind {
    let t = md.file_type();
    if t.is_file() {
        Kind::File
    } else if t.is_dir() {
        Kind::Dir
    } else {
        Kind::Special
    }
}

fn resolve() -> ResolveFlags {
    ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS
}

/// The root-relative form of `v` for openat2 (`.` for the root).
pub fn rel(v: &VPath) -> String {
    if v.is_root() {
        ".".into()
    } else {
        v.rel()
    }
}

impl Root {
    /// Opens `path`, which must be a directory, and checks that the kernel
    /// has openat2.
    pub fn open(path: &Path) -> io::Result<Root> {
        let path = path.canonicalize()?;
        let fd = rustix::fs::open(
            &path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!("{}: not an openable directory", path.display()),
            )
        })?;
        let root = Root {
            dir: File::from(fd),
            path,
        };
        root.openat(".", OFlags::PATH | OFlags::DIRECTORY)
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("openat2 (Linux 5.6+) is needed to confine the root: {e}"),
                )
            })?;
        Ok(root)
    }

    /// The canonical root path (for messages only; never opened by name).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The root directory's descriptor.
    pub fn dir(&self) -> &File {
        &self.dir
    }

    /// Opens `rel` beneath the root with `flags` (plus `O_CLOEXEC`,
    /// `O_NOCTTY`, and `O_NONBLOCK` so that no FIFO or device can block the
    /// open). `O_CREAT` creates with mode 0644 (less the umask).
    pub fn openat(&self, rel: &str, flags: OFlags) -> io::Result<File> {
        self.openat_in(self.dir.as_fd(), rel, flags)
    }

    fn openat_in(
        &self,
        dir: std::os::fd::BorrowedFd<'_>,
        rel: &str,
        flags: OFlags,
    ) -> io::Result<File> {
        // openat2 refuses I/O flags with O_PATH, and a mode without O_CREAT.
        let flags = if flags.contains(OFlags::PATH) {
            flags | OFlags::CLOEXEC
        } else {
            flags | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK
        };
        let mode = if flags.contains(OFlags::CREATE) {
            Mode::from_raw_mode(0o644)
        } else {
            Mode::empty()
        };
        // EAGAIN: a rename raced the lookup; the kernel asks to retry.
        let mut tries = 0;
        loop {
            match rustix::fs::openat2(dir, rel, flags, mode, resolve()) {
                Ok(fd) => return Ok(File::from(fd)),
                Err(rustix::io::Errno::AGAIN) if tries < 8 => tries += 1,
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Opens the parent directory of `v` (which is not the root) as a path
    /// handle, and returns it with `v`'s last component.
    pub fn parent<'v>(&self, v: &'v VPath) -> io::Result<(OwnedFd, &'v str)> {
        let name = v.name().unwrap_or(".");
        let parent_rel = match v.rel().rsplit_once('/') {
            Some((p, _)) => p.to_string(),
            None => ".".into(),
        };
        let f = self.openat(&parent_rel, OFlags::PATH | OFlags::DIRECTORY)?;
        Ok((OwnedFd::from(f), name))
    }

    /// Opens `v` as a path handle (no I/O possible, nothing can block) and
    /// stats it.
    pub fn probe(&self, v: &VPath) -> io::Result<(File, std::fs::Metadata)> {
        let f = self.openat(&rel(v), OFlags::PATH)?;
        let md = f.metadata()?;
        Ok((f, md))
    }

    /// Opens `v` for I/O with `flags`, only if it is a regular file or a
    /// directory: a path handle is opened and checked first, then the same
    /// name again for I/O, which must be the same inode (a swap in between
    /// is refused as `EAGAIN`, never followed). Special files give
    /// `ENXIO` without ever being opened for I/O.
    pub fn open_io(&self, v: &VPath, flags: OFlags) -> io::Result<(File, std::fs::Metadata)> {
        let (_, md0) = self.probe(v)?;
        if matches!(kind(&md0), Kind::Special) {
            return Err(io::Error::from_raw_os_error(libc::ENXIO));
        }
        let f = self.openat(&rel(v), flags)?;
        let md = f.metadata()?;
        if md.dev() != md0.dev() || md.ino() != md0.ino() {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "the name changed while it was opened",
            ));
        }
        // Regular files ignore O_NONBLOCK, but clear it for plain semantics.
        let fl = rustix::fs::fcntl_getfl(&f)?;
        rustix::fs::fcntl_setfl(&f, fl - OFlags::NONBLOCK)?;
        Ok((f, md))
    }
}
