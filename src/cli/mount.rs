//! `keyfs mount`: check everything that can be checked before mounting,
//! then (without -f) fork *before any thread exists*; the child connects,
//! opens the spool, starts the uploader and mounts, then reports `ok` or
//! the one-line error through a pipe. The parent exits 0 only on `ok`, so a
//! script can use the mount as soon as `keyfs mount` returns.
//!
//! The `-o` lists are read first ([`super::options`]); the mounted
//! daemon's life is in [`super::daemon`].

use std::io::{BufRead, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use keyfs::fs::{FsConfig, FsError};
use keyfs::transport::tls::{parse_pin, Tls, TlsClient};
use keyfs::transport::{Endpoint, RemoteError, Scheme};
use keyfs::upload::resume::Policy;

use super::{fusemount, options, password, spooldir, url, MountArgs, ResumeArg};

/// Connect/login timeout for the pre-mount check and the fs connections.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a mount waits for the spool lock of a daemon that is exiting.
const LOCK_WAIT: Duration = Duration::from_millis(2500);
/// How long fsync waits for the verified upload before EIO.
const FSYNC_TIMEOUT: Duration = Duration::from_secs(600);

pub struct Plan {
    pub cfg: FsConfig,
    pub mountpoint: PathBuf,
    pub spec: fusemount::MountSpec,
    /// fuser's session settings (threads, who may use the mount).
    pub fuse: fuser::Config,
    pub writeback: bool,
}

pub fn run(mut args: MountArgs) -> Result<(), String> {
    let opts = options::apply(&mut args)?;
    let plan = prepare(&args, opts)?;
    if args.foreground {
        init_log();
        return super::daemon::serve(plan, &mut None);
    }
    daemonize(plan)
}

fn prepare(args: &MountArgs, opts: options::Parsed) -> Result<Plan, String> {
    let u = url::parse(&args.url)?;
    match std::fs::metadata(&args.mountpoint) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(format!(
                "mountpoint {} is not a directory",
                args.mountpoint.display()
            ))
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            return Err(format!(
                "mountpoint {0}: a dead FUSE mount is still there (run fusermount3 -u {0})",
                args.mountpoint.display()
            ))
        }
        Err(e) => return Err(format!("mountpoint {}: {e}", args.mountpoint.display())),
    }
    let mountpoint = std::fs::canonicalize(&args.mountpoint)
        .map_err(|e| format!("mountpoint {}: {e}", args.mountpoint.display()))?;
    if let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") {
        if let Some(fstype) = fuse_mount_at(&info, &mountpoint) {
            return Err(format!(
                "{} is already mounted ({fstype}); unmount it first with fusermount3 -u",
                mountpoint.display()
            ));
        }
    }
    let (user, pass) = password::resolve(
        &u,
        std::env::var("KEYFS_PASSWORD").ok(),
        password::read_netrc().as_deref(),
        args.password_file.as_deref(),
    )?;
    let spool = match &args.spool {
        Some(s) => absolute(s)?,
        None => spooldir::default_spool(&u, &user)?,
    };
    let mut fuse = fuser::Config::default();
    fuse.n_threads = Some(4);
    fuse.acl = match opts.acl {
        options::Acl::Owner => fuser::SessionACL::Owner,
        options::Acl::All => fuser::SessionACL::All,
        options::Acl::RootAndOwner => fuser::SessionACL::RootAndOwner,
    };
    let mut spec = opts.spec;
    if !opts.fsname_given {
        spec.fsname = args.url.clone();
    }
    spec.fsname = fusemount::clean_fsname(&spec.fsname);
    let endpoint = Endpoint {
        scheme: u.scheme,
        host: u.host.clone(),
        port: u.port,
        user,
        password: pass,
        root: u.path.clone(),
        tls: tls_mode(&u, args)?,
    };
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    Ok(Plan {
        cfg: FsConfig {
            endpoint,
            spool_dir: spool,
            workers: usize::from(args.workers),
            bwlimit: args.bwlimit,
            policy: match args.resume {
                ResumeArg::Safe => Policy::Safe,
                ResumeArg::TrustSize => Policy::TrustSize,
            },
            uid,
            gid,
            timeout: CONNECT_TIMEOUT,
            fsync_timeout: FSYNC_TIMEOUT,
        },
        mountpoint,
        spec,
        fuse,
        writeback: opts.writeback,
    })
}

