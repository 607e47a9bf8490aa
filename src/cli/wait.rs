//! `keyfs wait`: block until files are uploaded and verified.
//!
//! It reads the daemon's live report ([`super::live`]) and sleeps on
//! inotify events of the spool directory, where the daemon renames a new
//! report into place on every change (and every half second as a
//! heartbeat), so it wakes on each change without polling the daemon or
//! the server. The first decision uses only a report written after the
//! wait began: a file whose `close()` returned just before is in it
//! (writing or queued), never missed. A one-second wake-up bounds the
//! time to notice a daemon that died.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::inotify::{self, Watch};
use super::report::{Report, State};
use super::{live, Failure, MountFiles, Target, WaitArgs};

/// Exit codes: 0 done, 1 a permanent failure, 2 timeout or no daemon.
pub const TIMEOUT_CODE: i32 = 2;

pub fn run(args: WaitArgs) -> Result<(), Failure> {
    let (spool, wanted) = spool_and_paths(args.files)?;
    let timeout = match args.timeout {
        Some(t) if !(t >= 0.0 && t.is_finite()) => {
            return Err(format!("bad --timeout {t}").into());
        }
        Some(t) => Some(Duration::from_secs_f64(t)),
        None => None,
    };
    wait_spool(&spool, &wanted, timeout)
}

/// The spool and the server paths named by `MOUNTPOINT [PATH...]` or
/// `--spool DIR [PATH...]` (`keyfs wait`, `keyfs retry`).
pub fn spool_and_paths(files: MountFiles) -> Result<(PathBuf, Vec<String>), String> {
    let MountFiles {
        mountpoint,
        mut paths,
        target: Target { spool },
    } = files;
    let mountpoint = match (&spool, mountpoint) {
        // With --spool every positional is a PATH.
        (Some(_), Some(m)) => {
            paths.insert(0, m);
            None
        }
        (_, m) => m,
    };
    let (spool, mp) = match (spool, &mountpoint) {
        (Some(s), _) => (s, None),
        (None, Some(m)) => {
            let mp = std::fs::canonicalize(m).map_err(|e| format!("{}: {e}", m.display()))?;
            let e = super::registry::find(&mp)
                .ok_or_else(|| format!("no keyfs daemon is mounted on {}", mp.display()))?;
            (e.spool, Some(mp))
        }
        (None, None) => return Err("name the mount: MOUNTPOINT or --spool DIR".to_string()),
    };
    let wanted = paths
        .iter()
        .map(|p| remote_path(p, mp.as_deref()))
        .collect::<Result<_, _>>()?;
    Ok((spool, wanted))
}

