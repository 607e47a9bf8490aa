//! The control connection of one FTP session, relayed line by line.
//!
//! Server to client: `227` and `229` replies are rewritten to point at a
//! fresh proxy data listener (see [`super::data`]). Client to server: `PORT`
//! and `EPRT` are answered `502` by the proxy itself, so a client falls back
//! to passive mode and every data byte passes through the proxy where it is
//! counted. Everything else passes unchanged.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use super::data::{self, SessionSockets};
use super::shared::{lock, Shared};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest control line handled as a line; longer input is passed on raw.
const MAX_LINE: u64 = 64 * 1024;

pub(crate) fn run_session(client: TcpStream, shared: Arc<Shared>) {
    if let Err(e) = session(client, &shared) {
        log::info!("ftpfault: session ended: {e}");
    }
}

fn session(client: TcpStream, shared: &Arc<Shared>) -> io::Result<()> {
    shared.gate();
    let server = match TcpStream::connect_timeout(&shared.upstream, CONNECT_TIMEOUT) {
        Ok(s) => s,
        Err(e) => {
            let mut c = client;
            let _ = c.write_all(b"421 ftpfault: upstream unreachable\r\n");
            return Err(e);
        }
    };
    shared.counters.sessions.fetch_add(1, Ordering::SeqCst);
    let epoch = shared.epoch();
    // Replies are relayed line by line: with Nagle, each line after the
    // first of a multi-line reply (FEAT, MLST) would wait for the peer's
    // delayed ACK, adding ~40 ms the real link does not have.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let ids = [shared.register(&client), shared.register(&server)];
    let sess = Arc::new(SessionSockets::default());
    {
        let mut v = lock(&sess.sockets);
        v.push(client.try_clone()?);
        v.push(server.try_clone()?);
    }
    let local_ip = client
        .local_addr()
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let client_w = Arc::new(Mutex::new(client.try_clone()?));

    let up = {
        let (src, dst) = (client.try_clone()?, server.try_clone()?);
        let (sh, cw) = (Arc::clone(shared), Arc::clone(&client_w));
        thread::Builder::new()
            .name("ftpfault-ctrl-up".into())
            .spawn(move || relay_commands(src, dst, epoch, &sh, &cw))?
    };
    relay_replies(&server, &client_w, epoch, shared, local_ip, &sess);
    // One direction ended: end the other one too (unless an outage lost
    // the connection: then nothing is said until the proxy stops).
    let _ = shared.pass(epoch);
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
    let _ = up.join();
    for id in ids {
        shared.unregister(id);
    }
    Ok(())
}

/// Reads one line (up to `MAX_LINE` bytes) including its `\n`.
fn read_line<R: BufRead>(r: &mut R, line: &mut Vec<u8>) -> io::Result<usize> {
    line.clear();
    r.by_ref().take(MAX_LINE).read_until(b'\n', line)
}

fn relay_commands(
    src: TcpStream,
    mut dst: TcpStream,
    epoch: u64,
    shared: &Shared,
    client_w: &Mutex<TcpStream>,
) {
    let mut r = BufReader::new(src);
    let mut line = Vec::new();
    while let Ok(n) = read_line(&mut r, &mut line) {
        if n == 0 {
            break;
        }
        let verb = line
            .split(|b| *b == b' ' || *b == b'\r' || *b == b'\n')
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        if verb == b"PORT" || verb == b"EPRT" {
            let reply = b"502 ftpfault: active mode not supported, use PASV or EPSV\r\n";
            if lock(client_w).write_all(reply).is_err() {
                break;
            }
            continue;
        }
        if !shared.pass(epoch) {
            return;
        }
        if shared.refuses(&verb) {
            let v = String::from_utf8_lossy(&verb);
            let reply = format!("550 {v}: Operation not permitted\r\n");
            if lock(client_w).write_all(reply.as_bytes()).is_err() {
                break;
            }
            continue;
        }
        if dst.write_all(&line).is_err() {
            break;
        }
        shared
            .counters
            .up_ctrl
            .fetch_add(n as u64, Ordering::SeqCst);
    }
    if !shared.pass(epoch) {
        return;
    }
    let _ = dst.shutdown(Shutdown::Write);
}

fn relay_replies(
    server: &TcpStream,
    client_w: &Mutex<TcpStream>,
    epoch: u64,
    shared: &Arc<Shared>,
    local_ip: IpAddr,
    sess: &Arc<SessionSockets>,
) {
    let src = match server.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    };
    let mut r = BufReader::new(src);
    let mut line = Vec::new();
    // Inside a multi-line 211 (FEAT) reply, feature lines may be hidden.
    let mut in_feat = false;
    while let Ok(n) = read_line(&mut r, &mut line) {
        if n == 0 {
            break;
        }
        shared
            .counters
            .down_ctrl
            .fetch_add(n as u64, Ordering::SeqCst);
        if !shared.pass(epoch) {
            return;
        }
        if line.starts_with(b"211-") {
            in_feat = true;
        } else if line.starts_with(b"211 ") {
            in_feat = false;
        } else if in_feat && line.starts_with(b" ") && shared.hides_feature(&line) {
            continue;
        }
        let out = rewrite(&line, shared, local_ip, sess).unwrap_or_else(|| line.clone());
        if lock(client_w).write_all(&out).is_err() {
            break;
        }
    }
}

