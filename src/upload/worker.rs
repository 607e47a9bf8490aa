//! One upload worker: its own connection, a loop over queued jobs, and per
//! job: what the server holds ([`Conn::probe`]), the resume decision,
//! the send from its offset ([`Conn::send_from`]), then verification
//! ([`Conn::verify`]); nothing here knows the protocol. Faults are retried forever with capped, jittered backoff;
//! permanent errors fail the job (its spooled copy is kept).
//!
//! Without a bandwidth cap the bytes go from the spool file to the data
//! socket by `sendfile(2)` in pieces sized to ~200 ms of measured throughput
//! (64 KiB to 4 MiB, see [`crate::transport::ChunkSizer`]), each call also cut off after
//! [`SENDFILE_BUDGET`]; abort and progress are checked between pieces, so an
//! rm, mv or shutdown waits at most about 250 ms for the worker even on a
//! slow uplink. With `--bwlimit`, or where sendfile is refused, through one
//! buffer no larger than what is left to send.
//!
//! A whole-file CRC mismatch after an upload (or, against a server with no
//! CRC command, every upload) makes the worker re-read the spooled copy: if
//! its CRC no longer matches its record (data lost in a power cut after the
//! record was written), no retry can help, and the job fails with the spool
//! kept. If it is intact, the job is retried; a second full upload in a
//! row that does not verify either (or a server that twice has no file
//! right after it confirmed the transfer, or twice refuses the check)
//! fails the job too ([`Strikes`]). A checksum method the server lists but
//! refuses is not a failure: the connection falls back to the next one, or
//! to the size only (see [`Conn::prefix_crc`]), and the uploader
//! remembers it ([`super::checksums`]).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::backoff::Backoff;
use super::queue::{Picked, Shared};
use super::resume::{self, Decision, Local, PrefixCheck, Remote};
use super::verify;
use crate::key::Key;
use crate::transport::{Conn, Holding, RemoteError, Upload, Verified, VerifyError};

/// How an attempt ended, short of success.
pub(crate) enum Fail {
    /// Cancelled, replaced, renamed or shutting down.
    Aborted,
    /// Retry after a backoff (cut connection, timeout, a transient
    /// refusal, bad verify).
    Transient(String),
    /// A retry cannot help (a name or permission refused, a failed login,
    /// spool data gone).
    Permanent(String),
    /// The server confirmed the transfer but it did not verify: retried, and
    /// made permanent by [`Strikes`] when it happens twice in a row.
    Unverified(Unverified, String),
    /// A resumed upload did not verify while the spooled copy is intact:
    /// the server's bytes before the offset are not ours (damaged where no
    /// prefix checksum could tell, as over HTTP or with the checksum
    /// refused). Retried from zero, not resumed onto them again.
    BadPartial(String),
}

/// How a confirmed upload failed to verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unverified {
    /// A full upload (from byte 0) whose server size, key or CRC differs
    /// from ours, with the spooled copy re-read and intact.
    Mismatch,
    /// The server has no file right after it confirmed the transfer.
    Gone,
    /// The server refused the check itself (the stat or size query).
    Refused,
}

/// The verification failures of one job, across its attempts. One
/// mismatch may be bytes damaged on the way; the same failure again on the
/// next confirmed upload means a server that will never agree (say, one
/// whose checksum is another CRC variant, or that moves files away on
/// arrival): re-sending the whole file every backoff, forever, would only
/// burn the uplink. Other failures in between (a cut connection) do not
/// break the run: they are not confirmed uploads.
#[derive(Default)]
pub(crate) struct Strikes {
    last: Option<Unverified>,
}

impl Strikes {
    /// The failure this attempt's `kind` of verification failure counts as.
    pub fn judge(&mut self, kind: Unverified, msg: String) -> Fail {
        if self.last.replace(kind) != Some(kind) {
            return Fail::Transient(msg);
        }
        Fail::Permanent(match kind {
            Unverified::Mismatch => format!(
                "{msg}; twice in a row with the spooled copy intact (does the server \
                 compute another CRC?); kept in the spool"
            ),
            Unverified::Gone | Unverified::Refused => format!(
                "{msg}; twice in a row right after the server confirmed the upload; \
                 kept in the spool"
            ),
        })
    }
}

