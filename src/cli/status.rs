//! `keyfs status`: the [`Report`] of the daemon running on the spool (its
//! live file) when there is one, else what the spool's journal holds; as
//! a table, as JSON, or as live progress bars (`--watch`, indicatif).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use keyfs::spool::journal::{JobState, Journal};

use super::report::{FileStatus, Report, State};
use super::{live, StatusArgs};

/// `writeln!` into a String cannot fail.
macro_rules! outln {
    ($out:expr, $($arg:tt)*) => {{
        let _ = writeln!($out, $($arg)*);
    }};
}

pub fn run(args: StatusArgs) -> Result<(), String> {
    let spool = super::resolve_spool(args.url.as_deref(), args.target.spool.as_ref())?;
    if !spool.is_dir() {
        return Err(format!("no spool at {}", spool.display()));
    }
    if args.watch {
        return watch(&spool);
    }
    let report = current(&spool)?;
    let text = if args.json {
        let mut t = serde_json::to_string_pretty(&report).map_err(|e| format!("json: {e}"))?;
        t.push('\n');
        t
    } else {
        table(&report)
    };
    // `keyfs status | head -2` closes the pipe early: that is not an error.
    match std::io::stdout().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(format!("stdout: {e}")),
        _ => Ok(()),
    }
}

/// The live report if a daemon runs on the spool, else the journal's.
pub fn current(spool: &Path) -> Result<Report, String> {
    match live::read_fresh(spool) {
        Some(mut r) => {
            // The live file is rewritten every 200 ms: a file closed since
            // then is already queued in the journal, so show it from there.
            if let Ok(recs) = Journal::open_for_reading(spool).and_then(|j| j.load_all()) {
                for rec in recs.iter().filter(|r| r.state == JobState::Queued) {
                    let known = r.files.iter().any(|f| {
                        f.id == Some(rec.id) || (f.id.is_none() && f.path == rec.remote_path)
                    });
                    if !known {
                        r.files
                            .retain(|f| f.path != rec.remote_path || f.id.is_some());
                        r.files.push(FileStatus::from_record(rec));
                    }
                }
            }
            Ok(r)
        }
        None => Report::from_journal(spool),
    }
}

fn human(n: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0} {}", units[u])
    } else {
        format!("{v:.1} {}", units[u])
    }
}

fn secs(s: f64) -> String {
    let s = s.round() as u64;
    match s {
        0..=99 => format!("{s}s"),
        100..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s / 60 % 60),
    }
}

/// One row's columns after the path: state, sent/total, rate, ETA, tries, error.
fn row(f: &FileStatus) -> String {
    let mut s = format!(
        "{:<9} {:>10} / {:<10}",
        f.state.name(),
        human(f.bytes_sent as f64),
        human(f.bytes_total as f64)
    );
    match (f.rate, f.eta_seconds) {
        (Some(r), Some(e)) => {
            let _ = write!(s, " {:>10}/s  ETA {:<6}", human(r), secs(e));
        }
        (Some(r), None) => {
            let _ = write!(s, " {:>10}/s  {:<10}", human(r), "");
        }
        _ => s.push_str(&" ".repeat(24)),
    }
    let _ = write!(s, " tries {}", f.tries);
    if let Some(t) = f.retry_in.filter(|_| f.state == State::Retrying) {
        let _ = write!(s, ", next in {}", secs(t));
    }
    if let Some(e) = &f.last_error {
        let _ = write!(s, "  last error: {e}");
    }
    s
}

/// The report for people.
pub fn table(r: &Report) -> String {
    let mut out = String::new();
    outln!(out, "spool: {}", r.spool);
    match &r.daemon {
        Some(d) => {
            if let (Some(m), Some(u)) = (&r.mountpoint, &r.url) {
                outln!(out, "mount: {u} on {m}");
            }
            outln!(
                out,
                "daemon: running (pid {}), {} bytes uploaded since mount",
                d.pid,
                r.bytes_sent
            );
        }
        None => outln!(out, "daemon: not running (from the journal)"),
    }
    if let Some(c) = &r.checksum {
        outln!(out, "checksum: {c}");
    }
    if r.files.is_empty() {
        outln!(out, "no pending uploads");
        return out;
    }
    let w = r
        .files
        .iter()
        .map(|f| f.path.len())
        .max()
        .unwrap_or(0)
        .min(60);
    for f in &r.files {
        outln!(out, "{:<w$}  {}", f.path, row(f));
    }
    if r.pending() == 0 {
        outln!(out, "no pending uploads");
    }
    out
}

/// Progress bars, one per file, redrawn until nothing is pending.
fn watch(spool: &Path) -> Result<(), String> {
    use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
    use std::collections::HashMap;
    let multi = MultiProgress::new();
    let style = ProgressStyle::with_template(
        "{prefix:<30!} {msg:<10} [{bar:30}] {bytes:>10}/{total_bytes:<10} {binary_bytes_per_sec:>12} ETA {eta}",
    )
    .map_err(|e| e.to_string())?
    .progress_chars("=> ");
    let header = multi.add(ProgressBar::new_spinner());
    let mut bars: HashMap<String, ProgressBar> = HashMap::new();
    loop {
        let r = current(spool)?;
        header.set_message(match &r.daemon {
            Some(d) => format!(
                "{} pending, {} uploaded since mount (pid {})",
                r.pending(),
                human(r.bytes_sent as f64),
                d.pid
            ),
            None => format!("{} pending; no daemon runs on {}", r.pending(), r.spool),
        });
        header.tick();
        for f in &r.files {
            let key = format!("{}#{}", f.path, f.id.unwrap_or(0));
            let b = bars.entry(key).or_insert_with(|| {
                let b = multi.add(ProgressBar::new(f.bytes_total));
                b.set_style(style.clone());
                b.set_prefix(f.path.clone());
                b
            });
            b.set_length(f.bytes_total);
            b.set_position(f.bytes_sent);
            let msg = match (&f.last_error, f.state) {
                (Some(e), State::Retrying | State::Failed) => format!("{} ({e})", f.state.name()),
                _ => f.state.name().to_string(),
            };
            b.set_message(msg);
        }
        // Files no longer listed were uploaded and verified.
        bars.retain(|key, b| {
            let here = r
                .files
                .iter()
                .any(|f| format!("{}#{}", f.path, f.id.unwrap_or(0)) == *key);
            if !here {
                b.set_position(b.length().unwrap_or(0));
                b.finish_with_message("uploaded");
            }
            here
        });
        if r.pending() == 0 || r.daemon.is_none() {
            header.finish();
            for b in bars.values() {
                b.abandon();
            }
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_rows() {
        let r = Report {
            checksum: None,
            version: 1,
            spool: "/s".into(),
            files: vec![FileStatus {
                path: "/big.bin".into(),
                state: State::Uploading,
                id: Some(1),
                bytes_sent: 3 << 20,
                bytes_total: 8 << 20,
                rate: Some(1048576.0),
                eta_seconds: Some(5.0),
                tries: 1,
                retry_in: None,
                last_error: None,
                crc: None,
            }],
            ..Report::default()
        };
        let t = table(&r);
        assert!(t.contains("daemon: not running"), "{t}");
        assert!(t.contains("/big.bin  uploading"), "{t}");
        assert!(t.contains("3.0 MiB / 8.0 MiB"), "{t}");
        assert!(t.contains("1.0 MiB/s  ETA 5s"), "{t}");
        assert!(!t.contains("no pending uploads"), "{t}");
        assert!(table(&Report::default()).contains("no pending uploads"));
        assert_eq!(secs(3700.0), "1h01m");
    }
}