/// For a 227/229 reply, opens a proxy data listener and returns the reply
/// pointing at it; `None` leaves the line unchanged.
fn rewrite(
    line: &[u8],
    shared: &Arc<Shared>,
    local_ip: IpAddr,
    sess: &Arc<SessionSockets>,
) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(line).ok()?;
    let upstream_ip = shared.upstream.ip();
    if text.starts_with("227 ") {
        let mut target = parse_pasv(text)?;
        if target.ip().is_unspecified() {
            target.set_ip(upstream_ip);
        }
        let mine = data::open(shared, local_ip, target, sess).ok()?;
        let IpAddr::V4(v4) = mine.ip() else {
            return None;
        };
        return Some(format_pasv(v4, mine.port()).into_bytes());
    }
    if text.starts_with("229 ") {
        let port = parse_epsv(text)?;
        let mine = data::open(shared, local_ip, SocketAddr::new(upstream_ip, port), sess).ok()?;
        return Some(format_epsv(mine.port()).into_bytes());
    }
    None
}

/// The address in a `227` reply: the first `h1,h2,h3,h4,p1,p2` in it.
pub(crate) fn parse_pasv(line: &str) -> Option<SocketAddr> {
    let rest = line.get(4..)?;
    let start = rest.find(|c: char| c.is_ascii_digit())?;
    let nums: Vec<u8> = rest[start..]
        .split(|c: char| !c.is_ascii_digit() && c != ',')
        .next()?
        .split(',')
        .take(6)
        .map(|p| p.parse::<u8>().ok())
        .collect::<Option<Vec<u8>>>()?;
    if nums.len() != 6 {
        return None;
    }
    let ip = Ipv4Addr::new(nums[0], nums[1], nums[2], nums[3]);
    let port = u16::from(nums[4]) << 8 | u16::from(nums[5]);
    Some(SocketAddr::new(IpAddr::V4(ip), port))
}

pub(crate) fn format_pasv(ip: Ipv4Addr, port: u16) -> String {
    let o = ip.octets();
    format!(
        "227 Entering Passive Mode ({},{},{},{},{},{}).\r\n",
        o[0],
        o[1],
        o[2],
        o[3],
        port >> 8,
        port & 0xff
    )
}

/// The port in a `229` reply: `(<d><d><d>PORT<d>)` with any delimiter `d`.
pub(crate) fn parse_epsv(line: &str) -> Option<u16> {
    let open = line.find('(')?;
    let inner = &line[open + 1..];
    let close = inner.find(')')?;
    let inner = &inner[..close];
    let d = inner.chars().next()?;
    let parts: Vec<&str> = inner.split(d).collect();
    // "|||6446|" splits into ["", "", "", "6446", ""]
    if parts.len() != 5 || !parts[..3].iter().all(|p| p.is_empty()) || !parts[4].is_empty() {
        return None;
    }
    parts[3].parse().ok()
}

pub(crate) fn format_epsv(port: u16) -> String {
    format!("229 Entering Extended Passive Mode (|||{port}|)\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pasv_parses_common_forms() {
        let a = parse_pasv("227 Entering Passive Mode (127,0,0,1,117,48).\r\n");
        assert_eq!(a, Some("127.0.0.1:30000".parse().unwrap()));
        let b = parse_pasv("227 =10,1,2,3,0,21\r\n");
        assert_eq!(b, Some("10.1.2.3:21".parse().unwrap()));
        assert_eq!(
            parse_pasv("227 Entering Passive Mode (127,0,0,1,300,1)"),
            None
        );
        assert_eq!(parse_pasv("227 Entering Passive Mode (127,0,0,1)"), None);
        assert_eq!(parse_pasv("227 no numbers"), None);
        assert_eq!(parse_pasv("227"), None);
    }

    #[test]
    fn pasv_round_trips() {
        let s = format_pasv(Ipv4Addr::LOCALHOST, 40001);
        assert_eq!(
            parse_pasv(&s),
            Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 40001))
        );
    }

    #[test]
    fn epsv_parses_and_round_trips() {
        assert_eq!(
            parse_epsv("229 Extended Passive mode OK (|||50123|)\r\n"),
            Some(50123)
        );
        assert_eq!(parse_epsv("229 x (!!!21!)"), Some(21));
        assert_eq!(parse_epsv("229 x (|||notaport|)"), None);
        assert_eq!(parse_epsv("229 x (||1|21|)"), None);
        assert_eq!(parse_epsv("229 x |||21|"), None);
        assert_eq!(parse_epsv(&format_epsv(65535)), Some(65535));
    }
}
