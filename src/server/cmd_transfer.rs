//! Data transfer commands: PASV EPSV REST RETR STOR APPE ABOR (PORT/EPRT
//! are in `cmd_active`).
//!
//! An upload is the store's ([`super::store::Store::begin_upload`]): it
//! takes the file's lock (450 when another upload holds it), records the
//! file as partial before the first byte, and when the data connection
//! closes records complete-or-partial by CRC before the reply. If that
//! record fails, the reply is 451/452, never 226. The control connection
//! is not read during a transfer, so a client whose control connection dies
//! still has its data connection drained to the end and every byte kept.

use std::io::{self, Read};
use std::net::{IpAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::data::{self, XFER_BUF};
use super::session::{one_line, Session, POLL};
use super::store::{ErrorKind, KeyState, Mode, Start, Upload};
use super::tls::{self, Stream};
use crate::key;

/// How an upload's data stream ended.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// The client closed the data connection (EOF).
    Clean,
    /// The data connection broke (reset, error).
    Broken(String),
    /// No data for the data timeout.
    Stalled,
    /// The disk is full.
    DiskFull,
    /// Another local write error.
    LocalError(String),
    /// The server is stopping.
    Shutdown,
    /// The client sent ABOR.
    Aborted,
    /// A newer upload of the same account and key took the file over.
    TakenOver,
}

pub(crate) fn handle(s: &mut Session, verb: &str, arg: &str) -> io::Result<()> {
    match verb {
        "PASV" | "EPSV" => passive(s, verb, arg),
        "REST" => match arg.trim().parse::<u64>() {
            Ok(n) => {
                s.rest = Some(n);
                s.reply(350, &format!("Restarting at {n}; send STOR, APPE or RETR"))
            }
            Err(_) => s.reply(501, "REST needs a byte offset"),
        },
        "ABOR" => {
            s.passive = None;
            s.active = None;
            s.rest = None;
            s.reply(226, "No transfer in progress")
        }
        "RETR" => retr(s, arg),
        "STOR" => store(s, arg, false),
        "APPE" => store(s, arg, true),
        "MLSD" | "LIST" | "NLST" | "MLST" => super::cmd_list::handle(s, verb, arg),
        _ => s.reply(502, "Command not implemented"),
    }
}

fn passive(s: &mut Session, verb: &str, arg: &str) -> io::Result<()> {
    if verb == "EPSV" && arg.trim().eq_ignore_ascii_case("ALL") {
        s.epsv_all = true;
        return s.reply(200, "EPSV ALL ok");
    }
    if verb == "PASV" && s.epsv_all {
        return s.reply(503, "EPSV ALL is in force; use EPSV");
    }
    s.passive = None;
    s.active = None;
    let ip: IpAddr = s.local.ip();
    let l = match data::open_passive(ip, s.shared.cfg.passive_ports) {
        Ok(l) => l,
        Err(e) => return s.reply(425, &format!("Cannot open passive port: {}", one_line(&e))),
    };
    let addr = match l.local_addr() {
        Ok(a) => a,
        Err(e) => return s.reply(425, &format!("Cannot open passive port: {}", one_line(&e))),
    };
    s.passive = Some(l);
    if verb == "EPSV" {
        s.reply(
            229,
            &format!("Entering Extended Passive Mode (|||{}|)", addr.port()),
        )
    } else {
        match data::pasv_tuple(addr) {
            Some(t) => s.reply(227, &format!("Entering Passive Mode ({t})")),
            None => {
                s.passive = None;
                s.reply(425, "PASV needs IPv4; use EPSV")
            }
        }
    }
}

