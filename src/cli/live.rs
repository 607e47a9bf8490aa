//! The daemon's live status file, `<spool>/status`: the [`Report`] as JSON,
//! replaced atomically (temp file + rename) whenever it changes, checked
//! every [`TICK`], and at least every [`PERIOD`] as a heartbeat; removed
//! at a clean unmount. `keyfs status` and `keyfs wait` read it while it is
//! fresh and its daemon alive (`keyfs wait` wakes on its rename through
//! inotify), and fall back to the journal otherwise, so the journal stays
//! the one durable truth.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use keyfs::fs::Core;
use keyfs::spool::journal::JobState;
use keyfs::upload::Phase;

use super::report::{Daemon, FileStatus, Report, State, VERSION};

/// The file name inside the spool.
pub const FILE: &str = "status";
/// How often the daemon looks for progress; a job's change of state wakes
/// it at once.
pub const TICK: Duration = Duration::from_millis(200);
/// The shortest time between two passes.
const MIN_GAP: Duration = Duration::from_millis(25);
/// How often the daemon rewrites it even without a change.
pub const PERIOD: Duration = Duration::from_millis(500);
/// Older than this, the file is stale (daemon hung or killed).
pub const FRESH: Duration = Duration::from_secs(5);

pub fn path(spool: &Path) -> PathBuf {
    spool.join(FILE)
}

pub fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Where the daemon is mounted, for the report.
#[derive(Clone, Debug)]
pub struct MountNames {
    pub mountpoint: String,
    pub url: String,
}

/// Upload rates per job, from successive samples (a moving average over
/// about two seconds).
#[derive(Default)]
pub struct Rates {
    seen: HashMap<u64, (Instant, u64, Option<f64>)>,
}

impl Rates {
    fn rate(&mut self, id: u64, sent: u64, now: Instant) -> Option<f64> {
        let e = self.seen.entry(id).or_insert((now, sent, None));
        let dt = now.duration_since(e.0).as_secs_f64();
        if sent < e.1 {
            *e = (now, sent, None);
        } else if dt >= 0.5 {
            let r = (sent - e.1) as f64 / dt;
            let a = (dt / 2.0).min(1.0);
            e.2 = Some(e.2.map_or(r, |old| old + a * (r - old)));
            e.0 = now;
            e.1 = sent;
        }
        e.2
    }
    fn keep(&mut self, ids: &[u64]) {
        self.seen.retain(|id, _| ids.contains(id));
    }
}

/// The current report of a running core.
pub fn render(core: &Core, spool: &Path, names: &MountNames, rates: &mut Rates) -> Report {
    // Writing files first: one sealed in between shows in both (and is
    // then shown once, as the uploader has it), never in neither.
    let writing = core.writing();
    let up = core.uploader();
    let mut jobs = up.status();
    jobs.sort_by_key(|j| j.record.id);
    let now = Instant::now();
    let mut files: Vec<FileStatus> = Vec::with_capacity(jobs.len() + writing.len());
    for j in &jobs {
        let mut f = FileStatus::from_record(&j.record);
        f.tries = j.tries;
        f.bytes_sent = j.sent;
        if j.record.state == JobState::Queued {
            f.state = match j.phase {
                Phase::Queued => State::Queued,
                Phase::Uploading => State::Uploading,
                Phase::Verifying => State::Verifying,
                Phase::Retrying => State::Retrying,
            };
            f.last_error = j.last_error.clone();
            f.retry_in = j.retry_in.map(|d| d.as_secs_f64());
            if f.state == State::Uploading {
                f.rate = rates.rate(j.record.id, j.sent, now);
                f.eta_seconds = f
                    .rate
                    .filter(|r| *r > 1.0)
                    .map(|r| j.record.size.saturating_sub(j.sent) as f64 / r);
            }
        }
        files.push(f);
    }
    let ids: Vec<u64> = jobs.iter().map(|j| j.record.id).collect();
    rates.keep(&ids);
    for (p, size) in writing {
        if files.iter().any(|f| f.path == p) {
            continue;
        }
        files.push(FileStatus {
            path: p,
            state: State::Writing,
            id: None,
            bytes_sent: 0,
            bytes_total: size,
            rate: None,
            eta_seconds: None,
            tries: 0,
            retry_in: None,
            last_error: None,
            crc: None,
        });
    }
    Report {
        checksum: up
            .checksum_note()
            .map(|n| n.trim_start_matches("checksum: ").to_string()),
        version: VERSION,
        spool: spool.display().to_string(),
        mountpoint: Some(names.mountpoint.clone()),
        url: Some(names.url.clone()),
        daemon: Some(Daemon {
            pid: std::process::id(),
            updated: now_secs(),
        }),
        bytes_sent: up.bytes_sent(),
        files,
    }
}

