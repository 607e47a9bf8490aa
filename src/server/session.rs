//! One control connection: the command loop and the session state machine.
//!
//! A session starts logged in (the [`super::lobby`] greets and logs
//! connections in). The loop reads bounded lines with a short socket
//! timeout so it can notice server shutdown and its own idle timeout.
//! Commands are dispatched by group to `cmd_*` modules, which reply through
//! [`Session::reply`].

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::gate::Login;
use super::lineio::{LineEvent, LineReader};
use super::listener::Shared;
use super::paths::{PathError, VPath};
use super::tls::Ctrl;
use crate::key::Key;

/// How often blocking reads wake up to check for shutdown and idleness.
pub(crate) const POLL: Duration = Duration::from_millis(500);

/// A session's state.
pub(crate) struct Session {
    pub shared: Arc<Shared>,
    pub id: u64,
    pub ctrl: Ctrl,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// Logged-in account.
    pub user: Option<String>,
    /// Logged in anonymously: read-only.
    pub anonymous: bool,
    pub cwd: VPath,
    /// Offset from REST for the next RETR/STOR.
    pub rest: Option<u64>,
    /// Source of a rename (RNFR).
    pub rename_from: Option<VPath>,
    /// KEY bound to the next STOR/APPE.
    pub key: Option<Key>,
    /// The file of the pending 350 prompt: its next STOR/APPE proceeds.
    pub prompted: Option<String>,
    /// The file named by the last prompt, for KEY NULL.
    pub last_prompt: Option<String>,
    /// A `RANG` for the next HASH (start, end inclusive).
    pub hash_range: Option<(u64, u64)>,
    /// An open passive listener.
    pub passive: Option<TcpListener>,
    /// Where to connect for the next transfer (PORT/EPRT).
    pub active: Option<SocketAddr>,
    /// EPSV ALL was sent: PORT, EPRT and PASV are refused (RFC 2428).
    pub epsv_all: bool,
    pub quit: bool,
    /// The control connection's bounded line reader.
    pub reader: LineReader<Ctrl>,
    /// The control connection is TLS: binds its data connections (see [`super::tls`]).
    pub tls_token: Option<Vec<u8>>,
    /// PBSZ was sent (needed before PROT).
    pub pbsz: bool,
    /// PROT P: data connections are TLS.
    pub prot_private: bool,
}

/// How a session's control connection came to it.
pub(crate) struct Start {
    pub ctrl: Ctrl,
    pub reader: LineReader<Ctrl>,
    pub id: u64,
    pub login: Login,
    pub tls_token: Option<Vec<u8>>,
    pub pbsz: bool,
    pub prot_private: bool,
}

impl Session {
    /// Runs a logged-in session to its end.
    pub fn run(shared: Arc<Shared>, st: Start) {
        let id = st.id;
        let addrs = st.ctrl.with_tcp(|t| {
            let _ = t.set_read_timeout(Some(POLL));
            let _ = t.set_write_timeout(Some(Duration::from_secs(30)));
            let _ = t.set_nodelay(true);
            (t.peer_addr(), t.local_addr())
        });
        let (peer, local) = match addrs {
            (Ok(p), Ok(l)) => (p, l),
            _ => return,
        };
        let mut s = Session {
            shared,
            id,
            ctrl: st.ctrl,
            peer,
            local,
            user: Some(st.login.name),
            anonymous: st.login.anonymous,
            cwd: VPath::root(),
            rest: None,
            rename_from: None,
            key: None,
            prompted: None,
            last_prompt: None,
            hash_range: None,
            passive: None,
            active: None,
            epsv_all: false,
            quit: false,
            reader: st.reader,
            tls_token: st.tls_token,
            pbsz: st.pbsz,
            prot_private: st.prot_private,
        };
        let started = Instant::now();
        let reason = s.serve();
        log::info!(
            "session {id}: end ({reason}) user={} after {:.1}s",
            s.user.as_deref().unwrap_or("-"),
            started.elapsed().as_secs_f64()
        );
    }

