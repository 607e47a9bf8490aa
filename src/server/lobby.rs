//! The lobby: every connection that has not logged in yet, served by one
//! thread (epoll through mio) instead of a thread each, so that a thousand
//! idle sockets cost a thousand small records, not a thousand threads, and
//! never take a logged-in user's session slot.
//!
//! - A connection gets its greeting at once, then may send USER, PASS and
//!   the harmless commands (NOOP SYST FEAT OPTS HELP QUIT; others get 530).
//! - It has `login_timeout` from connect to log in (421 then).
//! - At most `max_pending` wait here, `max_pending_per_ip` per address. A
//!   new connection over either cap closes an older one that is not in the
//!   middle of logging in: of its own address, or else of the address that
//!   holds the most; silent ones first, oldest first. Whoever holds or
//!   reopens many sockets crowds out his own first, and a user who has
//!   sent USER is the last to go.
//! - Passwords go through the [`super::gate::LoginGate`] on a few auth
//!   threads. A password the gate cannot check yet is parked until it can
//!   (so parallel connections queue, not guess); a failed one gets its 530
//!   after the gate's delay.
//! - A connection that sends AUTH TLS (when the server has a certificate)
//!   gets its 234 and leaves for a thread of its own, which runs the
//!   handshake and the rest of the login ([`super::tls_login`]).
//! - A connection that logs in gets a session slot (421 when all
//!   `max_sessions` are taken) and moves to its own session thread, with
//!   any commands it already sent.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

use super::cmd_basic;
use super::gate::{ip_key, Login, Refusal, Ticket};
use super::listener::{spawn_session, Shared};
use super::session::format_reply;
use super::tls_login;

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const FIRST: usize = 2;
/// The longest line accepted before login (USER and PASS are short).
const MAX_LINE: usize = 1024;
/// Reply bytes a client may leave unread before it is closed.
const MAX_OUT: usize = 8 << 10;
/// Wrong passwords per connection before it is closed.
const MAX_FAILURES: u32 = 3;
/// Threads checking passwords (a check is a few ms of hashing).
const AUTH_THREADS: usize = 2;
/// Passwords waiting for an auth thread, at most.
const AUTH_QUEUE: usize = 1024;
/// The longest the loop sleeps: shutdown is noticed within it.
const TICK: Duration = Duration::from_millis(200);

enum Phase {
    /// Reading commands.
    Idle,
    /// A PASS waiting for the gate to allow its check.
    Parked {
        until: Instant,
        user: String,
        pass: String,
    },
    /// A PASS with an auth thread.
    Checking,
    /// A refused PASS, answered at `until`.
    Delayed {
        until: Instant,
        code: u16,
        text: String,
        close: bool,
    },
}

struct Conn {
    id: u64,
    stream: TcpStream,
    peer: SocketAddr,
    key: IpAddr,
    connected: Instant,
    inbuf: Vec<u8>,
    discarding: bool,
    out: Vec<u8>,
    user: Option<String>,
    failures: u32,
    /// Sent at least one command (silent ones are closed first).
    spoke: bool,
    phase: Phase,
    /// Close once the pending reply is out.
    closing: bool,
}

struct Job {
    slot: usize,
    id: u64,
    ticket: Ticket,
    user: String,
    pass: String,
}

struct Done {
    slot: usize,
    id: u64,
    result: Result<Login, Refusal>,
}

struct Lobby {
    shared: Arc<Shared>,
    poll: Poll,
    listener: TcpListener,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    per_ip: HashMap<IpAddr, usize>,
    count: usize,
    jobs: Option<Sender<Job>>,
    done: Receiver<Done>,
    /// Accept failed (out of file descriptors): try again next tick.
    retry_accept: bool,
}