fn write_atomic(spool: &Path, text: &str) -> std::io::Result<()> {
    let tmp = spool.join(format!("{FILE}.tmp"));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path(spool))
}

/// The live writer; [`Live::stop`] ends it and removes the file.
pub struct Live {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Live {
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts the writer thread.
pub fn start(spool: PathBuf, core: Arc<Core>, names: MountNames) -> std::io::Result<Live> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name("keyfs-status".into())
        .spawn(move || {
            let mut rates = Rates::default();
            let mut last: Option<Report> = None;
            let mut written = Instant::now() - PERIOD;
            while !flag.load(Ordering::SeqCst) {
                let mut r = render(&core, &spool, &names, &mut rates);
                let same = last.as_ref().is_some_and(|l| {
                    let mut l = l.clone();
                    l.daemon.clone_from(&r.daemon);
                    l == r
                });
                if !same || written.elapsed() >= PERIOD {
                    match serde_json::to_string_pretty(&r) {
                        Ok(text) => {
                            if let Err(e) = write_atomic(&spool, &text) {
                                log::debug!("status file: {e}");
                            }
                        }
                        Err(e) => log::debug!("status file: {e}"),
                    }
                    written = Instant::now();
                }
                r.daemon = None;
                last = Some(r);
                // Woken by a job's change of state (`keyfs wait` returns
                // as soon as an upload is verified), else each tick for
                // progress; at most one pass per MIN_GAP, however fast
                // small files complete.
                let t = Instant::now();
                core.uploader().wait_change(TICK);
                if let Some(rest) = MIN_GAP.checked_sub(t.elapsed()) {
                    std::thread::sleep(rest);
                }
            }
            let _ = std::fs::remove_file(path(&spool));
        })?;
    Ok(Live {
        stop,
        thread: Some(thread),
    })
}

/// The live report, if the file is fresh and its daemon alive.
pub fn read_fresh(spool: &Path) -> Option<Report> {
    let text = std::fs::read_to_string(path(spool)).ok()?;
    let r: Report = serde_json::from_str(&text).ok()?;
    let d = r.daemon.as_ref()?;
    if now_secs() - d.updated > FRESH.as_secs_f64() || !alive(d.pid) {
        return None;
    }
    Some(r)
}

/// Whether `pid` is a running (not zombie) process.
pub fn alive(pid: u32) -> bool {
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

    fn report(pid: u32, updated: f64) -> String {
        serde_json::to_string(&Report {
            checksum: None,
            version: VERSION,
            spool: "/s".into(),
            daemon: Some(Daemon { pid, updated }),
            ..Report::default()
        })
        .unwrap()
    }

    #[test]
    fn fresh_only_with_a_live_pid_and_recent_time() {
        let d = tempfile::tempdir().unwrap();
        assert!(read_fresh(d.path()).is_none());
        let me = std::process::id();
        write_atomic(d.path(), &report(me, now_secs())).unwrap();
        assert_eq!(
            read_fresh(d.path()).and_then(|r| r.daemon).map(|d| d.pid),
            Some(me)
        );
        write_atomic(d.path(), &report(me, now_secs() - 60.0)).unwrap();
        assert!(read_fresh(d.path()).is_none());
        // A pid that cannot exist.
        write_atomic(d.path(), &report(4_194_305, now_secs())).unwrap();
        assert!(read_fresh(d.path()).is_none());
        write_atomic(d.path(), "garbage").unwrap();
        assert!(read_fresh(d.path()).is_none());
    }

    #[test]
    fn rates_average_and_reset() {
        let mut r = Rates::default();
        let t = Instant::now();
        assert_eq!(r.rate(1, 0, t), None);
        let x = r.rate(1, 1000, t + Duration::from_secs(1)).unwrap();
        assert!((x - 1000.0).abs() < 1.0, "{x}");
        // A restart from 0 forgets the old rate.
        assert_eq!(r.rate(1, 0, t + Duration::from_secs(2)), None);
        r.keep(&[]);
        assert!(r.seen.is_empty());
    }
}
