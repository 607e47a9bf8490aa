//! Was the machine reset while this spool was in use?
//!
//! Close does not fsync (the syncer commits closed files in batches), so
//! after a power cut or kernel crash a journal record can name data that
//! never reached the disk, or (on a filesystem without a journal) a reused
//! inode now holding another file's bytes. After a crash of the daemon
//! alone the page cache survives and every record is right. `spool/boot`
//! tells the two apart: `running <boot id>` while a daemon uses the spool,
//! `clean <boot id>` after its clean stop. A start that finds `running`
//! with another boot id follows an unclean reboot, and the uploader then
//! re-checksums every queued job before it is sent.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

const FILE: &str = "boot";

/// The kernel's id of this boot, if it says.
fn boot_id() -> Option<String> {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && !s.contains(char::is_whitespace))
}

/// True when the last daemon on this spool did not stop cleanly and the
/// machine has rebooted since (or the boot id cannot be read).
pub fn unclean_reboot(spool_dir: &Path) -> bool {
    let Ok(text) = fs::read_to_string(spool_dir.join(FILE)) else {
        // No marker: a new spool, or one from a version that fsynced
        // every close.
        return false;
    };
    let mut w = text.split_whitespace();
    match (w.next(), w.next()) {
        (Some("clean"), _) => false,
        (Some("running"), Some(id)) => boot_id().as_deref() != Some(id),
        _ => true,
    }
}

/// Marks the spool in use by a daemon of this boot (durably: it must be
/// on disk before any job written by this daemon can be).
pub fn mark_running(spool_dir: &Path) -> io::Result<()> {
    write(spool_dir, "running")
}

/// Marks a clean stop (after the syncer has committed every job).
pub fn mark_clean(spool_dir: &Path) -> io::Result<()> {
    write(spool_dir, "clean")
}

fn write(spool_dir: &Path, state: &str) -> io::Result<()> {
    let id = boot_id().unwrap_or_else(|| "unknown".into());
    let tmp = spool_dir.join(format!("{FILE}.tmp"));
    let mut f = File::create(&tmp)?;
    writeln!(f, "{state} {id}")?;
    f.sync_all()?;
    fs::rename(&tmp, spool_dir.join(FILE))?;
    File::open(spool_dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_on_this_boot_or_clean_is_trusted() {
        let d = tempfile::tempdir().unwrap();
        assert!(!unclean_reboot(d.path()), "no marker yet");
        mark_running(d.path()).unwrap();
        assert!(!unclean_reboot(d.path()), "a daemon crash on this boot");
        mark_clean(d.path()).unwrap();
        assert!(!unclean_reboot(d.path()));
    }

    #[test]
    fn running_on_another_boot_or_garbage_is_not() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join(FILE), "running 00000000-dead-beef\n").unwrap();
        assert!(unclean_reboot(d.path()));
        fs::write(d.path().join(FILE), "\u{0}\u{0}").unwrap();
        assert!(unclean_reboot(d.path()), "a torn marker");
        fs::write(d.path().join(FILE), "clean 00000000-dead-beef\n").unwrap();
        assert!(!unclean_reboot(d.path()));
    }
}
