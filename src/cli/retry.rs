//! `keyfs retry`: queue failed uploads again.
//!
//! A permanent failure (a `553` from the server, a certificate that
//! changed, a server disk that was full) keeps the file in the spool and
//! stops trying. Once the cause is fixed, `keyfs retry` queues it again,
//! without the program writing the file a second time.
//!
//! With a daemon on the spool, the request goes to it as a file
//! `SPOOL/retry.PID` (the remote paths, NUL-separated; empty: every failed
//! file) and a SIGUSR1; the daemon takes the file, queues the jobs and
//! removes it. Without one, the journal records are changed here (under
//! the spool's lock), and the next mount uploads them.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use keyfs::spool::journal::{JobState, Journal};

use super::report::State;
use super::{live, Failure, RetryArgs};

const PREFIX: &str = "retry.";
/// How long the daemon may take to answer the request.
const ANSWER: Duration = Duration::from_secs(5);

pub fn run(args: RetryArgs) -> Result<(), Failure> {
    let (spool, wanted) = super::wait::spool_and_paths(args.files)?;
    let set: Option<HashSet<String>> = (!wanted.is_empty()).then(|| wanted.into_iter().collect());
    let again = match live::read_fresh(&spool)
        .and_then(|r| r.daemon.as_ref().map(|d| (d.pid, r.clone())))
    {
        Some((pid, report)) => {
            let failed: Vec<String> = report
                .files
                .iter()
                .filter(|f| f.state == State::Failed)
                .filter(|f| set.as_ref().is_none_or(|s| s.contains(&f.path)))
                .map(|f| f.path.clone())
                .collect();
            if !failed.is_empty() {
                ask_daemon(&spool, pid, set.as_ref())?;
            }
            failed
        }
        None => offline(&spool, set.as_ref())?,
    };
    if again.is_empty() {
        println!("no failed upload to retry");
    }
    for p in &again {
        println!("queued again: {p}");
    }
    Ok(())
}

/// Hands the request to the daemon `pid` and waits until it took it.
fn ask_daemon(spool: &Path, pid: u32, set: Option<&HashSet<String>>) -> Result<(), String> {
    let me = std::process::id();
    let file = spool.join(format!("{PREFIX}{me}"));
    let tmp = spool.join(format!(".{PREFIX}{me}.tmp"));
    let mut body = Vec::new();
    for p in set.into_iter().flatten() {
        body.extend_from_slice(p.as_bytes());
        body.push(0);
    }
    std::fs::write(&tmp, &body)
        .and_then(|()| std::fs::rename(&tmp, &file))
        .map_err(|e| format!("{}: {e}", file.display()))?;
    // SAFETY: kill with a pid read from the daemon's own status file.
    if unsafe { libc::kill(pid as libc::pid_t, libc::SIGUSR1) } != 0 {
        let e = std::io::Error::last_os_error();
        let _ = std::fs::remove_file(&file);
        return Err(format!("cannot signal the keyfs daemon (pid {pid}): {e}"));
    }
    let deadline = Instant::now() + ANSWER;
    while file.exists() {
        if Instant::now() >= deadline {
            let _ = std::fs::remove_file(&file);
            return Err(format!(
                "the keyfs daemon (pid {pid}) did not take the request"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// No daemon: marks the failed records queued for the next mount.
fn offline(spool: &Path, set: Option<&HashSet<String>>) -> Result<Vec<String>, String> {
    if !spool.join("journal").is_dir() {
        return Err(format!("no keyfs spool at {}", spool.display()));
    }
    let _lock = super::mount::lock_spool(spool)?;
    let shown = spool.display();
    let journal = Journal::open(spool).map_err(|e| format!("spool {shown}: {e}"))?;
    let records = journal
        .load_all()
        .map_err(|e| format!("spool {shown}: {e}"))?;
    let mut again = Vec::new();
    for mut rec in records {
        if !matches!(rec.state, JobState::Failed(_))
            || set.is_some_and(|s| !s.contains(&rec.remote_path))
        {
            continue;
        }
        rec.state = JobState::Queued;
        journal
            .record(&rec)
            .map_err(|e| format!("spool {shown}: job {}: {e}", rec.id))?;
        again.push(rec.remote_path);
    }
    Ok(again)
}

/// Daemon side: takes every pending request in `spool` and queues the
/// failed jobs it names (see the module comment).
pub fn take_requests(spool: &Path, retry: impl Fn(Option<&HashSet<String>>) -> Vec<String>) {
    let Ok(dir) = std::fs::read_dir(spool) else {
        return;
    };
    let files: Vec<PathBuf> = dir
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(PREFIX))
        })
        .collect();
    for f in files {
        match std::fs::read(&f) {
            Ok(body) => {
                let set: HashSet<String> = body
                    .split(|b| *b == 0)
                    .filter(|p| !p.is_empty())
                    .map(|p| String::from_utf8_lossy(p).into_owned())
                    .collect();
                let again = retry((!set.is_empty()).then_some(&set));
                log::info!("keyfs retry: {} failed upload(s) queued again", again.len());
            }
            Err(e) => log::warn!("{}: {e}", f.display()),
        }
        let _ = std::fs::remove_file(&f);
    }
}