    fn serve(&mut self) -> String {
        let mut last = Instant::now();
        loop {
            if self.shared.stop.load(Ordering::SeqCst) {
                let _ = self.reply(421, "Server shutting down");
                return "server shutdown".into();
            }
            let ev = match self.reader.next_event() {
                Ok(ev) => ev,
                Err(e) => return format!("read error: {e}"),
            };
            match ev {
                LineEvent::Eof => return "client closed".into(),
                LineEvent::Timeout => {
                    if last.elapsed() >= self.shared.cfg.idle_timeout {
                        let _ = self.reply(421, "Idle timeout, closing control connection");
                        return "idle timeout".into();
                    }
                }
                LineEvent::TooLong => {
                    last = Instant::now();
                    if self.reply(500, "Command line too long").is_err() {
                        return "write failed".into();
                    }
                }
                LineEvent::Line(line) => {
                    if line.trim().is_empty() {
                        continue;
                    }
                    if let Err(e) = self.command(&line) {
                        return format!("write failed: {e}");
                    }
                    last = Instant::now();
                    if self.quit {
                        return "quit".into();
                    }
                }
            }
        }
    }

    /// Sends one reply; multi-line text gets the `code-` form.
    pub fn reply(&mut self, code: u16, text: &str) -> io::Result<()> {
        self.ctrl.write_all(format_reply(code, text).as_bytes())
    }

    /// Sends a raw pre-formatted reply line (e.g. from `key::format_*`).
    pub fn reply_raw(&mut self, line: &str) -> io::Result<()> {
        self.ctrl.write_all(format!("{line}\r\n").as_bytes())
    }

    /// Replies to a path error.
    pub fn path_error(&mut self, e: PathError) -> io::Result<()> {
        match e {
            PathError::Invalid(_) => self.reply(553, &format!("Refused: {e}")),
            PathError::Outside => self.reply(550, &format!("Refused: {e}")),
            PathError::NotFound => self.reply(550, "No such file or directory"),
        }
    }

    /// Resolves a client path against the cwd.
    pub fn resolve(&self, arg: &str) -> Result<VPath, PathError> {
        self.cwd.resolve(arg)
    }

    fn command(&mut self, line: &str) -> io::Result<()> {
        // Telnet IP/Synch bytes (sent before ABOR by some clients) are not part of the verb.
        let line = line.trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
        let (verb, arg) = match line.split_once(' ') {
            Some((v, a)) => (v.to_ascii_uppercase(), a),
            None => (line.to_ascii_uppercase(), ""),
        };
        if verb == "PASS" {
            log::debug!("session {}: PASS ****", self.id);
        } else {
            log::debug!("session {}: {verb} {arg}", self.id);
        }
        if self.user.is_none() && !super::cmd_basic::allowed_before_login(&verb) {
            return self.reply(530, "Please login with USER and PASS");
        }
        // RNTO must come right after its RNFR.
        if verb != "RNTO" {
            self.rename_from = None;
        }
        match verb.as_str() {
            "USER" | "PASS" | "QUIT" | "NOOP" | "SYST" | "FEAT" | "OPTS" | "TYPE" | "MODE"
            | "STRU" | "HELP" | "ALLO" | "AUTH" | "PBSZ" | "PROT" | "CCC" | "STAT" | "ACCT" => {
                super::cmd_basic::handle(self, &verb, arg)
            }
            "PWD" | "XPWD" | "CWD" | "XCWD" | "CDUP" | "XCUP" | "MKD" | "XMKD" | "RMD" | "XRMD"
            | "DELE" | "RNFR" | "RNTO" | "SIZE" | "MDTM" | "MFMT" => {
                super::cmd_fs::handle(self, &verb, arg)
            }
            "PORT" | "EPRT" => super::cmd_active::handle(self, &verb, arg),
            "PASV" | "EPSV" | "REST" | "RETR" | "STOR" | "APPE" | "ABOR" | "MLSD" | "LIST"
            | "NLST" | "MLST" => super::cmd_transfer::handle(self, &verb, arg),
            "KEY" | "XCRC" => super::cmd_key::handle(self, &verb, arg),
            "HASH" | "RANG" => super::cmd_hash::handle(self, &verb, arg),
            _ => self.reply(502, "Command not implemented"),
        }
    }
}

/// One reply on the wire; multi-line text gets the `code-` form.
pub(crate) fn format_reply(code: u16, text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() <= 1 {
        out.push_str(&format!("{code} {text}\r\n"));
    } else {
        for (i, l) in lines.iter().enumerate() {
            if i + 1 == lines.len() {
                out.push_str(&format!("{code} {l}\r\n"));
            } else if i == 0 {
                out.push_str(&format!("{code}-{l}\r\n"));
            } else {
                out.push_str(&format!(" {l}\r\n"));
            }
        }
    }
    out
}

/// The first line of an error's text.
pub(crate) fn one_line(e: &io::Error) -> String {
    e.to_string().lines().next().unwrap_or("error").to_string()
}
