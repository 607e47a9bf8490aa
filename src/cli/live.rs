//! The daemon's live status file, `<spool>/status`: rewritten atomically
//! (temp file + rename) every second while a mount runs, removed at a clean
//! unmount. `keyfs status` prints it when it is fresh and its daemon is
//! alive, and falls back to the journal otherwise (daemon stopped or
//! killed), so the journal stays the one durable truth.
//!
//! Format: a header `keyfs-live pid=P updated=UNIX_SECS bytes_sent=N`,
//! a `checksum: ...` line once a worker has connected (the method that
//! verifies uploads, and any fallback), then one line per job, already
//! formatted for people.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use keyfs::fs::Core;
use keyfs::spool::journal::JobState;

/// The file name inside the spool.
pub const FILE: &str = "status";
/// How often the daemon rewrites it.
pub const PERIOD: Duration = Duration::from_secs(1);
/// Older than this, the file is stale (daemon hung or killed).
pub const FRESH: Duration = Duration::from_secs(5);

pub fn path(spool: &Path) -> PathBuf {
    spool.join(FILE)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The current status text of a running core.
pub fn render(core: &Core) -> String {
    let up = core.uploader();
    let mut out = format!(
        "keyfs-live pid={} updated={} bytes_sent={}\n",
        std::process::id(),
        now_secs(),
        up.bytes_sent()
    );
    if let Some(note) = up.checksum_note() {
        out.push_str(&note);
        out.push('\n');
    }
    let mut jobs = up.status();
    jobs.sort_by_key(|j| j.record.id);
    for j in jobs {
        let r = &j.record;
        let state = match &r.state {
            JobState::Queued if j.sent > 0 => format!("uploading: {} of {} sent", j.sent, r.size),
            JobState::Queued => "pending".to_string(),
            JobState::Open => {
                "kept: was open for writing when the daemon stopped; not uploaded".into()
            }
            JobState::Failed(why) => format!("failed: {why}"),
        };
        let err = match (&r.state, &j.last_error) {
            (JobState::Queued, Some(e)) => format!("; last error: {e}"),
            _ => String::new(),
        };
        out.push_str(&format!(
            "{:>6} {:>12} 0x{:08X} {}  [{state}{err}]\n",
            r.id, r.size, r.crc, r.remote_path
        ));
    }
    out
}

fn write_atomic(spool: &Path, text: &str) -> std::io::Result<()> {
    let tmp = spool.join(format!("{FILE}.tmp"));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path(spool))
}

/// Starts the writer thread; set the returned flag to stop it (it then
/// removes the file).
pub fn start(spool: PathBuf, core: Arc<Core>) -> std::io::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::Builder::new()
        .name("keyfs-status".into())
        .spawn(move || {
            let mut last = String::new();
            let mut written = SystemTime::UNIX_EPOCH;
            while !flag.load(Ordering::SeqCst) {
                let text = render(&core);
                // The header always changes (time); skip identical bodies
                // unless the freshness mark needs renewing.
                let body = text.split_once('\n').map(|(_, b)| b).unwrap_or("");
                let age = written.elapsed().unwrap_or(Duration::MAX);
                if body != last || age >= PERIOD {
                    if let Err(e) = write_atomic(&spool, &text) {
                        log::debug!("status file: {e}");
                    }
                    last = body.to_string();
                    written = SystemTime::now();
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            let _ = std::fs::remove_file(path(&spool));
        })?;
    Ok(stop)
}

/// The live status text, if the file is fresh and its daemon alive.
pub fn read_fresh(spool: &Path) -> Option<(u32, String)> {
    let text = std::fs::read_to_string(path(spool)).ok()?;
    let header = text.lines().next()?;
    let field = |k: &str| {
        header
            .split_whitespace()
            .find_map(|w| w.strip_prefix(k)?.strip_prefix('='))
            .and_then(|v| v.parse::<u64>().ok())
    };
    let pid = u32::try_from(field("pid")?).ok()?;
    let updated = field("updated")?;
    if now_secs().saturating_sub(updated) > FRESH.as_secs() || !alive(pid) {
        return None;
    }
    Some((pid, text))
}

/// Whether `pid` is a running (not zombie) process.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesized command name.
        Ok(s) => s
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|st| st != "Z" && st != "X"),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_only_with_a_live_pid_and_recent_time() {
        let d = tempfile::tempdir().unwrap();
        assert!(read_fresh(d.path()).is_none());
        let me = std::process::id();
        let ok = format!("keyfs-live pid={me} updated={} bytes_sent=5\n", now_secs());
        write_atomic(d.path(), &ok).unwrap();
        assert_eq!(read_fresh(d.path()).map(|(p, _)| p), Some(me));
        let old = format!(
            "keyfs-live pid={me} updated={} bytes_sent=5\n",
            now_secs() - 60
        );
        write_atomic(d.path(), &old).unwrap();
        assert!(read_fresh(d.path()).is_none());
        // A pid that cannot exist.
        let dead = format!("keyfs-live pid=4194305 updated={}\n", now_secs());
        write_atomic(d.path(), &dead).unwrap();
        assert!(read_fresh(d.path()).is_none());
        write_atomic(d.path(), "garbage").unwrap();
        assert!(read_fresh(d.path()).is_none());
    }
}