/// Serves the listener until the server stops.
pub(crate) fn run(shared: Arc<Shared>, listener: std::net::TcpListener) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let mut listener = TcpListener::from_std(listener);
    let poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let (jtx, jrx) = crossbeam_channel::bounded::<Job>(AUTH_QUEUE);
    let (dtx, drx) = crossbeam_channel::unbounded::<Done>();
    let mut workers: Vec<JoinHandle<()>> = Vec::new();
    for i in 0..AUTH_THREADS {
        let (jrx, dtx, waker) = (jrx.clone(), dtx.clone(), waker.clone());
        let t = std::thread::Builder::new()
            .name(format!("keyftpd-auth-{i}"))
            .stack_size(256 << 10)
            .spawn(move || {
                for job in jrx.iter() {
                    let result = job.ticket.verify(&job.user, &job.pass);
                    let _ = dtx.send(Done {
                        slot: job.slot,
                        id: job.id,
                        result,
                    });
                    let _ = waker.wake();
                }
            })?;
        workers.push(t);
    }
    let mut lobby = Lobby {
        shared,
        poll,
        listener,
        conns: Vec::new(),
        free: Vec::new(),
        per_ip: HashMap::new(),
        count: 0,
        jobs: Some(jtx),
        done: drx,
        retry_accept: false,
    };
    let res = lobby.serve();
    lobby.jobs = None;
    for t in workers {
        let _ = t.join();
    }
    res
}

/// Writes a one-line refusal to a connection that is not admitted.
fn refuse(stream: TcpStream, peer: SocketAddr, line: &str) {
    log::warn!("refused connection from {peer}: {line}");
    let _ = (&stream).write(format!("{line}\r\n").as_bytes());
}