impl From<RemoteError> for Fail {
    fn from(e: RemoteError) -> Self {
        if e.is_permanent() {
            Fail::Permanent(e.to_string())
        } else {
            Fail::Transient(e.to_string())
        }
    }
}

impl From<VerifyError> for Fail {
    fn from(e: VerifyError) -> Self {
        match e {
            VerifyError::Mismatch(m) | VerifyError::CrcMismatch(m) | VerifyError::Gone(m) => {
                Fail::Transient(m)
            }
            // A 5xx during verification is not a reason to give up on the job.
            VerifyError::Remote(e) => Fail::Transient(e.to_string()),
        }
    }
}

/// A reused connection idle longer than this is checked with NOOP first.
const IDLE_CHECK: Duration = Duration::from_secs(5);

/// The longest one `sendfile` call may take: an abort (rm, mv, shutdown)
/// waits at most about this long for the worker to notice it.
const SENDFILE_BUDGET: Duration = Duration::from_millis(250);
/// An upload that takes no byte for this long is dropped and the
/// upload retried (at most `io_timeout`). On a live link, however slow, the
/// socket buffer drains steadily; 15 s of nothing is a dead path, and each
/// second waited here is a second added to the recovery after an outage.
const STALL: Duration = Duration::from_secs(15);
/// Counters of one uploader's workers, beyond what the queue keeps.
#[derive(Default)]
pub(crate) struct WireStats {
    /// Payload bytes sent by `sendfile` (a subset of `Shared::bytes_sent`).
    pub sendfile_bytes: AtomicU64,
}

pub(crate) fn run(shared: Arc<Shared>, stats: Arc<WireStats>) {
    let mut conn: Option<(Conn, Instant)> = None;
    while let Some(p) = shared.pick() {
        let mut backoff = Backoff::new(shared.tuning.backoff_initial, shared.tuning.backoff_max);
        let mut strikes = Strikes::default();
        // The server's partial proved bad: the next attempt starts from 0.
        let mut restart = false;
        loop {
            if p.abort.load(Ordering::SeqCst) {
                conn = None;
                shared.aborted(&p);
                break;
            }
            let mut started = false;
            shared.attempt_started(p.rec.id);
            let t_attempt = Instant::now();
            let res = attempt(&shared, &stats, &mut conn, &p, &mut started, &mut restart);
            if let Some((s, _)) = conn.as_mut() {
                shared.checksums.learn(s);
            }
            let res = res.map_err(|f| match f {
                Fail::Unverified(kind, msg) => strikes.judge(kind, msg),
                Fail::BadPartial(msg) => {
                    restart = true;
                    Fail::Transient(format!(
                        "{msg}; the server's partial is not ours: starting over"
                    ))
                }
                f => f,
            });
            match res {
                Ok(()) => {
                    log::info!("uploaded and verified {}", p.rec.remote_path);
                    // The mtime/mode the program set, after the bytes are
                    // safe; again if the fs changed them meanwhile.
                    loop {
                        let (wanted, gen) = shared.wanted(p.rec.id);
                        if !wanted.is_empty() {
                            apply_wanted(&shared, &mut conn, &p.rec.remote_path, wanted);
                        }
                        if shared.complete(&p, gen) {
                            break;
                        }
                    }
                    break;
                }
                Err(Fail::Aborted) => {
                    // The connection may be mid-transfer: start afresh.
                    conn = None;
                    drop_renamed_partial(&shared, &p, started);
                    shared.aborted(&p);
                    break;
                }
                Err(Fail::Permanent(msg)) => {
                    log::error!("upload of {} failed permanently: {msg}", p.rec.remote_path);
                    conn = None;
                    shared.failed(&p, &msg);
                    break;
                }
                Err(Fail::Transient(msg) | Fail::Unverified(_, msg) | Fail::BadPartial(msg)) => {
                    log::warn!("upload of {}: {msg}; retrying", p.rec.remote_path);
                    conn = None;
                    let delay = retry_delay(backoff.next_delay(), t_attempt.elapsed());
                    shared.set_error(p.rec.id, &msg, delay);
                    if shared.sleep_unless_aborted(delay, &p.abort) {
                        shared.aborted(&p);
                        break;
                    }
                }
            }
        }
    }
    if let Some((s, _)) = conn {
        s.quit();
    }
}

