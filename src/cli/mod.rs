//! The `keyfs` command line: `keyfs mount URL MOUNTPOINT ...`, `keyfs
//! status`, `keyfs wait`, `keyfs umount`, and the mount helper form
//! `keyfs URL MOUNTPOINT -o OPTIONS` that mount.fuse3 runs for an fstab
//! line of type `fuse.keyfs`. Parsing helpers are pure and unit-tested;
//! [`mount`] holds the daemon start-up (fork before any thread, readiness
//! pipe), [`daemon`] the mounted daemon's life.

pub mod daemon;
pub mod fusemount;
pub mod inotify;
pub mod live;
pub mod mount;
pub mod mountinfo;
pub mod netrc;
pub mod options;
pub mod password;
pub mod rate;
pub mod readahead;
pub mod registry;
pub mod report;
pub mod retry;
pub mod spooldir;
pub mod status;
pub mod umount;
pub mod url;
pub mod wait;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "keyfs",
    version,
    about = "Mount an FTP directory; writes are spooled locally with a CRC-32 and uploaded in the background",
    long_about = "Mount an FTP directory as a local one.\n\n\
Whatever a program writes into the mount is spooled to a local disk and \
checksummed (CRC-32) as it is written. close() never waits for the network: \
a background uploader sends the file with `KEY 0x<crc>` then STOR, and after \
an interruption resumes only when the server proves (by its stored key, and \
XCRC where offered) that its partial copy is the same file. fsync() waits \
until the file is uploaded and verified, and fails with EIO otherwise.\n\n\
The password comes from KEYFS_PASSWORD, else ~/.netrc, else --password-file."
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Mount ftp://, http:// or https://[user@]host[:port][/dir] on MOUNTPOINT.
    #[command(
        after_help = "Without -f, keyfs returns once the mount is ready and keeps running in the \
background (log: SPOOL/keyfs.log). Unmount with `fusermount3 -u MOUNTPOINT` or SIGTERM to \
the daemon (it exits within 2 s; `keyfs umount MOUNTPOINT` waits for that); pending uploads \
stay in the spool and continue at the next mount of the same URL (or with the same --spool). \
The password comes from KEYFS_PASSWORD, else ~/.netrc, else --password-file. In /etc/fstab: \
`URL MOUNTPOINT fuse.keyfs _netdev,spool=DIR,password_file=FILE 0 0` (mount.fuse3 runs \
`keyfs URL MOUNTPOINT -o OPTIONS`)."
    )]
    Mount(MountArgs),
    /// Show the uploads of a mount (live from its daemon, else from the spool's journal).
    #[command(
        after_help = "One row per file: path, state (writing, queued, uploading, verifying, \
retrying, failed; kept for a file that was open when a daemon died), bytes sent of the total, \
rate, ETA, tries and the last error. The mount is named by its MOUNTPOINT, its URL (its default \
spool) or --spool DIR. --json prints one object (documented in keyfs(1)); --watch redraws \
progress bars until every file is uploaded or failed (or Ctrl-C)."
    )]
    Status(StatusArgs),
    /// Wait until files are uploaded and verified on the server.
    #[command(
        after_help = "Exits 0 once every named PATH (default: every file pending now, including \
files still being written) is uploaded and verified; 1 at once when one failed permanently; 2 \
when --timeout passes or no daemon runs on the spool. PATH is a path inside the mount (or on \
the server, from the URL's directory). It waits on inotify events of the daemon's status file, \
not by polling the server."
    )]
    Wait(WaitArgs),
    /// Unmount, optionally after waiting for the pending uploads.
    #[command(
        after_help = "Unmounts MOUNTPOINT and returns once its daemon has exited (within a few \
seconds). Files still pending stay in the spool and are uploaded at the next mount. With --wait \
it first waits as `keyfs wait MOUNTPOINT` does, and does not unmount if that fails (exit 1 for \
a failed upload, 2 for the timeout)."
    )]
    Umount(UmountArgs),
    /// Queue failed uploads again, once their cause is fixed.
    #[command(
        after_help = "A permanent failure (such as a 553 from the server) keeps the file in the \
spool and stops trying; `keyfs status` shows it as failed with its reason. Once the cause is \
fixed, `keyfs retry` queues every failed file again (or the named PATHs), without the file \
being written again. With a daemon on the spool it takes the request at once (follow with \
`keyfs wait`); without one, the next mount uploads them. A failure caused by the mount itself \
(a certificate that changed, a wrong --ca-file) needs a remount with the right settings first."
    )]
    Retry(RetryArgs),
}

