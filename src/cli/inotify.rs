//! An inotify watch on one directory (the spool): `keyfs wait` sleeps on
//! the daemon's status file being renamed into place, the daemon wakes on
//! `keyfs retry` requests.

use std::ffi::OsString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::time::Duration;

/// Files renamed into, or written in, the directory, and removals.
pub const CHANGES: u32 = libc::IN_MOVED_TO | libc::IN_CLOSE_WRITE | libc::IN_DELETE;

pub struct Watch(OwnedFd);

impl Watch {
    /// Watches `dir` for `mask` events (non-blocking descriptor).
    pub fn new(dir: &Path, mask: u32) -> Result<Watch, String> {
        // SAFETY: inotify_init1 returns a new descriptor we own.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
        if fd < 0 {
            return Err(format!("inotify: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: fd is fresh.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
            .map_err(|_| format!("NUL in {}", dir.display()))?;
        // SAFETY: valid descriptor and path.
        if unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), mask) } < 0 {
            return Err(format!(
                "inotify on {}: {}",
                dir.display(),
                std::io::Error::last_os_error()
            ));
        }
        Ok(Watch(fd))
    }

    pub fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// Sleeps until an event or `d`, then drains the events.
    pub fn sleep(&self, d: Duration) {
        let mut p = libc::pollfd {
            fd: self.fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = d.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut p, 1, ms) };
        self.names();
    }

    /// Drains the pending events: the names they are about.
    pub fn names(&self) -> Vec<OsString> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            // SAFETY: reading into a local buffer; non-blocking.
            let n = unsafe { libc::read(self.fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                return out;
            }
            out.extend(parse(&buf[..n as usize]));
        }
    }
}

/// The names in a buffer of `struct inotify_event`s (a 16-byte head: wd,
/// mask, cookie, len; then `len` bytes of NUL-padded name).
fn parse(mut b: &[u8]) -> Vec<OsString> {
    const HEAD: usize = 16;
    let mut out = Vec::new();
    while b.len() >= HEAD {
        let len = u32::from_ne_bytes([b[12], b[13], b[14], b[15]]) as usize;
        let Some(name) = b.get(HEAD..HEAD + len) else {
            break;
        };
        let end = name.iter().position(|c| *c == 0).unwrap_or(name.len());
        if end > 0 {
            out.push(OsString::from_vec(name[..end].to_vec()));
        }
        b = &b[HEAD + len..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_events() {
        let d = tempfile::tempdir().unwrap();
        let w = Watch::new(d.path(), CHANGES).unwrap();
        std::fs::write(d.path().join("a.tmp"), b"x").unwrap();
        std::fs::rename(d.path().join("a.tmp"), d.path().join("retry.12")).unwrap();
        let names = w.names();
        assert!(names.iter().any(|n| n == "a.tmp"), "{names:?}");
        assert!(names.iter().any(|n| n == "retry.12"), "{names:?}");
        assert!(w.names().is_empty());
    }

    #[test]
    fn parse_stops_at_a_short_buffer() {
        let mut b = vec![0u8; 16];
        b[12] = 8;
        b.extend_from_slice(b"ab\0\0");
        // `len` says 8 bytes of name, only 4 present.
        assert!(parse(&b).is_empty());
        b.extend_from_slice(&[0u8; 4]);
        assert_eq!(parse(&b), vec![OsString::from("ab")]);
    }
}