/// The wait before the next attempt. The backoff counts from the failed
/// attempt's start: after an attempt that itself took seconds (a connect
/// timing out on a dead link, an upload declared stalled) the next starts
/// at once, so a link that comes back is found by that attempt's SYNs, not
/// after a backoff on top of the timeout. A tenth of the (jittered) backoff
/// is always kept, so clients cut at the same moment do not return in step.
fn retry_delay(backoff: Duration, took: Duration) -> Duration {
    backoff.saturating_sub(took).max(backoff / 10)
}

/// Sets the mtime and mode the program gave the file,
/// on the verified server copy. Best effort: the bytes are safe whatever
/// happens here; a server without the command keeps its own time or mode
/// (see the README, "what is kept"), a refusal or a lost connection is
/// logged (one reconnect is tried).
fn apply_wanted(
    shared: &Shared,
    conn: &mut Option<(Conn, Instant)>,
    path: &str,
    wanted: crate::spool::journal::Wanted,
) {
    for attempt in 0..2 {
        let s = match session(shared, conn) {
            Ok(s) => s,
            Err(_) => continue,
        };
        let r = set_attrs(s, path, wanted);
        match r {
            Err(RemoteError::Io(e)) if attempt == 0 => {
                log::info!("{path}: connection lost setting its time/mode ({e}); reconnecting");
                *conn = None;
            }
            Err(e) => {
                log::warn!("{path}: uploaded, but its time/mode was not kept: {e}");
                return;
            }
            Ok(()) => return,
        }
    }
}

fn set_attrs(
    s: &mut Conn,
    path: &str,
    wanted: crate::spool::journal::Wanted,
) -> Result<(), RemoteError> {
    use crate::transport::Applied;
    if let Some(m) = wanted.mode {
        if s.chmod(path, m)? == Applied::Unsupported {
            log::debug!("{path}: the server keeps no modes; mode {m:o} not kept");
        }
    }
    if let Some(t) = wanted.mtime {
        if s.set_mtime(path, t)? == Applied::Unsupported {
            log::debug!("{path}: the server cannot set times; its mtime is the upload time");
        }
    }
    Ok(())
}

/// After a rename aborted an upload, the partial under the old name is ours
/// and no file in the mount: remove it (best effort).
fn drop_renamed_partial(shared: &Shared, p: &Picked, started: bool) {
    if !started || shared.is_shutdown() {
        return;
    }
    match shared.current_path(p.rec.id) {
        Some(now) if now != p.rec.remote_path => {
            let t = shared.tuning.io_timeout;
            if let Ok(mut s) = Conn::connect(&shared.endpoint, t) {
                let _ = s.delete(&p.rec.remote_path);
                s.quit();
            }
        }
        _ => {}
    }
}

fn session<'a>(
    shared: &Shared,
    conn: &'a mut Option<(Conn, Instant)>,
) -> Result<&'a mut Conn, Fail> {
    if let Some((s, last)) = conn.as_mut() {
        if last.elapsed() > IDLE_CHECK && s.noop().is_err() {
            *conn = None;
        }
    }
    if conn.is_none() {
        let mut s = Conn::connect(&shared.endpoint, shared.tuning.io_timeout)?;
        s.set_slow_timeout(shared.tuning.slow_reply_timeout);
        *conn = Some((s, Instant::now()));
    }
    match conn.as_mut() {
        Some((s, last)) => {
            *last = Instant::now();
            Ok(s)
        }
        None => Err(Fail::Transient("no connection".into())),
    }
}

