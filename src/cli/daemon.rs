//! The mounted daemon's life: mount, serve, and a prompt exit.
//!
//! The FUSE session runs on its own threads; this thread only waits for
//! the end, which is either the kernel ending the connection (an unmount
//! by `fusermount3 -u`, `umount` or `keyfs umount`: the `/dev/fuse`
//! descriptor reports POLLERR) or a termination signal (taken through a
//! signalfd: the daemon then unmounts, lazily if files are still open).
//! Then it stops the uploader with a bound ([`EXIT_BOUND`]) and returns,
//! and the process exits without joining the session's threads: one of
//! them may be blocked in a remote read or listing on a dead link, as may
//! an upload worker (what used to keep the daemon alive for up to a
//! minute after an unmount). Nothing is lost by that: pending uploads
//! are in the journal, and the server sees a cut connection, which the
//! next mount resumes.

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use keyfs::fs::{fuse::KeyFs, Core};

use super::fusemount;
use super::inotify;
use super::live::{self, MountNames};
use super::mount::{describe, lock_spool, Plan};
use super::registry;
use super::retry;

/// How long the daemon gives its shutdown (uploader and syncer) before
/// the process exits anyway.
pub const EXIT_BOUND: Duration = Duration::from_millis(1500);

/// A signalfd for SIGTERM, SIGINT and SIGHUP, blocked in this thread and
/// every thread it starts later.
fn signal_fd() -> Result<OwnedFd, String> {
    // SAFETY: plain libc signal-set manipulation on a local set; signalfd
    // returns a new descriptor we then own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC);
        if fd < 0 {
            return Err(format!("signalfd: {}", std::io::Error::last_os_error()));
        }
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// Allocations from this size up get their own mapping.
const MMAP_THRESHOLD: libc::c_int = 4 << 20;

/// Fixes glibc's mmap threshold. By default it follows the largest block
/// freed so far: one 16 MiB FUSE read buffer freed while mounting raised
/// it past that size, so the four session threads' 16 MiB buffers came
/// from the heaps instead of fresh mappings, and `calloc` cleared (and so
/// made resident) whichever landed on reused heap memory: an idle mount
/// sometimes held 16 MiB more than another, by thread timing alone. Fixed
/// at 4 MiB, those buffers are always mapped pages that stay untouched
/// until used; the 1-2 MiB read segments still come from the heaps and
/// are reused. A fixed threshold also keeps the trim threshold at its
/// default, so freed heap tops go back to the system.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

/// Connects, mounts, reports readiness, serves until unmounted or signalled.
pub fn serve(plan: Plan, ready: &mut Option<std::fs::File>) -> Result<(), String> {
    tune_malloc();
    let sigfd = signal_fd()?;
    let ep = plan.cfg.endpoint.clone();
    let spool = plan.cfg.spool_dir.clone();
    let _lock = lock_spool(&spool)?;
    let core: Arc<Core> = Core::start(plan.cfg).map_err(|e| describe(&e, &ep))?;
    for rec in &core.kept_open {
        log::warn!(
            "kept (not uploaded): {} was open for writing when keyfs stopped (job {})",
            rec.remote_path,
            rec.id
        );
    }
    let mut fs = KeyFs::new(core.clone());
    fs.writeback = plan.writeback;
    let mp = plan.mountpoint.clone();
    let fail = |core: &Core, e: std::io::Error| {
        core.shutdown();
        format!("cannot mount on {}: {e}", mp.display())
    };
    let mounted = fusemount::mount(&plan.mountpoint, &plan.spec).map_err(|e| fail(&core, e))?;
    let watch = mounted.fd.try_clone().map_err(|e| fail(&core, e))?;
    let acl = plan.fuse.acl;
    let session = match fuser::Session::from_fd(fs, mounted.fd, acl, plan.fuse) {
        Ok(s) => s,
        Err(e) => {
            let _ = fusemount::unmount(&plan.mountpoint, true);
            return Err(fail(&core, e));
        }
    };
    let _keepalive = mounted.keepalive;
    std::thread::Builder::new()
        .name("fuse-session".into())
        .spawn(move || {
            if let Err(e) = session.run() {
                log::warn!("fuse session: {e}");
            }
        })
        .map_err(|e| format!("cannot start the session thread: {e}"))?;
    super::readahead::raise(&plan.mountpoint);
    let reg = registry::add(&registry::Entry {
        pid: std::process::id(),
        mountpoint: plan.mountpoint.clone(),
        spool: spool.clone(),
    });
    if let Some(mut w) = ready.take() {
        let _ = w.write_all(b"ok\n");
        drop(w);
        detach_stdio(&spool);
    }
    log::info!(
        "mounted {} on {}",
        plan.spec.fsname,
        plan.mountpoint.display()
    );
    let names = MountNames {
        mountpoint: plan.mountpoint.display().to_string(),
        url: plan.spec.fsname.clone(),
    };
    let live = live::start(spool.clone(), core.clone(), names)
        .map_err(|e| log::warn!("no live status file: {e}"))
        .ok();

    // `keyfs retry` requests are files renamed into the spool.
    let requests = inotify::Watch::new(&spool, libc::IN_MOVED_TO)
        .map_err(|e| log::warn!("keyfs retry will not reach this daemon: {e}"))
        .ok();
    let mut wakes = vec![sigfd.as_raw_fd()];
    wakes.extend(requests.as_ref().map(|w| w.fd()));
    let gone = loop {
        match fusemount::wait_gone_or(&watch, &wakes) {
            fusemount::Woken::Gone => break true,
            fusemount::Woken::Ready(1) => {
                if let Some(w) = &requests {
                    if w.names().iter().any(|n| retry::is_request(n)) {
                        retry::take_requests(&spool, |p| core.uploader().retry_failed(p));
                    }
                }
            }
            // A termination signal (or poll failing): unmount.
            _ => break false,
        }
    };
    if gone {
        log::info!("{} was unmounted", plan.mountpoint.display());
    } else {
        log::info!("signal: unmounting {}", plan.mountpoint.display());
        if let Err(e) = fusemount::unmount(&plan.mountpoint, false) {
            log::info!("unmount: {e}; detaching it lazily");
            if let Err(e) = fusemount::unmount(&plan.mountpoint, true) {
                log::warn!("unmount: {e}");
            }
        }
    }
    shutdown_bounded(core);
    if let Some(l) = live {
        l.stop();
    }
    if let Some(f) = reg {
        registry::remove(&f);
    }
    log::info!("exiting");
    Ok(())
}

/// Runs `core.shutdown()` for at most [`EXIT_BOUND`].
fn shutdown_bounded(core: Arc<Core>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::Builder::new()
        .name("keyfs-shutdown".into())
        .spawn(move || {
            core.shutdown();
            let _ = tx.send(());
        });
    match t {
        Ok(_) => {
            if rx.recv_timeout(EXIT_BOUND).is_err() {
                log::warn!(
                    "shutdown not finished after {:?}; exiting (pending uploads stay in the spool)",
                    EXIT_BOUND
                );
            }
        }
        Err(e) => log::warn!("cannot start the shutdown thread: {e}"),
    }
}

/// Daemon stdio: stdin/stdout to /dev/null, stderr (the log) to
/// `<spool>/keyfs.log`.
fn detach_stdio(spool: &Path) {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(spool.join("keyfs.log"));
    // SAFETY: dup2 onto the standard descriptors with valid open files.
    unsafe {
        if let Ok(n) = &null {
            libc::dup2(n.as_raw_fd(), 0);
            libc::dup2(n.as_raw_fd(), 1);
        }
        match (&log, &null) {
            (Ok(l), _) => libc::dup2(l.as_raw_fd(), 2),
            (_, Ok(n)) => libc::dup2(n.as_raw_fd(), 2),
            _ => 0,
        };
    }
}