/// The server path (relative to the URL's directory) of a PATH argument:
/// a path inside the mount, or already relative to its root.
fn remote_path(p: &Path, mountpoint: Option<&Path>) -> Result<String, String> {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else if let Some(mp) = mountpoint {
        // Relative to the current directory when that is inside the mount.
        let cwd = std::env::current_dir().map_err(|e| format!("current directory: {e}"))?;
        if cwd.starts_with(mp) {
            cwd.join(p)
        } else {
            mp.join(p)
        }
    } else {
        PathBuf::from("/").join(p)
    };
    let rel = match mountpoint {
        Some(mp) => abs
            .strip_prefix(mp)
            .map_err(|_| format!("{} is not inside the mount {}", p.display(), mp.display()))?,
        None => abs.strip_prefix("/").unwrap_or(&abs),
    };
    let mut parts = Vec::new();
    for c in rel.components() {
        match c {
            std::path::Component::Normal(s) => parts.push(
                s.to_str()
                    .ok_or_else(|| format!("{}: not UTF-8", p.display()))?
                    .to_string(),
            ),
            std::path::Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    Ok(parts.join("/"))
}

/// What the report says about the files waited for.
#[derive(Debug, PartialEq)]
enum Verdict {
    Done,
    Failed(String),
    Pending(usize),
}

fn judge(r: &Report, wanted: &HashSet<String>) -> Verdict {
    let mine = r.files.iter().filter(|f| wanted.contains(&f.path));
    let mut pending = 0;
    for f in mine {
        match f.state {
            State::Failed | State::Kept => {
                return Verdict::Failed(format!(
                    "{}: {}",
                    f.path,
                    f.last_error.as_deref().unwrap_or(f.state.name())
                ))
            }
            _ => pending += 1,
        }
    }
    if pending == 0 {
        Verdict::Done
    } else {
        Verdict::Pending(pending)
    }
}

/// Waits for `wanted` (empty: every file pending in the first report).
pub fn wait_spool(
    spool: &Path,
    wanted: &[String],
    timeout: Option<Duration>,
) -> Result<(), Failure> {
    let start = live::now_secs();
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    let watch = Watch::new(spool, inotify::CHANGES)?;
    let mut set: Option<HashSet<String>> =
        (!wanted.is_empty()).then(|| wanted.iter().cloned().collect());
    let give_up = |msg: String| Failure {
        msg,
        code: TIMEOUT_CODE,
    };
    loop {
        match live::read_fresh(spool) {
            // Only a report written after the wait began counts.
            Some(r) if r.daemon.as_ref().is_some_and(|d| d.updated >= start) => {
                let s = set.get_or_insert_with(|| {
                    r.files
                        .iter()
                        .filter(|f| f.state.pending() || f.state == State::Failed)
                        .map(|f| f.path.clone())
                        .collect()
                });
                match judge(&r, s) {
                    Verdict::Done => return Ok(()),
                    Verdict::Failed(msg) => {
                        return Err(Failure {
                            msg: format!("upload failed: {msg}"),
                            code: 1,
                        })
                    }
                    Verdict::Pending(_) => {}
                }
            }
            Some(_) => {}
            None => {
                // No daemon: nothing will change. Say what is left.
                let r = Report::from_journal(spool)?;
                let left = match &set {
                    Some(s) => judge(&r, s),
                    None => judge(&r, &r.files.iter().map(|f| f.path.clone()).collect()),
                };
                return match left {
                    Verdict::Done => Ok(()),
                    Verdict::Failed(msg) => Err(format!("upload failed: {msg}").into()),
                    Verdict::Pending(n) => Err(give_up(format!(
                        "no keyfs daemon runs on {}; {n} file(s) still pending",
                        spool.display()
                    ))),
                };
            }
        }
        let mut nap = Duration::from_secs(1);
        if let Some(d) = deadline {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(give_up("timed out; files still pending".into()));
            }
            nap = nap.min(left);
        }
        watch.sleep(nap);
    }
}

#[cfg(test)]
mod tests {
    use super::super::report::FileStatus;
    use super::*;

    #[test]
    fn paths_inside_the_mount() {
        let mp = Path::new("/mnt/nas");
        let r = |p: &str| remote_path(Path::new(p), Some(mp));
        assert_eq!(r("/mnt/nas/a/b.txt").unwrap(), "a/b.txt");
        assert_eq!(r("/mnt/nas/a/../c").unwrap(), "c");
        assert!(r("/etc/passwd").is_err());
        assert_eq!(remote_path(Path::new("/x/y"), None).unwrap(), "x/y");
        assert_eq!(remote_path(Path::new("x/y"), None).unwrap(), "x/y");
    }

    #[test]
    fn verdicts() {
        let mut f = FileStatus::from_record(&keyfs::spool::journal::JobRecord {
            id: 1,
            remote_path: "a".into(),
            size: 1,
            crc: 0,
            state: keyfs::spool::journal::JobState::Queued,
            wanted: Default::default(),
        });
        let mut r = Report {
            files: vec![f.clone()],
            ..Report::default()
        };
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<HashSet<_>>();
        assert_eq!(judge(&r, &set(&["a"])), Verdict::Pending(1));
        assert_eq!(judge(&r, &set(&["b"])), Verdict::Done);
        f.state = State::Failed;
        f.last_error = Some("553 no".into());
        r.files = vec![f];
        assert_eq!(judge(&r, &set(&["a"])), Verdict::Failed("a: 553 no".into()));
    }
}