fn aborted(p: &Picked) -> Result<(), Fail> {
    if p.abort.load(Ordering::SeqCst) {
        Err(Fail::Aborted)
    } else {
        Ok(())
    }
}

fn open_spool(shared: &Shared, p: &Picked) -> Result<File, Fail> {
    let path = shared.journal.data_path(p.rec.id);
    let f = File::open(&path)
        .map_err(|e| Fail::Permanent(format!("spooled data {} unreadable: {e}", path.display())))?;
    let len = f
        .metadata()
        .map_err(|e| Fail::Permanent(format!("spooled data unreadable: {e}")))?
        .len();
    if len != p.rec.size {
        return Err(Fail::Permanent(format!(
            "spooled data is {len} bytes, its record says {}",
            p.rec.size
        )));
    }
    Ok(f)
}

/// The server's CRC of `[0, n)` next to ours, when it offers one.
fn prefix_check(
    s: &mut Conn,
    file: &mut File,
    path: &str,
    n: u64,
    size: u64,
) -> Result<Option<PrefixCheck>, Fail> {
    if n == 0 || n > size {
        return Ok(None);
    }
    let server = match s.prefix_crc(path, Some(n)) {
        Ok(c) => c,
        // A cut connection is retried; a refused or garbled checksum only
        // means no prefix evidence (the decision then restarts when in doubt).
        Err(e @ RemoteError::Io(_)) => return Err(e.into()),
        Err(e) => {
            log::warn!("{path}: no prefix checksum ({e})");
            None
        }
    };
    match server {
        None => Ok(None),
        Some(server) => {
            let local = verify::local_prefix_crc(file, n)
                .map_err(|e| Fail::Permanent(format!("spooled data unreadable: {e}")))?;
            Ok(Some(PrefixCheck { server, local }))
        }
    }
}

/// One try at uploading `p`: decide the offset, stream, verify.
fn attempt(
    shared: &Shared,
    stats: &WireStats,
    conn: &mut Option<(Conn, Instant)>,
    p: &Picked,
    started: &mut bool,
    restart: &mut bool,
) -> Result<(), Fail> {
    let mut file = open_spool(shared, p)?;
    let s = session(shared, conn)?;
    shared.checksums.apply(s);
    aborted(p)?;
    let path = p.rec.remote_path.as_str();
    let size = p.rec.size;
    let local = Local {
        size,
        crc: Key(p.rec.crc),
    };
    if s.probe_may_create() {
        *started = true;
    }
    let (remote, mut open_upload) = match s.probe(path, local.crc, size)? {
        Holding::Nothing { open } => (Remote::Absent, open),
        Holding::Partial { size: n, key } => {
            let prefix = prefix_check(s, &mut file, path, n, size)?;
            let remote = Remote::Present {
                size: n,
                key,
                prefix,
            };
            (remote, None)
        }
    };
    let offset = match open_upload {
        Some(_) => 0,
        None => {
            let mut d = resume::decide(local, remote, shared.policy);
            if *restart && d.offset() > 0 {
                d = Decision::Restart;
            }
            log::info!("{path}: server has {remote:?}: {d:?}");
            if d == Decision::Restart && matches!(remote, Remote::Present { .. }) {
                s.replace(path, local.crc)?;
            }
            d.offset()
        }
    };
    aborted(p)?;

    let up = match open_upload.take() {
        Some(up) => up,
        None => {
            *started = true;
            s.send_from(path, offset, size - offset)?
        }
    };
    *restart = false;
    stream(shared, stats, s, p, &mut file, up, offset)?;
    aborted(p)?;
    shared.verifying(p.rec.id);
    match s.verify(path, size, p.rec.crc) {
        Ok(Verified::Crc) => {}
        // No server CRC: our own CRC of what we sent is the only check
        // left that the spooled bytes are the ones the key was taken of.
        Ok(Verified::SizeOnly) => match check_spool(&mut file, p, String::new()) {
            Fail::Transient(_) => {}
            f => return Err(f),
        },
        Err(VerifyError::CrcMismatch(msg) | VerifyError::Mismatch(msg)) => {
            return Err(match check_spool(&mut file, p, msg) {
                Fail::Transient(msg) if offset == 0 => Fail::Unverified(Unverified::Mismatch, msg),
                Fail::Transient(msg) => Fail::BadPartial(msg),
                f => f,
            })
        }
        Err(VerifyError::Gone(msg)) => return Err(Fail::Unverified(Unverified::Gone, msg)),
        // A refused check right after the server confirmed the transfer (a
        // checksum refusal falls back inside `verify`; this is the stat or
        // size query): counted, so the whole file is not sent again forever.
        Err(VerifyError::Remote(e)) if e.is_refusal() => {
            return Err(Fail::Unverified(Unverified::Refused, e.to_string()))
        }
        Err(e) => return Err(e.into()),
    }
    aborted(p)
}