/// The FUSE filesystem type mounted exactly at `dir`, from
/// `/proc/self/mountinfo` text (paths there escape blanks as `\040`).
fn fuse_mount_at(mountinfo: &str, dir: &Path) -> Option<String> {
    super::mountinfo::mount_at(mountinfo, dir)
        .map(|m| m.fstype)
        .filter(|t| t.starts_with("fuse"))
}

/// Takes `<spool>/lock` (flock, held for the daemon's life): two daemons
/// replaying one journal would upload the same jobs twice and drop each
/// other's spooled copies.
pub fn lock_spool(spool: &Path) -> Result<std::fs::File, String> {
    use std::io::{Read, Seek};
    use std::os::fd::AsRawFd;
    let shown = spool.display();
    std::fs::create_dir_all(spool).map_err(|e| format!("spool {shown}: {e}"))?;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(spool.join("lock"))
        .map_err(|e| format!("spool {shown}: {e}"))?;
    // A daemon just unmounted takes up to ~2 s to let go (`umount; mount`).
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    // SAFETY: flock on a descriptor we own.
    while unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let mut pid = String::new();
            let _ = f.read_to_string(&mut pid);
            return Err(format!(
                "spool {shown} is in use by another keyfs (pid {})",
                pid.trim()
            ));
        }
        return Err(format!("spool {shown}: cannot lock: {err}"));
    }
    let pid = std::process::id();
    let _ = f.set_len(0).and_then(|_| f.rewind());
    let _ = writeln!(f, "{pid}");
    Ok(f)
}

fn absolute(p: &Path) -> Result<PathBuf, String> {
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    std::env::current_dir()
        .map(|d| d.join(p))
        .map_err(|e| format!("current directory: {e}"))
}

/// The TLS of a mount from its URL scheme, `--tls require` (`-o tls=require`), `--ca-file`
/// and `--pin-sha256`.
fn tls_mode(u: &url::FtpUrl, args: &MountArgs) -> Result<Tls, String> {
    let require = match args.tls.as_deref() {
        None => false,
        Some("require") => true,
        Some(v) => return Err(format!("tls={v}: only tls=require is known")),
    };
    let trust_given = args.ca_file.is_some() || args.pin_sha256.is_some();
    let pin = || args.pin_sha256.as_deref().map(parse_pin).transpose();
    if u.scheme == Scheme::Http {
        return match u.tls {
            url::UrlTls::Implicit => Ok(Tls::Implicit(TlsClient::for_https(
                args.ca_file.as_deref(),
                pin()?,
            )?)),
            _ if require => Err("tls=require over HTTP: use https://".into()),
            _ if trust_given => Err("--ca-file and --pin-sha256 need TLS: use https://".into()),
            _ => Ok(Tls::Off),
        };
    }
    let client = || TlsClient::new(args.ca_file.as_deref(), pin()?);
    Ok(match (u.tls, require) {
        (url::UrlTls::Implicit, _) => Tls::Implicit(client()?),
        (url::UrlTls::Explicit, _) | (url::UrlTls::Plain, true) => Tls::Explicit(client()?),
        (url::UrlTls::Plain, false) if trust_given => {
            return Err(
                "--ca-file and --pin-sha256 need TLS: use ftpes:// or ftps://, or -o tls=require"
                    .into(),
            )
        }
        (url::UrlTls::Plain, false) => Tls::Off,
    })
}

