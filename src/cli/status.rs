//! `keyfs status`: the live status of the daemon running on the spool
//! (bytes sent, last error per job; see [`super::live`]) when there is
//! one, else what the spool's journal holds, read directly (records are
//! replaced atomically, so this works while a daemon runs too).

use std::fmt::Write as _;
use std::io::Write as _;

use keyfs::spool::journal::{JobRecord, JobState, Journal};

/// `writeln!` into a String cannot fail.
macro_rules! outln {
    ($out:expr, $($arg:tt)*) => {{
        let _ = writeln!($out, $($arg)*);
    }};
}

use super::{password, spooldir, url, StatusArgs};

pub fn run(args: StatusArgs) -> Result<(), String> {
    let text = render(args)?;
    // `keyfs status | head -2` closes the pipe early: that is not an error.
    match std::io::stdout().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(format!("stdout: {e}")),
        _ => Ok(()),
    }
}

/// The whole report, built first so that printing it is one write.
fn render(args: StatusArgs) -> Result<String, String> {
    let mut out = String::new();
    let spool = match (args.spool, args.url) {
        (Some(s), _) => s,
        (None, Some(u)) => {
            let u = url::parse(&u)?;
            let netrc = password::read_netrc();
            let user = u
                .user
                .clone()
                .or_else(|| {
                    netrc
                        .as_deref()
                        .and_then(|t| super::netrc::lookup(t, &u.host, None))
                        .and_then(|e| e.login)
                })
                .unwrap_or_else(|| "anonymous".into());
            spooldir::default_spool(&u, &user)?
        }
        (None, None) => return Err("status needs --spool DIR or the mount URL".into()),
    };
    if !spool.is_dir() {
        return Err(format!("no spool at {}", spool.display()));
    }
    if let Some((pid, text)) = super::live::read_fresh(&spool) {
        outln!(out, "spool: {}", spool.display());
        let mut lines = text.lines();
        let sent = lines
            .next()
            .and_then(|h| {
                h.split_whitespace()
                    .find_map(|w| w.strip_prefix("bytes_sent="))
            })
            .unwrap_or("?");
        outln!(
            out,
            "daemon: running (pid {pid}), {sent} bytes uploaded since mount"
        );
        let mut any = false;
        let mut shown = std::collections::HashSet::new();
        for l in lines {
            if let Some(id) = l
                .split_whitespace()
                .next()
                .and_then(|w| w.parse::<u64>().ok())
            {
                shown.insert(id);
                any = true;
            }
            // Job lines, and notes such as `checksum: ...`.
            outln!(out, "{l}");
        }
        // The live file is rewritten every 250 ms: a file closed since then
        // is already queued in the journal, so show it from there.
        if let Ok(recs) = Journal::open_for_reading(&spool).and_then(|j| j.load_all()) {
            for r in recs.iter().filter(|r| r.state == JobState::Queued) {
                if !shown.contains(&r.id) {
                    outln!(out, "{}", journal_line(r));
                    any = true;
                }
            }
        }
        if !any {
            outln!(out, "no pending uploads");
        }
        return Ok(out);
    }
    if !spool.join("journal").is_dir() {
        outln!(out, "spool: {}", spool.display());
        outln!(out, "daemon: not running (from the journal)");
        outln!(out, "no pending uploads");
        return Ok(out);
    }
    let journal =
        Journal::open_for_reading(&spool).map_err(|e| format!("{}: {e}", spool.display()))?;
    let mut recs = journal
        .load_all()
        .map_err(|e| format!("{}: cannot read the journal: {e}", spool.display()))?;
    recs.sort_by_key(|r| r.id);
    outln!(out, "spool: {}", spool.display());
    outln!(out, "daemon: not running (from the journal)");
    if recs.is_empty() {
        outln!(out, "no pending uploads");
        return Ok(out);
    }
    for r in &recs {
        outln!(out, "{}", journal_line(r));
    }
    Ok(out)
}

/// One job as the journal records it.
fn journal_line(r: &JobRecord) -> String {
    let state = match &r.state {
        JobState::Queued => "pending".to_string(),
        JobState::Open => {
            "kept: was open for writing when the daemon stopped; not uploaded".to_string()
        }
        JobState::Failed(why) => format!("failed: {why}"),
    };
    format!(
        "{:>6} {:>12} 0x{:08X} {}  [{}]",
        r.id, r.size, r.crc, r.remote_path, state
    )
}