/// After the server's CRC of the whole file differed from our key (or the
/// server has no CRC to ask): is the spooled copy still what its record
/// says? If not (its data did not survive a crash that its record did),
/// retrying would only send the damage again. `Transient(msg)` when it is.
fn check_spool(file: &mut File, p: &Picked, msg: String) -> Fail {
    match verify::spool_differs(file, p.rec.size, p.rec.crc) {
        Ok(Some(d)) => Fail::Permanent(format!("spooled data damaged: {d}; kept in the spool")),
        Ok(None) => Fail::Transient(msg),
        Err(e) => Fail::Permanent(format!("spooled data unreadable: {e}")),
    }
}

/// Sends `[offset, size)` of the spooled file: by sendfile when there is
/// no bandwidth cap, else (or when sendfile is refused) through a buffer
/// under the shared cap; checks for abort at every chunk.
fn stream(
    shared: &Shared,
    stats: &WireStats,
    s: &mut Conn,
    p: &Picked,
    file: &mut File,
    mut up: Upload,
    offset: u64,
) -> Result<(), Fail> {
    match send_all(shared, stats, s, p, file, &mut up, offset) {
        Ok(()) => {
            s.finish_send(up)?;
            Ok(())
        }
        Err(f) => {
            // Aborted or failed mid-transfer: the session is dropped anyway;
            // do not let closing the transfer wait for the server.
            s.abandon_send(up);
            Err(f)
        }
    }
}