pub fn describe(e: &FsError, ep: &Endpoint) -> String {
    let at = format!("{}@{}:{}", ep.user, ep.host, ep.port);
    match e {
        FsError::Remote(RemoteError::Reply { code: 530, text }) if text.contains("TLS") => {
            format!("login to {at} refused: 530 {text} (use ftpes:// or -o tls=require)")
        }
        FsError::Remote(RemoteError::Reply { code: 530, text }) => {
            format!("login to {at} failed (wrong user or password?): 530 {text}")
        }
        FsError::Remote(RemoteError::Reply { code: 550, text }) => {
            format!("{at}: cannot open directory {}: 550 {text}", ep.root)
        }
        FsError::Remote(RemoteError::Io(io))
            if matches!(
                io.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            let proto = match ep.scheme {
                Scheme::Ftp => "FTP",
                Scheme::Http => "HTTP",
            };
            format!(
                "cannot reach {at}: no {proto} answer within {} seconds",
                CONNECT_TIMEOUT.as_secs()
            )
        }
        // An untrusted certificate (the text names the host and reason).
        FsError::Remote(RemoteError::Io(io))
            if io.kind() == std::io::ErrorKind::InvalidInput && ep.tls != Tls::Off =>
        {
            format!("TLS: {io}")
        }
        FsError::Remote(RemoteError::Io(io)) => format!("cannot reach {at}: {io}"),
        FsError::Remote(r) => format!("{at}: {r}"),
        FsError::Io(io) => format!("spool: {io}"),
        other => other.to_string(),
    }
}

fn init_log() {
    let env = env_logger::Env::default().default_filter_or("warn");
    let _ = env_logger::Builder::from_env(env)
        .format_timestamp_millis()
        .try_init();
}

/// Forks; the parent waits for the child's verdict on the pipe.
fn daemonize(plan: Plan) -> Result<(), String> {
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 fills two descriptors we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: the descriptors are fresh and owned by nobody else.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: no thread has been started yet (clap, env parsing and file
    // checks only), so the child is a faithful single-threaded copy.
    match unsafe { libc::fork() } {
        -1 => Err(format!("fork: {}", std::io::Error::last_os_error())),
        0 => {
            drop(rd);
            // SAFETY: setsid in the fresh child; chdir to a path literal.
            unsafe {
                libc::setsid();
                libc::chdir(c"/".as_ptr());
            }
            init_log();
            let mut ready = Some(std::fs::File::from(wr));
            match super::daemon::serve(plan, &mut ready) {
                Ok(()) => std::process::exit(0),
                Err(msg) => {
                    match ready {
                        // Before readiness the parent prints it (one line).
                        Some(mut w) => {
                            let _ = w.write_all(format!("err {msg}\n").as_bytes());
                        }
                        None => log::error!("{msg}"),
                    }
                    std::process::exit(1)
                }
            }
        }
        _child => {
            drop(wr);
            // The first line is the verdict; EOF first means the child died.
            let mut msg = String::new();
            let _ = std::io::BufReader::new(std::fs::File::from(rd)).read_line(&mut msg);
            let line = msg.trim_end();
            if line == "ok" {
                Ok(())
            } else if let Some(err) = line.strip_prefix("err ") {
                Err(err.to_string())
            } else {
                Err("keyfs daemon exited before the mount was ready".into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_fuse_mounts_in_mountinfo() {
        let info = "36 35 98:0 / /mnt/a\\040b rw,noatime master:1 - fuse keyfs rw\n\
                    37 35 98:0 / /mnt/c rw - ext4 /dev/sda1 rw\n";
        let at = |p: &str| super::fuse_mount_at(info, std::path::Path::new(p));
        assert_eq!(at("/mnt/a b").as_deref(), Some("fuse"));
        assert_eq!(at("/mnt/c"), None);
        assert_eq!(at("/mnt/a"), None);
    }

    #[test]
    fn a_spool_is_locked_once() {
        let d = tempfile::tempdir().unwrap();
        let first = super::lock_spool(d.path()).unwrap();
        let err = super::lock_spool(d.path()).unwrap_err();
        assert!(err.contains("in use by another keyfs"), "{err}");
        assert!(err.contains(&std::process::id().to_string()), "{err}");
        drop(first);
        assert!(super::lock_spool(d.path()).is_ok());
    }
}
