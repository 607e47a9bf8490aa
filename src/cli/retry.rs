//! `keyfs retry`: queue failed uploads again.
//!
//! A permanent failure (a `553` from the server, a certificate that
//! changed, a server disk that was full) keeps the file in the spool and
//! stops trying. Once the cause is fixed, `keyfs retry` queues it again,
//! without the program writing the file a second time.
//!
//! With a daemon on the spool, the request is a file `SPOOL/retry.PID`
//! (the remote paths, NUL-separated; empty: every failed file) renamed
//! into place; the daemon (woken by inotify) queues the jobs, answers in
//! `SPOOL/retry.PID.done` with the paths it queued, and removes the
//! request. No signal and no PID read from a file: only the spool's owner
//! can write there, and the daemon reads only regular files of its own
//! user (or root's). Without a daemon the journal records are changed
//! here, under the spool's lock, and the next mount uploads them.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use keyfs::spool::journal::{JobState, Journal};

use super::{live, Failure, RetryArgs};

const PREFIX: &str = "retry.";
const ANSWER: &str = ".done";
/// How long the daemon may take to answer.
const PATIENCE: Duration = Duration::from_secs(10);
/// A request larger than this is not read.
const MAX_REQUEST: u64 = 1 << 20;

pub fn run(args: RetryArgs) -> Result<(), Failure> {
    let (spool, wanted) = super::wait::spool_and_paths(args.files)?;
    let set: Option<HashSet<String>> = (!wanted.is_empty()).then(|| wanted.into_iter().collect());
    let (again, missing) = match live::read_fresh(&spool) {
        Some(_) => (ask_daemon(&spool, set.as_ref())?, Vec::new()),
        None => offline(&spool, set.as_ref())?,
    };
    if again.is_empty() && missing.is_empty() {
        println!("no failed upload to retry");
    }
    for p in &again {
        println!("queued again: {p}");
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(format!(
        "not retried, their spooled data is missing: {}",
        missing.join(", ")
    )
    .into())
}

/// NUL-separated paths, the request's and the answer's form.
fn encode(paths: impl IntoIterator<Item = impl AsRef<str>>) -> Vec<u8> {
    let mut b = Vec::new();
    for p in paths {
        b.extend_from_slice(p.as_ref().as_bytes());
        b.push(0);
    }
    b
}

fn decode(b: &[u8]) -> Vec<String> {
    b.split(|c| *c == 0)
        .filter(|p| !p.is_empty())
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect()
}

/// Hands the request to the daemon; its answer: the paths it queued.
fn ask_daemon(spool: &Path, set: Option<&HashSet<String>>) -> Result<Vec<String>, String> {
    let name = format!("{PREFIX}{}", std::process::id());
    let file = spool.join(&name);
    let answer = spool.join(format!("{name}{ANSWER}"));
    let tmp = spool.join(format!(".{name}.tmp"));
    let _ = std::fs::remove_file(&answer);
    let written = std::fs::write(&tmp, encode(set.into_iter().flatten()))
        .and_then(|()| std::fs::rename(&tmp, &file));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("{}: {e}", file.display()));
    }
    let deadline = Instant::now() + PATIENCE;
    loop {
        match std::fs::read(&answer) {
            Ok(b) => {
                let _ = std::fs::remove_file(&answer);
                return Ok(decode(&b));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{}: {e}", answer.display())),
        }
        if Instant::now() >= deadline {
            let _ = std::fs::remove_file(&file);
            return Err(format!(
                "the keyfs daemon on {} did not answer within {} s",
                spool.display(),
                PATIENCE.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// No daemon: marks the failed records queued for the next mount. Returns
/// those, and the ones whose data file is gone (queued, they would be
/// taken for uploaded at the next mount).
fn offline(
    spool: &Path,
    set: Option<&HashSet<String>>,
) -> Result<(Vec<String>, Vec<String>), String> {
    if !spool.join("journal").is_dir() {
        return Err(format!("no keyfs spool at {}", spool.display()));
    }
    let _lock = super::mount::lock_spool(spool)?;
    let shown = spool.display();
    let journal = Journal::open(spool).map_err(|e| format!("spool {shown}: {e}"))?;
    let records = journal
        .load_all()
        .map_err(|e| format!("spool {shown}: {e}"))?;
    let (mut again, mut missing) = (Vec::new(), Vec::new());
    for mut rec in records {
        if !matches!(rec.state, JobState::Failed(_))
            || set.is_some_and(|s| !s.contains(&rec.remote_path))
        {
            continue;
        }
        if !journal.data_path(rec.id).is_file() {
            missing.push(rec.remote_path);
            continue;
        }
        rec.state = JobState::Queued;
        journal
            .record(&rec)
            .map_err(|e| format!("spool {shown}: job {}: {e}", rec.id))?;
        again.push(rec.remote_path);
    }
    Ok((again, missing))
}

/// Whether a file name in the spool is a request (not its answer).
pub fn is_request(name: &OsStr) -> bool {
    name.to_str()
        .and_then(|n| n.strip_prefix(PREFIX))
        .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
}

/// Daemon side: takes every request in `spool`, queues the failed jobs it
/// names (`retry`), answers and removes it.
pub fn take_requests(spool: &Path, retry: impl Fn(Option<&HashSet<String>>) -> Vec<String>) {
    let Ok(dir) = std::fs::read_dir(spool) else {
        return;
    };
    let files: Vec<PathBuf> = dir
        .flatten()
        .filter(|e| is_request(&e.file_name()))
        .map(|e| e.path())
        .collect();
    for f in files {
        match read_request(&f) {
            Ok(paths) => {
                let set: HashSet<String> = paths.into_iter().collect();
                let again = retry((!set.is_empty()).then_some(&set));
                log::info!("keyfs retry: {} failed upload(s) queued again", again.len());
                let with = |end: &str| {
                    let mut p = f.clone().into_os_string();
                    p.push(end);
                    PathBuf::from(p)
                };
                let (answer, tmp) = (with(ANSWER), with(".tmp"));
                let written = std::fs::write(&tmp, encode(&again))
                    .and_then(|()| std::fs::rename(&tmp, &answer));
                if let Err(e) = written {
                    log::warn!("keyfs retry: cannot answer: {e}");
                    let _ = std::fs::remove_file(&tmp);
                }
                let _ = std::fs::remove_file(&f);
            }
            Err(e) => {
                log::warn!("{}: {e}; ignored", f.display());
                let _ = std::fs::remove_file(&f);
            }
        }
    }
}

/// A request's paths: a regular file (not followed if a link, never a
/// FIFO to block on) of this daemon's user or root, of bounded size.
fn read_request(f: &Path) -> Result<Vec<String>, String> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(f)
        .map_err(|e| e.to_string())?;
    let m = file.metadata().map_err(|e| e.to_string())?;
    // SAFETY: geteuid has no failure mode.
    let me = unsafe { libc::geteuid() };
    if !m.file_type().is_file() {
        return Err("not a regular file".into());
    }
    if m.uid() != me && m.uid() != 0 {
        return Err(format!("owned by uid {}, not this daemon's", m.uid()));
    }
    if m.len() > MAX_REQUEST {
        return Err(format!("{} bytes, more than a request", m.len()));
    }
    let mut b = Vec::new();
    file.read_to_end(&mut b).map_err(|e| e.to_string())?;
    Ok(decode(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_names_and_forms() {
        assert!(is_request(OsStr::new("retry.123")));
        assert!(!is_request(OsStr::new("retry.123.done")));
        assert!(!is_request(OsStr::new("retry.")));
        assert!(!is_request(OsStr::new(".retry.123.tmp")));
        assert!(!is_request(OsStr::new("status")));
        let b = encode(["a/b c", "x\ny"]);
        assert_eq!(decode(&b), vec!["a/b c".to_string(), "x\ny".to_string()]);
        assert!(decode(b"").is_empty());
    }

    #[test]
    fn requests_are_answered_and_bad_ones_dropped() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("retry.1"), encode(["a", "b"])).unwrap();
        std::fs::write(d.path().join("retry.2"), b"").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.path().join("retry.3")).unwrap();
        let seen = std::sync::Mutex::new(Vec::new());
        take_requests(d.path(), |set| {
            let mut v: Vec<String> = set.map(|s| s.iter().cloned().collect()).unwrap_or_default();
            v.sort();
            seen.lock().unwrap().push(v.clone());
            v
        });
        let mut seen = seen.into_inner().unwrap();
        seen.sort();
        assert_eq!(seen, vec![vec![], vec!["a".to_string(), "b".to_string()]]);
        let answer = std::fs::read(d.path().join("retry.1.done")).unwrap();
        let mut got = decode(&answer);
        got.sort();
        assert_eq!(got, vec!["a", "b"]);
        assert!(d.path().join("retry.2.done").exists());
        for n in ["retry.1", "retry.2", "retry.3", "retry.3.done"] {
            assert!(!d.path().join(n).exists(), "{n} left");
        }
    }
}
