//! Logging in over TLS: a connection that sent AUTH TLS in the lobby, or
//! came to the implicit-TLS port, gets a thread of its own that runs the
//! handshake and then the login, blocking, and becomes its session.
//!
//! Why a thread and not the lobby's event loop: the lobby reads and
//! writes plain lines on non-blocking sockets; putting rustls between
//! every read and write there would make each of its paths a TLS state
//! machine. A thread here is bounded the same way the lobby is — at most
//! `max_pending` of them, `max_pending_per_ip` per address, each for at
//! most `login_timeout` — and passwords
//! still go through the one [`super::gate::LoginGate`].

use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::cmd_basic;
use super::gate::{ip_key, Refusal};
use super::lineio::{LineEvent, LineReader};
use super::listener::{SessionSlot, Shared};
use super::session::{format_reply, Session, Start, POLL};
use super::tls::{self, Ctrl, Stream};

/// Wrong passwords per connection before it is closed.
const MAX_FAILURES: u32 = 3;

/// A reserved TLS login slot, released on drop.
pub(crate) struct Reserved(Arc<Shared>, IpAddr);

impl Drop for Reserved {
    fn drop(&mut self) {
        self.0.tls_pending.fetch_sub(1, Ordering::SeqCst);
        let mut per_ip = self.0.tls_per_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = per_ip.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.1);
            }
        }
    }
}

/// Reserves one of the TLS login slots for `peer` (at most `max_pending`
/// in all, `max_pending_per_ip` per address), or None when none is free.
pub(crate) fn reserve(shared: &Arc<Shared>, peer: IpAddr) -> Option<Reserved> {
    let key = ip_key(peer);
    let mut per_ip = shared.tls_per_ip.lock().unwrap_or_else(|p| p.into_inner());
    let n = per_ip.get(&key).copied().unwrap_or(0);
    if n >= shared.cfg.max_pending_per_ip
        || shared.tls_pending.load(Ordering::SeqCst) >= shared.cfg.max_pending
    {
        return None;
    }
    shared.tls_pending.fetch_add(1, Ordering::SeqCst);
    per_ip.insert(key, n + 1);
    Some(Reserved(shared.clone(), key))
}

/// Starts the login thread of a connection; `early` holds bytes already
/// read after AUTH TLS (the start of the handshake, if any).
pub(crate) fn spawn(slot: Reserved, tcp: TcpStream, id: u64, early: Vec<u8>, implicit: bool) {
    let spawned = std::thread::Builder::new()
        .name(format!("keyftpd-tls-{id}"))
        .stack_size(512 << 10)
        .spawn(move || login(slot, tcp, id, early, implicit));
    if let Err(e) = spawned {
        log::error!("cannot start TLS login thread: {e}");
    }
}

