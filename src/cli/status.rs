//! `keyfs status`: what the spool's journal holds, read directly (works
//! whether or not a daemon is running; records are replaced atomically).

use keyfs::spool::journal::{JobState, Journal};

use super::{password, spooldir, url, StatusArgs};

pub fn run(args: StatusArgs) -> Result<(), String> {
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
    let journal = Journal::open(&spool).map_err(|e| format!("{}: {e}", spool.display()))?;
    let mut recs = journal
        .load_all()
        .map_err(|e| format!("{}: cannot read the journal: {e}", spool.display()))?;
    recs.sort_by_key(|r| r.id);
    println!("spool: {}", spool.display());
    if recs.is_empty() {
        println!("no pending uploads");
        return Ok(());
    }
    for r in recs {
        let state = match &r.state {
            JobState::Queued => "pending".to_string(),
            JobState::Open => {
                "kept: was open for writing when the daemon stopped; not uploaded".to_string()
            }
            JobState::Failed(why) => format!("failed: {why}"),
        };
        println!(
            "{:>6} {:>12} 0x{:08X} {}  [{}]",
            r.id, r.size, r.crc, r.remote_path, state
        );
    }
    Ok(())
}
