//! `ftpfault`: a fault-injecting FTP proxy on loopback for shell tests.
//!
//! Prints `listening on ADDR` once it accepts connections, keeps a stats file
//! up to date (`--stats`), prints a summary on stderr when it exits, and
//! exits by itself after `--max-seconds`, on SIGINT or on SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use keyfs::faultproxy::{parse_size, FaultProxy, Faults, Stats};

#[derive(Parser, Debug)]
#[command(
    name = "ftpfault",
    version,
    about = "Fault-injecting FTP proxy (loopback): counts, throttles and cuts data connections"
)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The FTP server to forward to.
    #[arg(long, value_name = "ADDR:PORT")]
    upstream: SocketAddr,
    /// Relay every connection as a plain TCP stream (HTTP), counted, cut
    /// and throttled as a data connection.
    #[arg(long)]
    tcp: bool,
    /// Cut a data connection (TCP reset to the client) after this many upload
    /// bytes went through it (K/M/G suffixes allowed).
    #[arg(long, value_name = "N", value_parser = parse_size)]
    cut_after: Option<u64>,
    /// Number of cuts to make in total (0 = cut every upload that gets there).
    #[arg(long, value_name = "K", default_value_t = 1)]
    cuts: u64,
    /// Also reset the session's control connection when cutting.
    #[arg(long)]
    cut_control: bool,
    /// Reset the server's side of a cut too (default: the server receives
    /// exactly N bytes, then end of stream, as when a client dies).
    #[arg(long)]
    reset_server: bool,
    /// Limit data connections to this many bytes per second, per direction.
    #[arg(long, value_name = "BYTES_PER_SEC", value_parser = parse_size)]
    throttle: Option<u64>,
    /// Invert byte N (from 0) of the upload data of every data connection.
    #[arg(long, value_name = "N", value_parser = parse_size)]
    flip_byte: Option<u64>,
    /// Answer this command (e.g. XCRC) with `550 <CMD>: Operation not
    /// permitted` instead of passing it on (repeatable).
    #[arg(long, value_name = "CMD")]
    refuse: Vec<String>,
    /// Drop this feature (e.g. KEY) from the server's FEAT reply (repeatable).
    #[arg(long, value_name = "NAME")]
    hide_feat: Vec<String>,
    /// A link outage: after N upload bytes, nothing crosses for
    /// --hold-seconds (control and data, both ways; new connections hang).
    #[arg(long, value_name = "N", value_parser = parse_size, requires = "hold_seconds")]
    hold_after: Option<u64>,
    /// How long the outage of --hold-after lasts.
    #[arg(long, value_name = "S")]
    hold_seconds: Option<f64>,
    /// The outage also loses the connections open when it began (a
    /// middlebox that lost its state): they carry nothing more, not even
    /// a close, until the proxy exits.
    #[arg(long, requires = "hold_after")]
    hold_forget: bool,
    /// Exit by itself after this many seconds.
    #[arg(long, value_name = "S", default_value_t = 300)]
    max_seconds: u64,
    /// Keep this file updated with `up_data=N down_data=N ... cuts=N`.
    #[arg(long, value_name = "FILE")]
    stats: Option<PathBuf>,
}

static SIGNALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    SIGNALLED.store(true, Ordering::SeqCst);
}

fn write_stats(path: &Path, s: &Stats) {
    let tmp = path.with_extension("tmp");
    let res = std::fs::write(&tmp, format!("{}\n", s.to_line()))
        .and_then(|_| std::fs::rename(&tmp, path));
    if let Err(e) = res {
        eprintln!("ftpfault: cannot write stats to {}: {e}", path.display());
    }
}

fn main() -> ExitCode {
    env_logger::init();
    let args = Args::parse();
    let faults = Faults {
        cut_after: args.cut_after,
        cuts: args.cuts,
        cut_control: args.cut_control,
        reset_server: args.reset_server,
        throttle: args.throttle,
        flip_byte: args.flip_byte,
        refuse: args.refuse,
        hide_feat: args.hide_feat,
        hold_after: args.hold_after,
        hold_for: Duration::from_secs_f64(
            args.hold_seconds
                .filter(|s| s.is_finite())
                .unwrap_or(0.0)
                .clamp(0.0, 3600.0),
        ),
        hold_forget: args.hold_forget,
    };
    // SAFETY: the handler only stores to an atomic, which is signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let start = if args.tcp {
        FaultProxy::start_tcp
    } else {
        FaultProxy::start
    };
    let mut proxy = match start(args.listen, args.upstream, faults) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("ftpfault: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    println!("listening on {}", proxy.addr());
    let _ = std::io::stdout().flush();

    let deadline = Instant::now() + Duration::from_secs(args.max_seconds);
    let mut last: Option<Stats> = None;
    loop {
        let s = proxy.stats();
        if let Some(p) = &args.stats {
            if last != Some(s) {
                write_stats(p, &s);
                last = Some(s);
            }
        }
        if SIGNALLED.load(Ordering::SeqCst) {
            break;
        }
        if Instant::now() >= deadline {
            eprintln!("ftpfault: --max-seconds {} reached", args.max_seconds);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    proxy.shutdown();
    let s = proxy.stats();
    if let Some(p) = &args.stats {
        write_stats(p, &s);
    }
    eprintln!("ftpfault: {}", s.to_line());
    ExitCode::SUCCESS
}