/// Accepts implicit-TLS connections until the server stops.
pub(crate) fn accept_implicit(shared: Arc<Shared>, l: TcpListener) {
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        match super::data::poll_readable(l.as_raw_fd(), 200) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                log::warn!("implicit TLS listener: {e}");
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
        }
        let (tcp, peer) = match l.accept() {
            Ok(x) => x,
            Err(e) => {
                log::warn!("implicit TLS accept: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        // Nothing can be said in plain text on this port: refusals close.
        if shared.gate.banned(peer.ip()).is_some()
            || shared.sessions.load(Ordering::SeqCst) >= shared.cfg.max_sessions
        {
            log::warn!("refused implicit TLS connection from {peer}");
            continue;
        }
        let Some(slot) = reserve(&shared, peer.ip()) else {
            log::warn!("refused implicit TLS connection from {peer}: too many logging in");
            continue;
        };
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        log::info!("session {id}: connect from {peer} (implicit TLS)");
        spawn(slot, tcp, id, Vec::new(), true);
    }
}

fn login(slot: Reserved, tcp: TcpStream, id: u64, early: Vec<u8>, implicit: bool) {
    let shared = slot.0.clone();
    let started = Instant::now();
    let Some(cfg) = shared.cfg.tls.clone() else {
        return;
    };
    let peer = match tcp.peer_addr() {
        Ok(p) => p,
        Err(_) => return,
    };
    let _ = tcp.set_nodelay(true);
    let token = tls::new_token();
    let limit = shared.cfg.login_timeout;
    let stream = match tls::accept(&cfg, tcp, &early, &token, limit) {
        Ok(s) => s,
        Err(e) => {
            log::info!("session {id}: end (TLS handshake: {e}) user=- from {peer}");
            return;
        }
    };
    let mut ctrl = Ctrl::new(Stream::Tls(Box::new(stream)));
    ctrl.with_tcp(|t| {
        let _ = t.set_read_timeout(Some(POLL));
        let _ = t.set_write_timeout(Some(Duration::from_secs(30)));
    });
    let mut st = State {
        reader: LineReader::new(ctrl.clone()),
        user: None,
        failures: 0,
        pbsz: false,
        prot_private: false,
    };
    if implicit && reply(&mut ctrl, 220, "keyftpd ready (implicit TLS)").is_err() {
        return;
    }
    let reason = loop {
        if shared.stop.load(Ordering::SeqCst) {
            let _ = reply(&mut ctrl, 421, "Server shutting down");
            break "server shutdown".to_string();
        }
        if started.elapsed() >= limit {
            let _ = reply(&mut ctrl, 421, "Login timeout, closing control connection");
            break "login timeout".into();
        }
        let line = match st.reader.next_event() {
            Ok(LineEvent::Line(l)) => l,
            Ok(LineEvent::Timeout) => continue,
            Ok(LineEvent::TooLong) => {
                if reply(&mut ctrl, 500, "Command line too long").is_err() {
                    break "write failed".into();
                }
                continue;
            }
            Ok(LineEvent::Eof) => break "client closed".into(),
            Err(e) => break format!("read error: {e}"),
        };
        match command(&shared, &mut ctrl, &mut st, peer, &line) {
            Ok(Next::More) => {}
            Ok(Next::Close(r)) => break r,
            Ok(Next::Login(login)) => {
                if shared.sessions.fetch_add(1, Ordering::SeqCst) >= shared.cfg.max_sessions {
                    shared.sessions.fetch_sub(1, Ordering::SeqCst);
                    let _ = reply(&mut ctrl, 421, "Too many users logged in, try again later");
                    break "too many sessions".into();
                }
                let session = SessionSlot(shared.clone());
                drop(slot);
                log::info!("session {id}: login {} from {peer} (TLS)", login.name);
                if reply(&mut ctrl, 230, "Login successful").is_err() {
                    return;
                }
                let start = Start {
                    ctrl,
                    reader: st.reader,
                    id,
                    login,
                    tls_token: Some(token),
                    pbsz: st.pbsz,
                    prot_private: st.prot_private,
                };
                Session::run(shared.clone(), start);
                drop(session);
                return;
            }
            Err(e) => break format!("write failed: {e}"),
        }
    };
    log::info!(
        "session {id}: end ({reason}) user=- after {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

struct State {
    reader: LineReader<Ctrl>,
    user: Option<String>,
    failures: u32,
    pbsz: bool,
    prot_private: bool,
}

enum Next {
    More,
    Close(String),
    Login(super::gate::Login),
}

fn reply(ctrl: &mut Ctrl, code: u16, text: &str) -> io::Result<()> {
    ctrl.write_all(format_reply(code, text).as_bytes())
}

fn command(
    shared: &Arc<Shared>,
    ctrl: &mut Ctrl,
    st: &mut State,
    peer: SocketAddr,
    line: &str,
) -> io::Result<Next> {
    let line = line.trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
    if line.trim().is_empty() {
        return Ok(Next::More);
    }
    let (verb, arg) = match line.split_once(' ') {
        Some((v, a)) => (v.to_ascii_uppercase(), a),
        None => (line.to_ascii_uppercase(), ""),
    };
    match verb.as_str() {
        "USER" => {
            let name = arg.trim();
            if name.is_empty() {
                reply(ctrl, 501, "USER needs a name")?;
            } else {
                st.user = Some(name.chars().take(64).collect());
                reply(ctrl, 331, "Password required")?;
            }
        }
        "PASS" => {
            let Some(user) = st.user.take() else {
                reply(ctrl, 503, "Send USER first")?;
                return Ok(Next::More);
            };
            match shared.gate.check(peer.ip(), &user, arg) {
                Ok(login) => return Ok(Next::Login(login)),
                Err(Refusal::Denied { .. }) => {
                    st.failures += 1;
                    if st.failures >= MAX_FAILURES {
                        reply(ctrl, 421, "Too many failed logins, closing")?;
                        return Ok(Next::Close("too many failed logins".into()));
                    }
                    reply(ctrl, 530, "Login incorrect")?;
                }
                Err(r) => {
                    reply(ctrl, 421, &r.to_string())?;
                    return Ok(Next::Close(r.to_string()));
                }
            }
        }
        "QUIT" => {
            reply(ctrl, 221, "Goodbye")?;
            return Ok(Next::Close("quit".into()));
        }
        "AUTH" => reply(ctrl, 503, "TLS is already active")?,
        "PBSZ" => {
            st.pbsz = true;
            reply(ctrl, 200, "PBSZ=0")?;
        }
        "PROT" => {
            let (code, text, prot) = cmd_basic::prot(st.pbsz, arg);
            if let Some(p) = prot {
                st.prot_private = p;
            }
            reply(ctrl, code, text)?;
        }
        "CCC" => reply(
            ctrl,
            534,
            "CCC refused: the control connection stays encrypted",
        )?,
        _ => match cmd_basic::before_login(&verb, arg, true) {
            Some(wire) => ctrl.write_all(wire.as_bytes())?,
            None => reply(ctrl, 530, "Please login with USER and PASS")?,
        },
    }
    Ok(Next::More)
}
