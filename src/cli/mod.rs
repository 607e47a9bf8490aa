//! The `keyfs` command line: `keyfs mount URL MOUNTPOINT ...` and
//! `keyfs status`. Parsing helpers are pure and unit-tested; [`mount`]
//! holds the daemon start-up (fork before any thread, readiness pipe).

pub mod live;
pub mod mount;
pub mod mountinfo;
pub mod netrc;
pub mod password;
pub mod rate;
pub mod readahead;
pub mod spooldir;
pub mod status;
pub mod url;

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
    /// Mount ftp://[user@]host[:port][/dir] on MOUNTPOINT.
    #[command(
        after_help = "Without -f, keyfs returns once the mount is ready and keeps running in the \
background (log: SPOOL/keyfs.log). Unmount with `fusermount3 -u MOUNTPOINT` or SIGTERM to \
the daemon; pending uploads stay in the spool and continue at the next mount of the same URL \
(or with the same --spool). The password comes from KEYFS_PASSWORD, else ~/.netrc, else \
--password-file."
    )]
    Mount(MountArgs),
    /// Show a spool's uploads (live from its running daemon, else from the journal).
    #[command(
        after_help = "While a daemon runs on the spool: bytes uploaded since the mount and, per job, \
its progress and last error. Otherwise: the pending, failed and crash-kept jobs of the journal."
    )]
    Status(StatusArgs),
}

#[derive(clap::Args, Debug)]
pub struct MountArgs {
    /// ftp://[user@]host[:port][/dir]; ftpes:// for explicit TLS (port 21), ftps:// for implicit TLS (port 990).
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
    /// Mount options, comma-separated: allow_other, allow_root, ro, noatime,
    /// auto_unmount, default_permissions, writeback (kernel writeback cache:
    /// fast small writes), fsname=NAME.
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
    /// Also trust the CA certificates in FILE (PEM), besides the system's roots.
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

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// Spool directory to inspect.
    #[arg(long, value_name = "DIR", conflicts_with = "url")]
    pub spool: Option<PathBuf>,
    /// The mount URL; its default spool is inspected.
    pub url: Option<String>,
}

/// Runs the command; the error is the one-line message for stderr.
pub fn run(cli: Cli) -> Result<(), String> {
    match cli.cmd {
        Command::Mount(args) => mount::run(args),
        Command::Status(args) => status::run(args),
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
    }
}
