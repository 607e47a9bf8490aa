//! Data connections, passive (PASV/EPSV) and active (PORT/EPRT), and the
//! byte pumps of transfers.
//!
//! A passive listener is bound on the control connection's local address,
//! optionally within a port range. Only a connection from the control
//! peer's IP is accepted (others are dropped and logged), which stops
//! another host from stealing or injecting a transfer. An active
//! connection goes only to the control peer's own address and to an
//! unprivileged port, so the server cannot be bounced to a third host or
//! service (RFC 2577). Waits poll in short slices so that server shutdown
//! is noticed.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Size of the buffer for received data: large, allocated once per transfer.
pub const XFER_BUF: usize = 256 << 10;

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
    poll_fd(fd, libc::POLLIN, ms)
}

/// Waits for `events` on `fd` for at most `ms`. True if any happened.
fn poll_fd(fd: i32, events: libc::c_short, ms: i32) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd,
        events,
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

/// Why a PORT or EPRT argument is not taken.
#[derive(Debug, PartialEq, Eq)]
pub enum ActiveError {
    /// Not the command's syntax (501).
    Syntax,
    /// An EPRT address family other than 1 (IPv4) or 2 (IPv6) (522).
    Family,
}

/// Parses PORT's `h1,h2,h3,h4,p1,p2`.
pub fn parse_port(arg: &str) -> Result<SocketAddr, ActiveError> {
    let n: Vec<u8> = arg
        .trim()
        .split(',')
        .map(|x| x.trim().parse::<u8>())
        .collect::<Result<_, _>>()
        .map_err(|_| ActiveError::Syntax)?;
    let [a, b, c, d, p1, p2] = n[..] else {
        return Err(ActiveError::Syntax);
    };
    let port = u16::from(p1) << 8 | u16::from(p2);
    Ok(SocketAddr::new(Ipv4Addr::new(a, b, c, d).into(), port))
}

/// Parses EPRT's `<d>af<d>addr<d>port<d>` (RFC 2428), any delimiter d.
pub fn parse_eprt(arg: &str) -> Result<SocketAddr, ActiveError> {
    let arg = arg.trim();
    let d = arg.chars().next().ok_or(ActiveError::Syntax)?;
    if !(33..=126).contains(&(d as u32)) {
        return Err(ActiveError::Syntax);
    }
    let parts: Vec<&str> = arg.split(d).collect();
    let ["", af, addr, port, ""] = parts[..] else {
        return Err(ActiveError::Syntax);
    };
    let port: u16 = port.parse().map_err(|_| ActiveError::Syntax)?;
    let ip: IpAddr = match af {
        "1" => addr
            .parse::<Ipv4Addr>()
            .map_err(|_| ActiveError::Syntax)?
            .into(),
        "2" => addr
            .parse::<Ipv6Addr>()
            .map_err(|_| ActiveError::Syntax)?
            .into(),
        _ => return Err(ActiveError::Family),
    };
    Ok(SocketAddr::new(ip, port))
}

/// True when an active data connection may go to `to` for a control
/// connection from `peer`: the same host, an unprivileged port.
pub fn active_allowed(to: SocketAddr, peer: IpAddr) -> bool {
    to.ip().to_canonical() == peer.to_canonical() && to.port() >= 1024
}

/// Connects an active data connection to `to` from `local` (the control
/// connection's own address) within `timeout`.
pub fn connect_active(
    local: IpAddr,
    to: SocketAddr,
    timeout: Duration,
    stop: &AtomicBool,
) -> io::Result<TcpStream> {
    use socket2::{Domain, Protocol, Socket, Type};
    let to = SocketAddr::new(to.ip().to_canonical(), to.port());
    let sock = Socket::new(Domain::for_address(to), Type::STREAM, Some(Protocol::TCP))?;
    let local = local.to_canonical();
    if local.is_ipv4() == to.is_ipv4() {
        sock.bind(&SocketAddr::new(local, 0).into())?;
    }
    sock.set_nonblocking(true)?;
    match sock.connect(&to.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {
            let deadline = Instant::now() + timeout;
            loop {
                if stop.load(Ordering::Relaxed) {
                    return Err(io::Error::other("server shutting down"));
                }
                if Instant::now() >= deadline {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"));
                }
                if poll_fd(sock.as_raw_fd(), libc::POLLOUT, 200)? {
                    break;
                }
            }
            if let Some(e) = sock.take_error()? {
                return Err(e);
            }
        }
        Err(e) => return Err(e),
    }
    sock.set_nonblocking(false)?;
    Ok(sock.into())
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

/// Sends `len` bytes of `file` from `offset` through `w` with a buffer,
/// for streams sendfile(2) cannot serve (TLS). Returns bytes sent.
pub fn send_buffered(
    w: &mut impl io::Write,
    file: &std::fs::File,
    offset: u64,
    len: u64,
    stop: &AtomicBool,
) -> io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; 64 << 10];
    let end = offset + len;
    let mut off = offset;
    while off < end {
        if stop.load(Ordering::Relaxed) {
            return Err(io::Error::other("server shutting down"));
        }
        let want = (end - off).min(buf.len() as u64) as usize;
        let n = match file.read_at(&mut buf[..want], off) {
            Ok(0) => break, // File shrank under us.
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        w.write_all(&buf[..n])?;
        off += n as u64;
    }
    w.flush()?;
    Ok(off - offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_and_eprt_arguments() {
        let a = |s: &str| s.parse::<SocketAddr>().ok();
        assert_eq!(parse_port("127,0,0,1,4,1").ok(), a("127.0.0.1:1025"));
        assert_eq!(parse_port(" 10,1,2,3,255,255 ").ok(), a("10.1.2.3:65535"));
        for bad in [
            "",
            "1,2,3,4,5",
            "1,2,3,4,5,6,7",
            "256,0,0,1,1,1",
            "a,b,c,d,e,f",
        ] {
            assert_eq!(parse_port(bad), Err(ActiveError::Syntax), "{bad}");
        }
        assert_eq!(parse_eprt("|1|127.0.0.1|5282|").ok(), a("127.0.0.1:5282"));
        assert_eq!(parse_eprt("!2!::1!5282!").ok(), a("[::1]:5282"));
        assert_eq!(parse_eprt("|3|x|1|"), Err(ActiveError::Family));
        for bad in [
            "",
            "|1|127.0.0.1|5282",
            "|1|::1|5282|",
            "|2|1.2.3.4|1|",
            "|1|1.2.3.4|x|",
        ] {
            assert_eq!(parse_eprt(bad), Err(ActiveError::Syntax), "{bad}");
        }
    }

    #[test]
    fn active_only_to_the_peer_and_unprivileged_ports() {
        let peer: IpAddr = "127.0.0.1"
            .parse()
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let to = |s: &str| {
            s.parse::<SocketAddr>()
                .unwrap_or(SocketAddr::from(([0; 4], 0)))
        };
        assert!(active_allowed(to("127.0.0.1:40000"), peer));
        assert!(!active_allowed(to("127.0.0.2:40000"), peer));
        assert!(!active_allowed(to("127.0.0.1:25"), peer));
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap_or(peer);
        assert!(active_allowed(to("127.0.0.1:40000"), mapped));
    }
}
