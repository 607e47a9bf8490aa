//! Uploading straight from a file with `sendfile(2)`: the kernel copies the
//! spooled bytes into the data socket, with no user-space buffer (a read and
//! a write of every byte saved). Only on a plain TCP data connection; the
//! caller falls back to copying when this answers "unsupported".
//!
//! Each call sends one bounded chunk, so the caller still checks for abort
//! and reports progress between chunks.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use super::Upload;

/// How long to wait for the socket to drain before trying again after
/// EAGAIN on a non-blocking socket.
const POLL_MS: libc::c_int = 100;

impl Upload {
    /// Sends up to `count` bytes of `file` from `*offset` to the data socket,
    /// advancing `*offset` by what was sent (the file position is not used).
    /// Returns `Some(n)` (`n < count` only when the file ended), or `None`
    /// when `sendfile` cannot be used on this connection (TLS, or the kernel
    /// refused with EINVAL/ENOSYS before any byte went out): copy instead.
    /// A socket that takes nothing for `stall` fails with `TimedOut`.
    pub fn send_file(
        &mut self,
        file: &File,
        offset: &mut u64,
        count: usize,
        stall: Duration,
    ) -> io::Result<Option<usize>> {
        if self.no_sendfile {
            return Ok(None);
        }
        let Some(sock) = self.stream.plain_socket() else {
            self.no_sendfile = true;
            return Ok(None);
        };
        let mut sent = 0usize;
        let mut last = Instant::now();
        while sent < count {
            let mut off = libc::off_t::try_from(*offset)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
            let want = count - sent;
            // SAFETY: both descriptors are open for the whole call (the
            // upload and the file are borrowed); `off` is a valid pointer.
            let n = unsafe { libc::sendfile(sock, file.as_raw_fd(), &mut off, want) };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EAGAIN) => {
                        // A blocking socket's send timeout ran out, or a
                        // non-blocking socket is full: wait up to `stall`.
                        if last.elapsed() >= stall {
                            return Err(io::Error::new(
                                io::ErrorKind::TimedOut,
                                "data connection stalled",
                            ));
                        }
                        wait_writable(sock);
                        continue;
                    }
                    Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP) if sent == 0 => {
                        log::debug!("sendfile unavailable ({e}); copying instead");
                        self.no_sendfile = true;
                        return Ok(None);
                    }
                    _ => return Err(e),
                }
            }
            if n == 0 {
                // The file ended early; the caller checks the total.
                break;
            }
            let n = n as usize;
            sent += n;
            *offset += n as u64;
            last = Instant::now();
        }
        Ok(Some(sent))
    }
}

/// Waits (briefly) until `sock` can take more bytes.
fn wait_writable(sock: RawFd) {
    let mut p = libc::pollfd {
        fd: sock,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: `p` is one valid pollfd for the duration of the call. The
    // result does not matter: the next sendfile tells what happened.
    let _ = unsafe { libc::poll(&mut p, 1, POLL_MS) };
}
