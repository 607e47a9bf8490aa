//! Data transfer commands: PASV EPSV REST RETR STOR APPE ABOR (PORT/EPRT
//! are in `cmd_active`).
//!
//! An upload records the file as partial (with its bound key and the
//! prefix CRC) before the first byte, computes the CRC while receiving, and
//! when the data connection closes records complete-or-partial by comparing
//! CRC and key, durably, before the 226/426 reply. The control connection
//! is not read during a transfer, so a client whose control connection dies
//! still has its data connection drained to the end and every byte kept.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::{IpAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::cmd_key::crc_range;
use super::data::{self, XFER_BUF};
use super::session::{one_line, Session, POLL};
use super::store::{FileMeta, KeyState};
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

fn retr(s: &mut Session, arg: &str) -> io::Result<()> {
    let offset = s.rest.take().unwrap_or(0);
    let Some((v, real)) = s.target(arg, true, None)? else {
        return Ok(());
    };
    let file = match File::open(&real) {
        Ok(f) => f,
        Err(e) => return s.io_error("RETR", &e),
    };
    let len = match file.metadata() {
        Ok(md) if md.is_file() => md.len(),
        Ok(_) => return s.reply(550, "Not a regular file"),
        Err(e) => return s.io_error("RETR", &e),
    };
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
    let _ = data.set_write_timeout(Some(POLL));
    let t0 = Instant::now();
    let res = data::send_file(
        &data,
        &file,
        offset,
        len - offset,
        &s.shared.stop,
        s.shared.cfg.data_timeout,
    );
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

fn is_disk_full(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

fn receive(
    s: &mut Session,
    data: &mut TcpStream,
    file: &mut File,
    hasher: &mut crc32fast::Hasher,
) -> (u64, Outcome) {
    let _ = data.set_read_timeout(Some(POLL));
    let mut buf = vec![0u8; XFER_BUF];
    let mut got = 0u64;
    let mut last = Instant::now();
    loop {
        match data.read(&mut buf) {
            Ok(0) => return (got, Outcome::Clean),
            Ok(n) => {
                if let Err(e) = file.write_all(&buf[..n]) {
                    let o = if is_disk_full(&e) {
                        Outcome::DiskFull
                    } else {
                        Outcome::LocalError(one_line(&e))
                    };
                    return (got, o);
                }
                hasher.update(&buf[..n]);
                got += n as u64;
                last = Instant::now();
                if s.shared.stop.load(Ordering::Relaxed) {
                    return (got, Outcome::Shutdown);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut =>
            {
                if s.shared.stop.load(Ordering::SeqCst) {
                    return (got, Outcome::Shutdown);
                }
                if s.reader.take_abort() {
                    return (got, Outcome::Aborted);
                }
                if last.elapsed() > s.shared.cfg.data_timeout {
                    return (got, Outcome::Stalled);
                }
            }
            Err(e) => return (got, Outcome::Broken(one_line(&e))),
        }
    }
}

fn store(s: &mut Session, arg: &str, append: bool) -> io::Result<()> {
    let verb = if append { "APPE" } else { "STOR" };
    let rest = s.rest.take();
    let Some((v, real)) = s.target(arg, true, Some((553, "Not a file name")))? else {
        return Ok(());
    };
    let rel = v.rel();
    if s.anonymous {
        return s.reply(550, "Anonymous sessions are read-only");
    }
    let shared = s.shared.clone();
    let Some(busy) = shared.claim(&rel) else {
        return s.reply(450, "File busy: another upload of it is in progress");
    };
    let existing = fs::metadata(&real).ok();
    if existing.as_ref().is_some_and(|m| !m.is_file()) {
        return s.reply(550, "Not a regular file");
    }
    let meta = s.shared.store.get(&rel);

    // The same-name prompt: only after KEY, only for a partial, only once.
    if !append && s.key.is_some() && s.prompted.as_deref() != Some(rel.as_str()) {
        if let (Some(md), Some(m)) = (&existing, meta) {
            if m.state == KeyState::Partial {
                log::info!(
                    "session {}: same-name prompt for {} ({} bytes)",
                    s.id,
                    v.display(),
                    md.len()
                );
                s.prompted = Some(rel.clone());
                s.last_prompt = Some(rel);
                return s.reply_raw(&key::format_same_name_prompt(md.len()));
            }
        }
    }

    let cur_len = existing.as_ref().map(|m| m.len()).unwrap_or(0);
    let offset = if append { cur_len } else { rest.unwrap_or(0) };
    if offset > cur_len {
        return s.reply(
            554,
            &format!("Restart offset {offset} beyond file size {cur_len}"),
        );
    }
    let resume = append || rest.is_some();
    let stored_key = if resume {
        meta.and_then(|m| m.key)
    } else {
        None
    };
    let bound_key = s.key.or(stored_key);

    // CRC of the kept prefix: cached if the file is unchanged, else recomputed.
    let mut prefix_crc = 0u32;
    if offset > 0 {
        let cached = match (meta, &existing) {
            (Some(m), Some(md)) if m.len == offset => m.trusted_crc(md),
            _ => None,
        };
        prefix_crc = match cached {
            Some(c) => c,
            None => {
                let r = File::open(&real).and_then(|mut f| crc_range(&mut f, 0, offset));
                match r {
                    Ok(c) => c,
                    Err(e) => return s.io_error(verb, &e),
                }
            }
        };
    }

    let Some(mut data) = open_data(s)? else {
        return Ok(());
    };
    // The transfer starts: it uses up the session's key and any prompt.
    s.key = None;
    s.prompted = None;
    let opened = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(!resume)
        .open(&real)
        .and_then(|mut f| {
            if resume {
                f.set_len(offset)?;
                f.seek(SeekFrom::Start(offset))?;
            }
            Ok(f)
        });
    let mut file = match opened {
        Ok(f) => f,
        Err(e) => return s.io_error(verb, &e),
    };
    let start_meta = FileMeta::stamped(
        bound_key,
        KeyState::Partial,
        prefix_crc,
        offset,
        file.metadata().ok().as_ref(),
    );
    if let Err(e) = s.shared.store.set(&rel, start_meta) {
        log::error!("session {}: recording state of {}: {e}", s.id, v.display());
    }
    s.reply(
        150,
        &format!("Ok to send data for {} at offset {offset}", v.display()),
    )?;

    let t0 = Instant::now();
    let mut hasher = crc32fast::Hasher::new_with_initial_len(prefix_crc, offset);
    let (got, mut outcome) = receive(s, &mut data, &mut file, &mut hasher);
    drop(data);
    if outcome != Outcome::Aborted && s.reader.take_abort() {
        outcome = Outcome::Aborted;
    }
    let len = offset + got;
    // A failed write may have left bytes past what was hashed: cut them.
    if matches!(outcome, Outcome::DiskFull | Outcome::LocalError(_)) {
        let _ = file.set_len(len);
    }
    if s.shared.cfg.fsync_files {
        if let Err(e) = file.sync_data() {
            log::error!("session {}: fsync {}: {e}", s.id, v.display());
        }
    }
    let crc = hasher.finalize();
    let complete = match bound_key {
        Some(k) => k.0 == crc,
        None => outcome == Outcome::Clean,
    };
    let state = if complete {
        KeyState::Complete
    } else {
        KeyState::Partial
    };
    let end_meta = FileMeta::stamped(bound_key, state, crc, len, file.metadata().ok().as_ref());
    drop(file);
    if let Err(e) = s.shared.store.set(&rel, end_meta) {
        log::error!("session {}: recording state of {}: {e}", s.id, v.display());
    }
    let secs = t0.elapsed().as_secs_f64();
    log::info!(
        "session {}: {verb} {} offset={offset} bytes={got} {:.1} MB/s {:?} crc={crc:08X} key={} state={}",
        s.id,
        v.display(),
        got as f64 / 1e6 / secs.max(1e-6),
        outcome,
        bound_key.map(|k| k.to_string()).unwrap_or("none".into()),
        state.as_str()
    );
    // The state is recorded: free the file before the reply, so a client
    // that reads 226 and at once writes the file on another connection
    // does not get 450 busy.
    drop(busy);
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
        Outcome::Aborted => {
            s.reply(
                426,
                &format!("Transfer aborted; {len} bytes kept ({})", state.as_str()),
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
