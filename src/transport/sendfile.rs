//! Uploading straight from a file with `sendfile(2)`: the kernel copies the
//! spooled bytes into the data socket, with no user-space buffer (a read and
//! a write of every byte saved). Only on a plain TCP data connection; the
//! caller falls back to copying when this answers "unsupported".
//!
//! Each call is bounded twice: by a byte count (the caller's chunk) and by
//! a time budget. The socket is switched to non-blocking for the call, so a
//! slow uplink cannot hold the caller inside one `sendfile` for the time a
//! whole chunk takes to drain (4 MiB at 1 MiB/s is 4 s): the call returns
//! with what went out once the budget is spent, and the caller checks for
//! abort and reports progress between calls. [`ChunkSizer`] sizes the
//! chunks to the measured throughput.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

/// Longest single wait for the socket to drain.
const POLL_MS: u128 = 100;

/// How much time's worth of measured throughput one `sendfile` chunk holds.
pub const SENDFILE_TARGET: Duration = Duration::from_millis(200);
pub const SENDFILE_MIN: usize = 64 << 10;
pub const SENDFILE_MAX: usize = 4 << 20;

/// The `sendfile` chunk: starts at `Tuning::chunk_size` and follows the
/// measured throughput so that one chunk is about `SENDFILE_TARGET` of
/// sending, within `[SENDFILE_MIN, SENDFILE_MAX]`. It at most doubles per
/// step (the first calls only fill the socket buffer and look fast) and
/// shrinks at once. The caller's time budget bounds a call whatever its size.
pub struct ChunkSizer {
    len: usize,
}

impl ChunkSizer {
    pub fn new(start: usize) -> ChunkSizer {
        ChunkSizer {
            len: start.clamp(SENDFILE_MIN, SENDFILE_MAX),
        }
    }

    pub fn bytes(&self) -> usize {
        self.len
    }

    /// One call sent `bytes` in `took`.
    pub fn observe(&mut self, bytes: usize, took: Duration) {
        let secs = took.as_secs_f64().max(1e-6);
        let target = (bytes as f64 / secs * SENDFILE_TARGET.as_secs_f64()) as usize;
        let cap = self.len.saturating_mul(2).min(SENDFILE_MAX);
        self.len = target.clamp(SENDFILE_MIN, cap.max(SENDFILE_MIN));
    }
}

/// What one `send_file` call did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sent {
    /// Bytes that went into the socket (possibly 0 when the budget ran out
    /// on a full socket: the caller decides when that is a stall).
    pub bytes: usize,
    /// The file ended before `count` bytes.
    pub eof: bool,
}

/// Puts a socket in non-blocking mode and restores its flags on drop.
struct NonBlocking {
    fd: RawFd,
    flags: libc::c_int,
}

impl NonBlocking {
    fn set(fd: RawFd) -> io::Result<NonBlocking> {
        // SAFETY: plain fcntl calls on a descriptor the caller keeps open.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        if flags < 0 {
            return Err(io::Error::last_os_error());
        }
        if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(NonBlocking { fd, flags })
    }
}

impl Drop for NonBlocking {
    fn drop(&mut self) {
        // SAFETY: as above; restores the flags read in `set`.
        let _ = unsafe { libc::fcntl(self.fd, libc::F_SETFL, self.flags) };
    }
}

/// Sends from `file` into any plain TCP socket `sock` (an FTP data
/// connection, an HTTP request body): `None` when the kernel refuses `sendfile` before any byte
/// went out.
pub fn send_file_to(
    sock: RawFd,
    file: &File,
    offset: &mut u64,
    count: usize,
    budget: Duration,
) -> io::Result<Option<Sent>> {
    let _nb = NonBlocking::set(sock)?;
    let start = Instant::now();
    let mut sent = 0usize;
    while sent < count {
        let mut off = libc::off_t::try_from(*offset)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
        let want = count - sent;
        // SAFETY: both descriptors are open for the whole call (the
        // caller borrows the socket's owner and the file); `off` is a
        // valid pointer.
        let n = unsafe { libc::sendfile(sock, file.as_raw_fd(), &mut off, want) };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => {
                    let left = budget.saturating_sub(start.elapsed()).as_millis();
                    if left == 0 {
                        break;
                    }
                    wait_writable(sock, left.min(POLL_MS) as libc::c_int);
                    continue;
                }
                Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP) if sent == 0 => {
                    log::debug!("sendfile unavailable ({e}); copying instead");
                    return Ok(None);
                }
                _ => return Err(e),
            }
        }
        if n == 0 {
            // The file ended early; the caller checks the total.
            return Ok(Some(Sent {
                bytes: sent,
                eof: true,
            }));
        }
        let n = n as usize;
        sent += n;
        *offset += n as u64;
    }
    Ok(Some(Sent {
        bytes: sent,
        eof: false,
    }))
}

/// Waits up to `ms` until `sock` can take more bytes.
fn wait_writable(sock: RawFd, ms: libc::c_int) {
    let mut p = libc::pollfd {
        fd: sock,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: `p` is one valid pollfd for the duration of the call. The
    // result does not matter: the next sendfile tells what happened.
    let _ = unsafe { libc::poll(&mut p, 1, ms) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_follows_throughput_within_bounds() {
        let ms = Duration::from_millis;
        let mut c = ChunkSizer::new(256 << 10);
        assert_eq!(c.bytes(), 256 << 10);
        // 1 MiB/s: 200 ms is 200 KiB.
        c.observe(256 << 10, ms(250));
        assert_eq!(c.bytes(), 209_715);
        // Very slow: never below the minimum.
        c.observe(1000, ms(250));
        assert_eq!(c.bytes(), SENDFILE_MIN);
        // Fast: at most doubles per step, never above the maximum.
        c.observe(SENDFILE_MIN, ms(1));
        assert_eq!(c.bytes(), 2 * SENDFILE_MIN);
        for _ in 0..20 {
            c.observe(c.bytes(), Duration::from_micros(10));
        }
        assert_eq!(c.bytes(), SENDFILE_MAX);
        // A budget-cut call with nothing sent shrinks it at once.
        c.observe(0, ms(250));
        assert_eq!(c.bytes(), SENDFILE_MIN);
        assert_eq!(ChunkSizer::new(0).bytes(), SENDFILE_MIN);
        assert_eq!(ChunkSizer::new(usize::MAX).bytes(), SENDFILE_MAX);
    }
}