/// Connects to the PORT/EPRT address, or takes the passive listener and
/// accepts the data connection. On failure replies 425 and returns None.
pub(crate) fn open_data(s: &mut Session) -> io::Result<Option<TcpStream>> {
    if s.shared.cfg.require_tls && !s.prot_private {
        s.passive = None;
        s.active = None;
        s.reply(521, "Data connections must be protected: send PROT P")?;
        return Ok(None);
    }
    if let Some(to) = s.active.take() {
        return super::cmd_active::connect(s, to);
    }
    let Some(l) = s.passive.take() else {
        s.reply(425, "Use PASV, EPSV, PORT or EPRT first")?;
        return Ok(None);
    };
    match data::accept_from(&l, s.peer.ip(), s.shared.cfg.data_timeout, &s.shared.stop) {
        Ok(d) => Ok(Some(d)),
        Err(e) => {
            s.reply(
                425,
                &format!("Cannot open data connection: {}", one_line(&e)),
            )?;
            Ok(None)
        }
    }
}

/// Called after the 150: under PROT P, the TLS handshake of the data
/// connection, which must resume the control connection's own session.
/// Replies 522 and returns None otherwise.
/// `client_reads`: a download or listing (see [`tls::data_config`]).
pub(crate) fn secure_data(
    s: &mut Session,
    tcp: TcpStream,
    client_reads: bool,
) -> io::Result<Option<Stream>> {
    let (true, Some(cfg), Some(token)) = (
        s.prot_private,
        s.shared.cfg.tls.clone(),
        s.tls_token.clone(),
    ) else {
        return Ok(Some(Stream::Plain(tcp)));
    };
    let cfg = tls::data_config(&cfg, client_reads);
    tls::clear_resumed();
    match tls::accept(&cfg, tcp, &[], &token, s.shared.cfg.data_timeout) {
        Ok(t) if tls::resumed_with(&t, &token) => Ok(Some(Stream::Tls(Box::new(t)))),
        Ok(t) => {
            log::warn!(
                "session {}: refused a TLS data connection that did not resume the session ({:?}, {})",
                s.id,
                t.conn.handshake_kind(),
                if t.conn.received_resumption_data().is_some() {
                    "another session"
                } else {
                    "no session"
                }
            );
            s.reply(
                522,
                "Data connection refused: TLS session reuse required (resume the control connection's session)",
            )?;
            Ok(None)
        }
        Err(e) => {
            s.reply(
                522,
                &format!("TLS on the data connection failed: {}", one_line(&e)),
            )?;
            Ok(None)
        }
    }
}

fn retr(s: &mut Session, arg: &str) -> io::Result<()> {
    let offset = s.rest.take().unwrap_or(0);
    let Some(v) = s.target(arg, None)? else {
        return Ok(());
    };
    let (file, st) = match s.shared.store.open_read(&v) {
        Ok(x) => x,
        Err(e) => return s.store_error("RETR", &e),
    };
    let len = st.len();
    if offset > len {
        return s.reply(
            554,
            &format!("Restart offset {offset} beyond file size {len}"),
        );
    }
    let Some(data) = open_data(s)? else {
        return Ok(());
    };
    s.reply(
        150,
        &format!(
            "Opening BINARY mode data connection for {} ({} bytes)",
            v.display(),
            len - offset
        ),
    )?;
    let Some(mut data) = secure_data(s, data, true)? else {
        return Ok(());
    };
    let t0 = Instant::now();
    let res = match &mut data {
        Stream::Plain(tcp) => {
            let _ = tcp.set_write_timeout(Some(POLL));
            data::send_file(
                tcp,
                &file,
                offset,
                len - offset,
                &s.shared.stop,
                s.shared.cfg.data_timeout,
            )
        }
        // sendfile cannot encrypt: a buffered copy. A TLS write that times
        // out cannot be retried, so its timeout is the stall limit.
        tls_data => {
            let _ = tls_data
                .tcp()
                .set_write_timeout(Some(s.shared.cfg.data_timeout));
            data::send_buffered(tls_data, &file, offset, len - offset, &s.shared.stop)
                .and_then(|n| tls_data.finish().map(|_| n))
        }
    };
    drop(data);
    let secs = t0.elapsed().as_secs_f64();
    if s.reader.take_abort() {
        log::info!("session {}: RETR {} aborted by client", s.id, v.display());
        s.reply(426, "Transfer aborted")?;
        return s.reply(226, "ABOR successful");
    }
    match res {
        Ok(n) => {
            log::info!(
                "session {}: RETR {} offset={offset} bytes={n} {:.1} MB/s ok",
                s.id,
                v.display(),
                n as f64 / 1e6 / secs.max(1e-6)
            );
            s.reply(226, &format!("Transfer complete, {n} bytes"))
        }
        Err(e) => {
            log::warn!("session {}: RETR {} failed: {e}", s.id, v.display());
            s.reply(426, &format!("Transfer aborted: {}", one_line(&e)))
        }
    }
}