#[derive(clap::Args, Debug)]
pub struct MountArgs {
    /// ftp://[user@]host[:port][/dir]; ftpes:// for explicit TLS (port 21), ftps:// for implicit TLS (port 990); http:// for keyftpd's HTTP face or a WebDAV server, https:// for the same over TLS (port 443).
    pub url: String,
    /// An existing directory to mount on.
    pub mountpoint: PathBuf,
    /// Spool directory [default: $XDG_CACHE_HOME/keyfs/HOST_PORT_USER_PATH-HASH (or ~/.cache/keyfs/...), from the URL alone].
    #[arg(long, value_name = "DIR")]
    pub spool: Option<PathBuf>,
    /// Cap on upload bandwidth in bytes per second, shared by all workers (e.g. 8M, 512K).
    #[arg(long, value_name = "RATE", value_parser = rate::parse_rate)]
    pub bwlimit: Option<u64>,
    /// Upload worker threads, each with its own FTP connection (several keep
    /// many small files flowing; one big file uses one).
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub workers: u16,
    /// Stay in the foreground (log to stderr).
    #[arg(short = 'f', long)]
    pub foreground: bool,
    /// Mount options, comma-separated: every flag above as NAME=VALUE
    /// (spool=, bwlimit=, workers=, password_file=, resume=, foreground),
    /// allow_other, allow_root, ro, rw, noexec, auto_unmount,
    /// default_permissions, writeback (kernel writeback cache: fast small
    /// writes), fsname=NAME; fstab's _netdev, nofail, defaults, x-* and the
    /// like are ignored; any other option is refused.
    #[arg(short = 'o', value_name = "OPTIONS")]
    pub options: Vec<String>,
    /// A file whose first line is the password (used when neither KEYFS_PASSWORD nor ~/.netrc has one).
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Resume policy on servers without KEY or a checksum command: `safe`
    /// restarts from 0; `trust-size` resumes at the server's size.
    #[arg(long, value_name = "POLICY", value_enum, default_value_t = ResumeArg::Safe, require_equals = false)]
    pub resume: ResumeArg,
    /// `require`: explicit TLS (AUTH TLS) on an ftp:// URL, like `-o tls=require`.
    #[arg(long, value_name = "MODE", value_parser = ["require"])]
    pub tls: Option<String>,
    /// Also trust the CA certificates in FILE (PEM), besides the system's
    /// roots (ftpes://, ftps://, https://).
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Trust exactly the server certificate with this SHA-256 (hex of its DER),
    /// e.g. a NAS's self-signed one.
    #[arg(long, value_name = "HEX", conflicts_with = "ca_file")]
    pub pin_sha256: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ResumeArg {
    Safe,
    TrustSize,
}

/// Which mount: MOUNTPOINT, URL or --spool DIR.
#[derive(clap::Args, Debug, Clone)]
pub struct Target {
    /// The spool directory of the mount (instead of MOUNTPOINT).
    #[arg(long, value_name = "DIR")]
    pub spool: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// The mount point, or the mount URL (its default spool is inspected).
    #[arg(value_name = "MOUNTPOINT|URL", conflicts_with = "spool")]
    pub url: Option<String>,
    #[command(flatten)]
    pub target: Target,
    /// Print the report as one JSON object (see keyfs(1)).
    #[arg(long, conflicts_with = "watch")]
    pub json: bool,
    /// Redraw live progress bars until nothing is pending.
    #[arg(long)]
    pub watch: bool,
}

/// Which files of which mount: `MOUNTPOINT [PATH...]` or `--spool DIR [PATH...]`.
#[derive(clap::Args, Debug)]
pub struct MountFiles {
    /// The mount point (or --spool DIR).
    #[arg(value_name = "MOUNTPOINT", required_unless_present = "spool")]
    pub mountpoint: Option<PathBuf>,
    /// Files in the mount (default: all of them, see below).
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub target: Target,
}

#[derive(clap::Args, Debug)]
pub struct WaitArgs {
    #[command(flatten)]
    pub files: MountFiles,
    /// Give up after SECS seconds (exit 2).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
}

#[derive(clap::Args, Debug)]
pub struct RetryArgs {
    #[command(flatten)]
    pub files: MountFiles,
}

#[derive(clap::Args, Debug)]
pub struct UmountArgs {
    pub mountpoint: PathBuf,
    /// First wait until every pending file is uploaded and verified.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after SECS seconds (exit 2, still mounted).
    #[arg(long, value_name = "SECS", requires = "wait")]
    pub timeout: Option<f64>,
}

/// A command's failure: the one-line message and the exit code.
#[derive(Debug)]
pub struct Failure {
    pub msg: String,
    pub code: i32,
}

impl From<String> for Failure {
    fn from(msg: String) -> Self {
        Failure { msg, code: 1 }
    }
}

/// The mount helper form: `keyfs SOURCE MOUNTPOINT [-o OPTS]...` (what
/// mount.fuse3 runs for type `fuse.keyfs`) is `keyfs mount SOURCE ...`.
pub fn helper_argv(mut argv: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let is_url = argv
        .get(1)
        .and_then(|a| a.to_str())
        .is_some_and(|a| a.contains("://"));
    if is_url {
        argv.insert(1, "mount".into());
    }
    argv
}

/// Runs the command; the error is the one-line message for stderr.
pub fn run(cli: Cli) -> Result<(), Failure> {
    match cli.cmd {
        Command::Mount(args) => Ok(mount::run(args)?),
        Command::Status(args) => Ok(status::run(args)?),
        Command::Wait(args) => wait::run(args),
        Command::Umount(args) => umount::run(args),
        Command::Retry(args) => retry::run(args),
    }
}

/// The spool of a mount named by MOUNTPOINT or URL, or given as --spool.
pub fn resolve_spool(target: Option<&str>, spool: Option<&PathBuf>) -> Result<PathBuf, String> {
    match (spool, target) {
        (Some(s), _) => Ok(s.clone()),
        (None, Some(t)) if t.contains("://") => {
            let u = url::parse(t)?;
            let netrc = password::read_netrc();
            let user = u
                .user
                .clone()
                .or_else(|| {
                    netrc
                        .as_deref()
                        .and_then(|t| netrc::lookup(t, &u.host, None))
                        .and_then(|e| e.login)
                })
                .unwrap_or_else(|| "anonymous".into());
            spooldir::default_spool(&u, &user)
        }
        (None, Some(t)) => {
            let mp = std::fs::canonicalize(t).map_err(|e| format!("{t}: {e}"))?;
            registry::find(&mp)
                .map(|e| e.spool)
                .ok_or_else(|| format!("no keyfs daemon is mounted on {}", mp.display()))
        }
        (None, None) => Err("name the mount: MOUNTPOINT, URL or --spool DIR".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mount_line() {
        let c = Cli::try_parse_from([
            "keyfs",
            "mount",
            "ftp://u@h:21/d",
            "/mnt",
            "--spool",
            "/s",
            "--bwlimit",
            "8M",
            "--workers",
            "3",
            "-f",
            "-o",
            "ro,allow_other",
            "--resume=trust-size",
        ])
        .unwrap();
        let Command::Mount(m) = c.cmd else { panic!() };
        assert_eq!(m.bwlimit, Some(8 << 20));
        assert_eq!(m.workers, 3);
        assert!(m.foreground);
        assert_eq!(m.resume, ResumeArg::TrustSize);
        assert_eq!(m.options, vec!["ro,allow_other".to_string()]);
        assert!(Cli::try_parse_from(["keyfs", "mount", "u", "/m", "--bwlimit", "8X"]).is_err());
        assert!(Cli::try_parse_from(["keyfs", "mount", "u", "/m", "--workers", "0"]).is_err());
        let c = Cli::try_parse_from(["keyfs", "status", "--spool", "/s"]).unwrap();
        assert!(matches!(c.cmd, Command::Status(_)));
        let c = Cli::try_parse_from(["keyfs", "wait", "/m", "a", "b", "--timeout", "3"]).unwrap();
        let Command::Wait(w) = c.cmd else { panic!() };
        assert_eq!(w.files.paths.len(), 2);
        assert!(Cli::try_parse_from(["keyfs", "umount", "/m", "--timeout", "3"]).is_err());
        assert!(Cli::try_parse_from(["keyfs", "umount", "/m", "--wait", "--timeout", "3"]).is_ok());
    }

    #[test]
    fn mount_helper_form() {
        let argv = |v: &[&str]| v.iter().map(std::ffi::OsString::from).collect::<Vec<_>>();
        let a = helper_argv(argv(&[
            "keyfs",
            "ftp://u@nas/share",
            "/mnt/nas",
            "-o",
            "rw,_netdev",
        ]));
        let c = Cli::try_parse_from(a).unwrap();
        let Command::Mount(m) = c.cmd else { panic!() };
        assert_eq!(m.url, "ftp://u@nas/share");
        let a = helper_argv(argv(&["keyfs", "status", "/m"]));
        assert_eq!(a.len(), 3);
    }
}
