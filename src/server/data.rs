//! Passive data connections (PASV/EPSV) and the byte pumps of transfers.
//!
//! A passive listener is bound on the control connection's local address,
//! optionally within a port range. Only a connection from the control
//! peer's IP is accepted (others are dropped and logged), which stops
//! another host from stealing or injecting a transfer. Waits poll in short
//! slices so that server shutdown is noticed.

use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Size of the buffer for received data: large, allocated once per transfer.
pub const XFER_BUF: usize = 1 << 20;

/// Binds a passive listener on `ip`, in `range` if given.
pub fn open_passive(ip: IpAddr, range: Option<(u16, u16)>) -> io::Result<TcpListener> {
    let Some((lo, hi)) = range else {
        return TcpListener::bind(SocketAddr::new(ip, 0));
    };
    let span = u32::from(hi - lo) + 1;
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    for i in 0..span {
        let port = lo as u32 + (seed.wrapping_add(i) % span);
        if let Ok(l) = TcpListener::bind(SocketAddr::new(ip, port as u16)) {
            return Ok(l);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        "no free port in the passive range",
    ))
}

/// Waits until `fd` is readable (POLLIN) for at most `ms`. True if ready.
pub fn poll_readable(fd: i32, ms: i32) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd on the stack, count 1.
    let r = unsafe { libc::poll(&mut p, 1, ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(false);
        }
        return Err(e);
    }
    Ok(r > 0)
}

/// Accepts the data connection from `peer_ip` within `timeout`.
pub fn accept_from(
    l: &TcpListener,
    peer_ip: IpAddr,
    timeout: Duration,
    stop: &AtomicBool,
) -> io::Result<TcpStream> {
    let deadline = Instant::now() + timeout;
    loop {
        if stop.load(Ordering::Relaxed) {
            return Err(io::Error::other("server shutting down"));
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no data connection",
            ));
        }
        if !poll_readable(l.as_raw_fd(), 200)? {
            continue;
        }
        let (s, from) = l.accept()?;
        if from.ip() != peer_ip {
            log::warn!("refused data connection from {from}: control peer is {peer_ip}");
            drop(s);
            continue;
        }
        s.set_nonblocking(false)?;
        return Ok(s);
    }
}

/// The PASV reply address `h1,h2,h3,h4,p1,p2`, or None for IPv6.
pub fn pasv_tuple(addr: SocketAddr) -> Option<String> {
    match addr {
        SocketAddr::V4(a) => {
            let o = a.ip().octets();
            let p = a.port();
            Some(format!(
                "{},{},{},{},{},{}",
                o[0],
                o[1],
                o[2],
                o[3],
                p >> 8,
                p & 0xff
            ))
        }
        SocketAddr::V6(_) => None,
    }
}

/// Sends `len` bytes of `file` from `offset` to `sock` with sendfile(2),
/// in slices so `stop` is checked. Returns bytes sent.
pub fn send_file(
    sock: &TcpStream,
    file: &std::fs::File,
    offset: u64,
    len: u64,
    stop: &AtomicBool,
    stall: Duration,
) -> io::Result<u64> {
    let mut off = offset as libc::off_t;
    let end = offset + len;
    let mut last = Instant::now();
    while (off as u64) < end {
        if stop.load(Ordering::Relaxed) {
            return Err(io::Error::other("server shutting down"));
        }
        let want = (end - off as u64).min(16 << 20) as usize;
        // SAFETY: both fds are open for the duration of the call; `off` is a valid pointer.
        let n = unsafe { libc::sendfile(sock.as_raw_fd(), file.as_raw_fd(), &mut off, want) };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                    if last.elapsed() > stall {
                        return Err(io::Error::new(io::ErrorKind::TimedOut, "data stalled"));
                    }
                    continue;
                }
                _ => return Err(e),
            }
        }
        if n == 0 {
            // File shrank under us.
            break;
        }
        last = Instant::now();
    }
    Ok(off as u64 - offset)
}
