//! `keyfs umount MOUNTPOINT [--wait [--timeout SECS]]`: optionally wait
//! for the pending uploads (as `keyfs wait`), unmount, and return once the
//! daemon has exited, so a shutdown script can rely on it being gone.

use std::time::{Duration, Instant};

use super::{fusemount, registry, Failure, UmountArgs};

/// How long `keyfs umount` waits for the daemon to exit after the unmount.
const EXIT_WAIT: Duration = Duration::from_secs(10);

pub fn run(args: UmountArgs) -> Result<(), Failure> {
    let mp = std::fs::canonicalize(&args.mountpoint)
        .map_err(|e| format!("{}: {e}", args.mountpoint.display()))?;
    let entry = registry::find(&mp);
    if args.wait {
        let e = entry
            .as_ref()
            .ok_or_else(|| format!("no keyfs daemon is mounted on {}", mp.display()))?;
        let timeout = match args.timeout {
            Some(t) if !(t >= 0.0 && t.is_finite()) => {
                return Err(format!("bad --timeout {t}").into())
            }
            Some(t) => Some(Duration::from_secs_f64(t)),
            None => None,
        };
        super::wait::wait_spool(&e.spool, &[], timeout).map_err(|f| Failure {
            msg: format!("{}; not unmounted", f.msg),
            code: f.code,
        })?;
    }
    fusemount::unmount(&mp, false).map_err(|e| format!("cannot unmount {}: {e}", mp.display()))?;
    let Some(e) = entry else {
        return Ok(());
    };
    let deadline = Instant::now() + EXIT_WAIT;
    while super::live::alive(e.pid) {
        if Instant::now() >= deadline {
            return Err(format!(
                "unmounted {}, but its daemon (pid {}) is still running",
                mp.display(),
                e.pid
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}
