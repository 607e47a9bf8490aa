//! The kernel reads a FUSE file ahead in requests no larger than the
//! mount's read-ahead window, which defaults to 128 KiB. keyfs accepts
//! 1 MiB requests (`max_readahead`), but the window is a property of the
//! mount's backing device (`/sys/class/bdi/MAJOR:MINOR/read_ahead_kb`), so
//! the daemon raises it after mounting: 1 MiB requests mean an eighth of
//! the FUSE round trips for a sequential read. Best effort: without
//! permission the default stays and reads are only slower.

use std::path::Path;

/// The read-ahead window keyfs asks for, in KiB (the largest FUSE request).
pub const READ_AHEAD_KB: u32 = 1024;

/// Sets the read-ahead window of the filesystem mounted at `mountpoint`.
pub fn raise(mountpoint: &Path) {
    let info = match std::fs::read_to_string("/proc/self/mountinfo") {
        Ok(t) => t,
        Err(e) => return log::debug!("read-ahead: /proc/self/mountinfo: {e}"),
    };
    let Some(dev) = super::mountinfo::mount_at(&info, mountpoint).map(|m| m.dev) else {
        return log::debug!("read-ahead: {} not in mountinfo", mountpoint.display());
    };
    let knob = format!("/sys/class/bdi/{dev}/read_ahead_kb");
    match std::fs::write(&knob, format!("{READ_AHEAD_KB}\n")) {
        Ok(()) => log::debug!("read-ahead: {knob} = {READ_AHEAD_KB}"),
        Err(e) => log::debug!("read-ahead: {knob}: {e} (kept the default)"),
    }
}