impl Lobby {
    fn serve(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            if self.shared.stop.load(Ordering::SeqCst) {
                for slot in 0..self.conns.len() {
                    self.reply(slot, 421, "Server shutting down");
                    self.close(slot, "server shutdown");
                }
                return Ok(());
            }
            let now = Instant::now();
            let timeout = self
                .next_deadline()
                .map(|d| d.saturating_duration_since(now))
                .unwrap_or(TICK)
                .min(TICK);
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept_all(),
                    WAKER => {}
                    Token(t) => {
                        let slot = t - FIRST;
                        if ev.is_writable() {
                            self.flush(slot);
                        }
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            self.pump(slot);
                        }
                    }
                }
            }
            if self.retry_accept {
                self.accept_all();
            }
            self.take_results();
            self.timers();
        }
    }

    fn conn(&mut self, slot: usize) -> Option<&mut Conn> {
        self.conns.get_mut(slot).and_then(Option::as_mut)
    }

    fn next_deadline(&self) -> Option<Instant> {
        let login = self.shared.cfg.login_timeout;
        self.conns
            .iter()
            .flatten()
            .map(|c| {
                let t = c.connected + login;
                match c.phase {
                    Phase::Parked { until, .. } | Phase::Delayed { until, .. } => t.min(until),
                    _ => t,
                }
            })
            .min()
    }

    fn accept_all(&mut self) {
        self.retry_accept = false;
        loop {
            match self.listener.accept() {
                Ok((stream, peer)) => self.admit(stream, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::warn!("accept: {e}");
                    self.retry_accept = true;
                    return;
                }
            }
        }
    }

    fn admit(&mut self, mut stream: TcpStream, peer: SocketAddr) {
        let sh = self.shared.clone();
        if let Some(left) = sh.gate.banned(peer.ip()) {
            let r = Refusal::Banned { retry_after: left };
            return refuse(stream, peer, &format!("421 {r}"));
        }
        if sh.sessions.load(Ordering::SeqCst) >= sh.cfg.max_sessions {
            return refuse(stream, peer, "421 Too many connections, try again later");
        }
        let key = ip_key(peer.ip());
        if self.per_ip.get(&key).copied().unwrap_or(0) >= sh.cfg.max_pending_per_ip {
            match self.victim(Some(key)) {
                Some(v) => self.evict(v),
                None => {
                    return refuse(
                        stream,
                        peer,
                        "421 Too many connections from your address, try again later",
                    )
                }
            }
        }
        if self.count >= sh.cfg.max_pending {
            match self.victim(None) {
                Some(v) => self.evict(v),
                None => return refuse(stream, peer, "421 Too many connections, try again later"),
            }
        }
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.conns.push(None);
                self.conns.len() - 1
            }
        };
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, Token(slot + FIRST), interest)
        {
            self.free.push(slot);
            return refuse(stream, peer, &format!("421 Server error: {e}"));
        }
        let _ = stream.set_nodelay(true);
        let id = sh.next_id.fetch_add(1, Ordering::Relaxed);
        log::info!("session {id}: connect from {peer}");
        self.conns[slot] = Some(Conn {
            id,
            stream,
            peer,
            key,
            connected: Instant::now(),
            inbuf: Vec::new(),
            discarding: false,
            out: Vec::new(),
            user: None,
            failures: 0,
            spoke: false,
            phase: Phase::Idle,
            closing: false,
        });
        self.count += 1;
        *self.per_ip.entry(key).or_insert(0) += 1;
        self.reply(slot, 220, "keyftpd ready (KEY extension, see FEAT)");
    }

    /// The connection to close for a newcomer: not mid-login; of `key` if
    /// given, else of the address holding the most; silent first, oldest first.
    fn victim(&self, key: Option<IpAddr>) -> Option<usize> {
        self.conns
            .iter()
            .enumerate()
            .filter_map(|(slot, c)| c.as_ref().map(|c| (slot, c)))
            .filter(|(_, c)| matches!(c.phase, Phase::Idle) && !c.closing)
            .filter(|(_, c)| key.is_none_or(|k| c.key == k))
            .min_by_key(|(_, c)| {
                let held = self.per_ip.get(&c.key).copied().unwrap_or(0);
                (Reverse(held), c.spoke, c.connected)
            })
            .map(|(slot, _)| slot)
    }

    fn evict(&mut self, slot: usize) {
        self.reply(
            slot,
            421,
            "Too many connections waiting to log in; closing this one",
        );
        self.close(slot, "closed for a newer connection");
    }

    /// Queues a reply and sends what the socket takes now.
    fn reply(&mut self, slot: usize, code: u16, text: &str) {
        if let Some(c) = self.conn(slot) {
            c.out.extend_from_slice(format_reply(code, text).as_bytes());
            self.flush(slot);
        }
    }

    fn flush(&mut self, slot: usize) {
        let Some(c) = self.conn(slot) else { return };
        let mut failed = false;
        while !c.out.is_empty() {
            match (&c.stream).write(&c.out) {
                Ok(0) => {
                    failed = true;
                    break;
                }
                Ok(n) => {
                    c.out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        if failed || c.out.len() > MAX_OUT {
            self.close(slot, "write failed");
        } else if c.closing && c.out.is_empty() {
            self.close(slot, "closed");
        }
    }

    fn close(&mut self, slot: usize, reason: &str) {
        let Some(mut c) = self.conns.get_mut(slot).and_then(Option::take) else {
            return;
        };
        let _ = (&c.stream).write(&c.out);
        let _ = self.poll.registry().deregister(&mut c.stream);
        self.forget(slot, c.key);
        log::info!(
            "session {}: end ({reason}) user=- after {:.1}s",
            c.id,
            c.connected.elapsed().as_secs_f64()
        );
    }

    /// Slot bookkeeping for a connection that leaves the lobby.
    fn forget(&mut self, slot: usize, key: IpAddr) {
        self.free.push(slot);
        self.count -= 1;
        if let Some(n) = self.per_ip.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&key);
            }
        }
    }

    /// Runs the complete lines of an idle connection and reads more.
    fn pump(&mut self, slot: usize) {
        let mut tmp = [0u8; 512];
        loop {
            let Some(c) = self.conn(slot) else { return };
            if c.closing {
                return;
            }
            if !matches!(c.phase, Phase::Idle) && c.inbuf.len() >= MAX_LINE {
                return;
            }
            if matches!(c.phase, Phase::Idle) {
                if let Some(i) = c.inbuf.iter().position(|&b| b == b'\n') {
                    let raw: Vec<u8> = c.inbuf.drain(..=i).collect();
                    let line = String::from_utf8_lossy(&raw);
                    let line = line.trim_end_matches(['\r', '\n']).to_string();
                    self.command(slot, &line);
                    continue;
                }
                if c.inbuf.len() >= MAX_LINE {
                    c.inbuf.clear();
                    c.discarding = true;
                    self.reply(slot, 500, "Command line too long");
                    continue;
                }
            }
            let room = MAX_LINE.saturating_sub(c.inbuf.len()).min(tmp.len());
            match (&c.stream).read(&mut tmp[..room]) {
                Ok(0) => return self.close(slot, "client closed"),
                Ok(n) => {
                    let mut got = &tmp[..n];
                    if c.discarding {
                        match got.iter().position(|&b| b == b'\n') {
                            Some(i) => {
                                c.discarding = false;
                                got = &got[i + 1..];
                            }
                            None => continue,
                        }
                    }
                    c.inbuf.extend_from_slice(got);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => return self.close(slot, &format!("read error: {e}")),
            }
        }
    }

    fn command(&mut self, slot: usize, line: &str) {
        let line = line.trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
        if line.trim().is_empty() {
            return;
        }
        let (verb, arg) = match line.split_once(' ') {
            Some((v, a)) => (v.to_ascii_uppercase(), a),
            None => (line.to_ascii_uppercase(), ""),
        };
        let anon = {
            let accounts = self.shared.gate.accounts();
            accounts.is_anonymous(arg.trim())
        };
        let tls = self.shared.cfg.tls.is_some();
        let require_tls = self.shared.cfg.require_tls;
        let Some(c) = self.conn(slot) else { return };
        c.spoke = true;
        log::debug!(
            "session {}: {verb} {}",
            c.id,
            if verb == "PASS" { "****" } else { arg }
        );
        match verb.as_str() {
            "AUTH" if tls => {
                let a = arg.trim().to_ascii_uppercase();
                if matches!(a.as_str(), "TLS" | "SSL" | "TLS-C") {
                    self.start_tls(slot)
                } else {
                    self.reply(slot, 504, "Only AUTH TLS is supported")
                }
            }
            "USER" if require_tls => self.reply(slot, 530, "TLS required: send AUTH TLS first"),
            "PBSZ" | "PROT" | "CCC" if tls => self.reply(slot, 503, "Send AUTH TLS first"),
            "USER" => {
                let name = arg.trim();
                if name.is_empty() {
                    return self.reply(slot, 501, "USER needs a name");
                }
                c.user = Some(name.chars().take(64).collect());
                if anon {
                    self.reply(slot, 331, "Anonymous login ok, send any password")
                } else {
                    self.reply(slot, 331, "Password required")
                }
            }
            "PASS" => match c.user.take() {
                Some(user) => self.start_check(slot, user, arg.to_string()),
                None => self.reply(slot, 503, "Send USER first"),
            },
            "QUIT" => {
                c.closing = true;
                self.reply(slot, 221, "Goodbye")
            }
            _ => match cmd_basic::before_login(&verb, arg, tls) {
                Some(wire) => {
                    c.out.extend_from_slice(wire.as_bytes());
                    self.flush(slot);
                }
                None => self.reply(slot, 530, "Please login with USER and PASS"),
            },
        }
    }

    fn start_check(&mut self, slot: usize, user: String, pass: String) {
        let gate = self.shared.gate.clone();
        let jobs = self.jobs.clone();
        let Some(c) = self.conn(slot) else { return };
        match gate.try_begin(c.peer.ip()) {
            Ok(ticket) => {
                c.phase = Phase::Checking;
                let job = Job {
                    slot,
                    id: c.id,
                    ticket,
                    user,
                    pass,
                };
                let sent = jobs.map(|j| j.try_send(job));
                if !matches!(sent, Some(Ok(()))) {
                    if let Some(Err(TrySendError::Full(_))) = sent {
                        log::warn!("auth queue full");
                    }
                    c.phase = Phase::Idle;
                    c.closing = true;
                    self.reply(slot, 421, "Server busy, try again later");
                }
            }
            Err(Refusal::Wait { retry_after }) => {
                c.phase = Phase::Parked {
                    until: Instant::now() + retry_after,
                    user,
                    pass,
                };
            }
            Err(r) => {
                c.closing = true;
                self.reply(slot, 421, &r.to_string());
            }
        }
    }

    fn take_results(&mut self) {
        let done: Vec<Done> = self.done.try_iter().collect();
        for d in done {
            let Some(c) = self.conn(d.slot) else { continue };
            if c.id != d.id || !matches!(c.phase, Phase::Checking) {
                continue;
            }
            match d.result {
                Ok(login) => self.promote(d.slot, login),
                Err(Refusal::Denied { delay }) => {
                    c.failures += 1;
                    let last = c.failures >= MAX_FAILURES;
                    c.phase = Phase::Delayed {
                        until: Instant::now() + delay,
                        code: if last { 421 } else { 530 },
                        text: if last {
                            "Too many failed logins, closing".into()
                        } else {
                            "Login incorrect".into()
                        },
                        close: last,
                    };
                }
                Err(r) => {
                    c.phase = Phase::Idle;
                    c.closing = true;
                    self.reply(d.slot, 421, &r.to_string());
                }
            }
        }
    }

    fn timers(&mut self) {
        let now = Instant::now();
        let login = self.shared.cfg.login_timeout;
        for slot in 0..self.conns.len() {
            let Some(c) = self.conn(slot) else { continue };
            if now >= c.connected + login {
                c.closing = true;
                self.reply(slot, 421, "Login timeout, closing control connection");
                self.close(slot, "login timeout");
                continue;
            }
            let due = match &c.phase {
                Phase::Parked { until, .. } | Phase::Delayed { until, .. } => *until <= now,
                _ => false,
            };
            if !due {
                continue;
            }
            match std::mem::replace(&mut c.phase, Phase::Idle) {
                Phase::Parked { user, pass, .. } => self.start_check(slot, user, pass),
                Phase::Delayed {
                    code, text, close, ..
                } => {
                    c.closing = close;
                    self.reply(slot, code, &text);
                    self.pump(slot);
                }
                _ => {}
            }
        }
    }

    /// AUTH TLS: answers 234 and hands the connection to a thread of its
    /// own for the handshake and the login (see [`super::tls_login`]).
    fn start_tls(&mut self, slot: usize) {
        let peer = match self.conn(slot) {
            Some(c) => c.peer.ip(),
            None => return,
        };
        let Some(reserved) = tls_login::reserve(&self.shared, peer) else {
            if let Some(c) = self.conn(slot) {
                c.closing = true;
            }
            return self.reply(
                slot,
                421,
                "Too many connections logging in, try again later",
            );
        };
        let Some(mut c) = self.conns.get_mut(slot).and_then(Option::take) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut c.stream);
        self.forget(slot, c.key);
        let tcp: std::net::TcpStream = c.stream.into();
        c.out
            .extend_from_slice(format_reply(234, "AUTH TLS ok, start the handshake").as_bytes());
        let sent = tcp.set_nonblocking(false).is_ok()
            && tcp.set_write_timeout(Some(Duration::from_secs(10))).is_ok()
            && (&tcp).write_all(&c.out).is_ok();
        if !sent {
            log::info!("session {}: end (write failed) user=-", c.id);
            return;
        }
        let early = if c.discarding { Vec::new() } else { c.inbuf };
        tls_login::spawn(reserved, tcp, c.id, early, false);
    }

    /// A login: takes a session slot and hands the connection to a session thread.
    fn promote(&mut self, slot: usize, login: Login) {
        let sh = self.shared.clone();
        if sh.sessions.fetch_add(1, Ordering::SeqCst) >= sh.cfg.max_sessions {
            sh.sessions.fetch_sub(1, Ordering::SeqCst);
            if let Some(c) = self.conn(slot) {
                c.phase = Phase::Idle;
                c.closing = true;
            }
            return self.reply(slot, 421, "Too many users logged in, try again later");
        }
        let Some(mut c) = self.conns.get_mut(slot).and_then(Option::take) else {
            sh.sessions.fetch_sub(1, Ordering::SeqCst);
            return;
        };
        let _ = self.poll.registry().deregister(&mut c.stream);
        self.forget(slot, c.key);
        log::info!("session {}: login {} from {}", c.id, login.name, c.peer);
        c.out
            .extend_from_slice(format_reply(230, "Login successful").as_bytes());
        let pending = if c.discarding { Vec::new() } else { c.inbuf };
        spawn_session(sh, c.stream.into(), c.id, login, c.out, pending);
    }
}