/// Sends `[offset, size)` into `up`; see [`stream`].
fn send_all(
    shared: &Shared,
    stats: &WireStats,
    s: &mut Conn,
    p: &Picked,
    file: &mut File,
    up: &mut Upload,
    offset: u64,
) -> Result<(), Fail> {
    let size = p.rec.size;
    let mut pos = offset;
    shared.progress(p.rec.id, pos);
    if shared.limiter.is_none() {
        let mut chunk = crate::transport::ChunkSizer::new(shared.tuning.chunk_size);
        let mut last_progress = Instant::now();
        while pos < size {
            aborted(p)?;
            let want = (size - pos).min(chunk.bytes() as u64) as usize;
            let before = pos;
            let t0 = Instant::now();
            match up.send_file(file, &mut pos, want, SENDFILE_BUDGET) {
                Ok(Some(sent)) => {
                    let n = sent.bytes as u64;
                    shared.bytes_sent.fetch_add(n, Ordering::Relaxed);
                    stats.sendfile_bytes.fetch_add(n, Ordering::Relaxed);
                    chunk.observe(sent.bytes, t0.elapsed());
                    if n > 0 {
                        last_progress = Instant::now();
                        shared.progress(p.rec.id, pos);
                    } else if last_progress.elapsed() >= shared.tuning.io_timeout.min(STALL) {
                        return Err(Fail::Transient("upload stalled".into()));
                    }
                    if sent.eof {
                        break; // the spool file ended early: checked below
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    // Bytes of a partly done call went out too.
                    shared.bytes_sent.fetch_add(pos - before, Ordering::Relaxed);
                    stats
                        .sendfile_bytes
                        .fetch_add(pos - before, Ordering::Relaxed);
                    return Err(send_failed(s, up, e));
                }
            }
        }
    }
    if pos < size {
        pos = copy_buffered(shared, s, p, file, up, pos)?;
    }
    if pos != size {
        return Err(Fail::Permanent(format!(
            "spooled data ended at {pos}, expected {size}"
        )));
    }
    Ok(())
}

/// A send into `up` failed with `e`: the server's refusal if it gave one
/// (a locked file, a full disk), else the network error.
fn send_failed(s: &mut Conn, up: &mut Upload, e: std::io::Error) -> Fail {
    match s.refusal(up) {
        Some(r) => r.into(),
        None => Fail::Transient(format!("upload: {e}")),
    }
}

/// Copies `[pos, size)` through one buffer (at most `chunk_size`, at most
/// what is left, so a 4 KiB file costs a 4 KiB buffer) under the shared
/// bandwidth cap. Returns where it stopped.
fn copy_buffered(
    shared: &Shared,
    s: &mut Conn,
    p: &Picked,
    file: &mut File,
    up: &mut Upload,
    mut pos: u64,
) -> Result<u64, Fail> {
    let io = |e: std::io::Error| Fail::Transient(format!("spool read: {e}"));
    file.seek(SeekFrom::Start(pos)).map_err(io)?;
    let chunk = match &shared.limiter {
        Some(l) => l.chunk_hint(shared.tuning.chunk_size),
        None => shared.tuning.chunk_size,
    };
    let left = p.rec.size.saturating_sub(pos);
    let len = (chunk.max(4096) as u64).min(left) as usize;
    if len == 0 {
        return Ok(pos);
    }
    let mut buf = vec![0u8; len];
    let mut reader = file.take(left);
    loop {
        aborted(p)?;
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io(e)),
        };
        if let Some(l) = &shared.limiter {
            l.acquire(n);
        }
        if let Err(e) = up.write_all(&buf[..n]) {
            return Err(send_failed(s, up, e));
        }
        pos += n as u64;
        shared.bytes_sent.fetch_add(n as u64, Ordering::Relaxed);
        shared.progress(p.rec.id, pos);
    }
    Ok(pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_counts_from_the_attempts_start() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        // A quick failure (refused at once) waits the whole backoff.
        assert_eq!(retry_delay(s(4), ms(10)), ms(3990));
        // A connect that timed out after 3 s: only the rest.
        assert_eq!(retry_delay(s(4), s(3)), s(1));
        // Longer than the backoff (a stall): a tenth of it.
        assert_eq!(retry_delay(s(4), s(15)), ms(400));
        assert_eq!(retry_delay(Duration::ZERO, s(1)), Duration::ZERO);
    }

    #[test]
    fn the_same_verification_failure_twice_is_permanent() {
        let kind = |f: &Fail| match f {
            Fail::Transient(_) => "transient",
            Fail::Permanent(_) => "permanent",
            _ => "other",
        };
        let mut s = Strikes::default();
        assert_eq!(
            kind(&s.judge(Unverified::Mismatch, "m".into())),
            "transient"
        );
        // Another kind in between restarts the run.
        assert_eq!(kind(&s.judge(Unverified::Gone, "g".into())), "transient");
        assert_eq!(
            kind(&s.judge(Unverified::Mismatch, "m".into())),
            "transient"
        );
        match s.judge(Unverified::Mismatch, "server CRC 1 after upload".into()) {
            Fail::Permanent(m) => {
                assert!(m.starts_with("server CRC 1 after upload; twice"), "{m}");
                assert!(!m.contains('\n'));
            }
            _ => panic!("second mismatch in a row must be permanent"),
        }
        let mut s = Strikes::default();
        assert_eq!(kind(&s.judge(Unverified::Gone, "g".into())), "transient");
        assert_eq!(kind(&s.judge(Unverified::Gone, "g".into())), "permanent");
        // A check the server refuses after it confirmed the transfer.
        let mut s = Strikes::default();
        assert_eq!(kind(&s.judge(Unverified::Refused, "r".into())), "transient");
        assert_eq!(kind(&s.judge(Unverified::Refused, "r".into())), "permanent");
    }
}