fn receive(s: &mut Session, data: &mut Stream, up: &mut Upload) -> Outcome {
    let _ = data.tcp().set_read_timeout(Some(POLL));
    let mut buf = vec![0u8; XFER_BUF];
    let mut last = Instant::now();
    loop {
        match data.read(&mut buf) {
            Ok(0) => return Outcome::Clean,
            Ok(n) => {
                if let Err(e) = up.write(&buf[..n]) {
                    return match e.kind {
                        ErrorKind::NoSpace => Outcome::DiskFull,
                        _ => Outcome::LocalError(e.msg),
                    };
                }
                last = Instant::now();
                if s.shared.stop.load(Ordering::Relaxed) {
                    return Outcome::Shutdown;
                }
                if up.taken_over() {
                    return Outcome::TakenOver;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut =>
            {
                if s.shared.stop.load(Ordering::SeqCst) {
                    return Outcome::Shutdown;
                }
                if s.reader.take_abort() {
                    return Outcome::Aborted;
                }
                if up.taken_over() {
                    return Outcome::TakenOver;
                }
                if last.elapsed() > s.shared.cfg.data_timeout {
                    return Outcome::Stalled;
                }
            }
            Err(e) => return Outcome::Broken(one_line(&e)),
        }
    }
}

fn store(s: &mut Session, arg: &str, append: bool) -> io::Result<()> {
    let verb = if append { "APPE" } else { "STOR" };
    let rest = s.rest.take();
    let Some(v) = s.target(arg, Some((553, "Not a file name")))? else {
        return Ok(());
    };
    let rel = v.rel();
    if s.anonymous {
        return s.reply(550, "Anonymous sessions are read-only");
    }
    let store = s.shared.store.clone();

    // The same-name prompt: only after KEY, only once, for a partial or for
    // a non-empty file without a key (a plain client's upload, perhaps cut:
    // the KEY client can check its prefix by XCRC and resume).
    if !append && s.key.is_some() && s.prompted.as_deref() != Some(rel.as_str()) {
        match store.stat(&v) {
            Ok(st)
                if st.is_file()
                    && (st.meta.is_some_and(|m| m.state == KeyState::Partial)
                        || (!st.is_empty() && st.meta.is_none_or(|m| m.key.is_none()))) =>
            {
                log::info!(
                    "session {}: same-name prompt for {} ({} bytes)",
                    s.id,
                    v.display(),
                    st.len()
                );
                s.prompted = Some(rel.clone());
                s.last_prompt = Some(rel);
                return s.reply_raw(&key::format_same_name_prompt(st.len()));
            }
            Ok(st) if !st.is_file() => return s.reply(550, "Not a regular file"),
            Ok(_) => {}
            Err(e) if e.kind == ErrorKind::NotFound => {}
            Err(e) => return s.store_error(verb, &e),
        }
    }

    let mode = Mode {
        start: match (append, rest) {
            (true, _) => Start::Append,
            (false, Some(n)) => Start::At(n),
            (false, None) => Start::Replace,
        },
        key: s.key,
        owner: s.user.clone().unwrap_or_default(),
        claim: None,
    };
    let mut up = match store.begin_upload(&v, mode) {
        Ok(u) => u,
        Err(e) if e.kind == ErrorKind::Conflict => return s.reply(554, &e.msg),
        Err(e) if e.kind == ErrorKind::Busy => {
            return s.reply(450, "File busy: another upload of it is in progress")
        }
        Err(e) => return s.store_error(verb, &e),
    };
    let offset = up.offset();
    let Some(data) = open_data(s)? else {
        up.abandon();
        return Ok(());
    };
    // The transfer starts: it uses up the session's key and any prompt.
    s.key = None;
    s.prompted = None;
    if let Err(e) = s.reply(
        150,
        &format!("Ok to send data for {} at offset {offset}", v.display()),
    ) {
        up.abandon();
        return Err(e);
    }
    let mut data = match secure_data(s, data, false) {
        Ok(Some(d)) => d,
        Ok(None) => {
            up.abandon();
            return Ok(());
        }
        Err(e) => {
            up.abandon();
            return Err(e);
        }
    };

    let t0 = Instant::now();
    let mut outcome = receive(s, &mut data, &mut up);
    if outcome == Outcome::Clean {
        // TLS clients wait for the server's close_notify in turn.
        let _ = data.finish();
    }
    drop(data);
    if outcome != Outcome::Aborted && s.reader.take_abort() {
        outcome = Outcome::Aborted;
    }
    let got = up.len() - offset;
    let bound_key = up.key();
    let done = up.finish(outcome == Outcome::Clean);
    let secs = t0.elapsed().as_secs_f64();
    let (state, len) = match &done {
        Ok(d) => (d.state.as_str(), d.len),
        Err(_) => ("unrecorded", offset + got),
    };
    log::info!(
        "session {}: {verb} {} offset={offset} bytes={got} {:.1} MB/s {:?} key={} state={state}",
        s.id,
        v.display(),
        got as f64 / 1e6 / secs.max(1e-6),
        outcome,
        bound_key.map(|k| k.to_string()).unwrap_or("none".into()),
    );
    // The lock is released (the upload is finished) before the reply, so a
    // client that reads 226 and at once writes the file again is not busy.
    let done = match done {
        Ok(d) => d,
        Err(e) => {
            log::error!("session {}: {verb} {}: {e}", s.id, v.display());
            if outcome == Outcome::Aborted {
                s.reply(426, "Transfer aborted")?;
            }
            let code = if e.kind == ErrorKind::NoSpace {
                452
            } else {
                451
            };
            return s.reply(
                code,
                &format!(
                    "{len} bytes received but their state could not be recorded: {}",
                    e.msg
                ),
            );
        }
    };
    let complete = done.state == KeyState::Complete;
    match outcome {
        Outcome::Clean => {
            let note = match bound_key {
                Some(_) if complete => "; key matches, file complete",
                Some(_) => "; CRC differs from key, file kept as partial",
                None => "",
            };
            s.reply(226, &format!("Transfer complete, {got} bytes{note}"))
        }
        Outcome::Broken(e) => s.reply(
            426,
            &format!("Data connection broke ({e}); {len} bytes kept as partial"),
        ),
        Outcome::Stalled => s.reply(426, &format!("Data connection stalled; {len} bytes kept")),
        Outcome::TakenOver => s.reply(
            426,
            &format!("A newer upload of this file with the same key took over; {len} bytes kept"),
        ),
        Outcome::Aborted => {
            s.reply(
                426,
                &format!("Transfer aborted; {len} bytes kept ({state})"),
            )?;
            s.reply(226, "ABOR successful")
        }
        Outcome::Shutdown => s.reply(
            426,
            &format!("Server shutting down; {len} bytes kept as partial"),
        ),
        Outcome::DiskFull => s.reply(
            452,
            &format!("Insufficient storage space; {len} bytes kept as partial"),
        ),
        Outcome::LocalError(e) => s.reply(451, &format!("Local error: {e}; {len} bytes kept")),
    }
}
