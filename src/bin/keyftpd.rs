//! keyftpd: the FTP server with the KEY checksum extension. A thin CLI over
//! `keyfs::server`; see `man keyftpd` (8) and `man keyftp` (7).

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{Parser, Subcommand};
use keyfs::server::http::{HttpConfig, HttpServer};
use keyfs::server::{hash_password, Accounts, Server, ServerConfig};

#[derive(Parser, Debug)]
#[command(
    name = "keyftpd",
    version,
    about = "FTP server with the KEY checksum extension",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// Directory served as / (required).
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// FTP control address, e.g. 0.0.0.0:21 or 127.0.0.1:0 [default:
    /// 127.0.0.1:2121, or none when only --http or --https is given].
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<SocketAddr>,
    /// Also serve HTTP here (the seed's resumable POST, tus, WebDAV, a
    /// browser page); without --listen, HTTP only.
    #[arg(long, value_name = "ADDR:PORT")]
    http: Option<SocketAddr>,
    /// Also serve the HTTP face over TLS here (HTTPS, with the --tls-cert
    /// certificate), beside or instead of --http; without --listen, no FTP.
    #[arg(long, value_name = "ADDR:PORT", requires = "tls_cert")]
    https: Option<SocketAddr>,
    /// HTTP and HTTPS: seconds allowed for a request's headers, and for a body that
    /// sends nothing (then 408, every byte received kept).
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    http_timeout: u64,
    /// The single account (password from KEYFTPD_PASSWORD).
    #[arg(long, value_name = "NAME", conflicts_with = "users")]
    user: Option<String>,
    /// Accounts file: one `name:$6$...` line per account (see `keyftpd hash-password`).
    #[arg(long, value_name = "FILE")]
    users: Option<PathBuf>,
    /// Also allow `anonymous`/`ftp` logins (read-only).
    #[arg(long)]
    anonymous: bool,
    /// Passive port range, A-B.
    #[arg(long, value_name = "A-B", value_parser = parse_range)]
    passive_ports: Option<(u16, u16)>,
    /// Maximum simultaneous logged-in sessions.
    #[arg(long, value_name = "N", default_value_t = 64)]
    max_sessions: usize,
    /// Maximum connections waiting to log in (a newer one closes an older idle one).
    #[arg(long, value_name = "N", default_value_t = 256)]
    max_pending: usize,
    /// Maximum connections waiting to log in from one address (IPv4, or IPv6 /64).
    #[arg(long, value_name = "N", default_value_t = 16)]
    max_pending_per_ip: usize,
    /// Close control connections idle this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    idle_timeout: u64,
    /// Close connections that have not logged in this many seconds after
    /// connecting (also the limit on an HTTPS connection's TLS handshake).
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    login_timeout: u64,
    /// Milliseconds an address waits after its first failed login (doubling with each further one).
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    auth_delay_ms: u64,
    /// Ban an address after this many failed logins (0: never).
    #[arg(long, value_name = "N", default_value_t = 10)]
    ban_after: u32,
    /// How long a ban lasts.
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    ban_secs: u64,
    /// Password checks per second over all addresses that have failed (0: no limit).
    #[arg(long, value_name = "N", default_value_t = 10)]
    login_rate: u32,
    /// fsync every uploaded file before recording its state.
    #[arg(long)]
    fsync: bool,
    /// TLS certificate chain (PEM): enables FTPS (AUTH TLS) and --https.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Refuse logins before AUTH TLS (530) and unprotected transfers (521);
    /// plain HTTP (--http) then refuses credentials (403: use HTTPS).
    #[arg(long, requires = "tls_cert")]
    require_tls: bool,
    /// Also serve implicit FTPS (TLS from the first byte) on this address, e.g. 0.0.0.0:990.
    #[arg(long, value_name = "ADDR:PORT", requires = "tls_cert")]
    implicit_tls_listen: Option<SocketAddr>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Read a password on stdin and print a users-file line (`NAME:hash`, or the hash alone).
    HashPassword {
        /// Account name to put before the hash.
        name: Option<String>,
    },
    /// Write a self-signed TLS certificate and key for a quick start.
    GenCert {
        /// The host name (or IP address) clients connect to.
        #[arg(long, value_name = "NAME")]
        host: String,
        /// Where to write the certificate.
        #[arg(long, value_name = "FILE", default_value = "keyftpd-cert.pem")]
        out_cert: PathBuf,
        /// Where to write the private key (mode 0600).
        #[arg(long, value_name = "FILE", default_value = "keyftpd-key.pem")]
        out_key: PathBuf,
    },
}

/// Writes a self-signed pair; the key is readable by its owner only.
fn gen_cert(host: &str, cert: &Path, key: &Path) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let (c, k) = keyfs::server::tls::self_signed(host)?;
    std::fs::write(cert, c).map_err(|e| format!("{}: {e}", cert.display()))?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(key)
        .map_err(|e| format!("{}: {e}", key.display()))?;
    f.write_all(k.as_bytes())
        .map_err(|e| format!("{}: {e}", key.display()))?;
    println!("wrote {} and {} for {host}", cert.display(), key.display());
    Ok(())
}

fn parse_range(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s.split_once('-').ok_or("expected A-B")?;
    let a: u16 = a.trim().parse().map_err(|_| "bad port")?;
    let b: u16 = b.trim().parse().map_err(|_| "bad port")?;
    if a == 0 || a > b {
        return Err("expected 1 <= A <= B".into());
    }
    Ok((a, b))
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn install_signals() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGTERM, handler);
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// Raises the soft open-file limit to the hard one: every connection,
/// logged in or not, takes a descriptor.
fn raise_nofile() {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: get/set this process's own limit with a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

fn serve(cli: Cli) -> Result<(), String> {
    let root = cli.root.ok_or("--root DIR is required")?;
    let accounts = match (&cli.user, &cli.users) {
        (Some(u), None) => {
            let pw = std::env::var("KEYFTPD_PASSWORD")
                .map_err(|_| "--user needs the password in KEYFTPD_PASSWORD")?;
            Accounts::single(u, &pw)
        }
        (None, Some(f)) => Accounts::from_file(f)?,
        (None, None) if cli.anonymous => Accounts::default(),
        _ => return Err("give --user NAME or --users FILE (or --anonymous)".into()),
    }
    .with_anonymous(cli.anonymous);
    let web = cli.http.is_some() || cli.https.is_some();
    let ftp_listen = match (cli.listen, web) {
        (Some(l), _) => Some(l),
        (None, true) => None,
        (None, false) => Some(SocketAddr::from(([127, 0, 0, 1], 2121))),
    };
    let unbound = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut cfg = ServerConfig::new(root, ftp_listen.unwrap_or(unbound));
    cfg.accounts = accounts;
    cfg.passive_ports = cli.passive_ports;
    cfg.max_sessions = cli.max_sessions.max(1);
    cfg.idle_timeout = Duration::from_secs(cli.idle_timeout.max(1));
    cfg.login_timeout = Duration::from_secs(cli.login_timeout.max(1));
    cfg.max_pending = cli.max_pending.max(1);
    cfg.max_pending_per_ip = cli.max_pending_per_ip.max(1);
    cfg.gate.fail_delay = Duration::from_millis(cli.auth_delay_ms);
    cfg.gate.ban_after = cli.ban_after;
    cfg.gate.ban_time = Duration::from_secs(cli.ban_secs);
    cfg.gate.global_rate = cli.login_rate;
    cfg.fsync_files = cli.fsync;
    if let (Some(cert), Some(key)) = (&cli.tls_cert, &cli.tls_key) {
        cfg.tls = Some(keyfs::server::tls::load_server_config(cert, key)?);
    }
    cfg.require_tls = cli.require_tls;
    cfg.implicit_tls_listen = cli.implicit_tls_listen;
    let http_cfg = web.then(|| {
        let mut h = HttpConfig::new(unbound);
        h.listen = cli.http;
        h.https = cli.https;
        h.tls = cfg.tls.clone();
        h.require_tls = cli.require_tls;
        h.handshake_timeout = cfg.login_timeout;
        h.timeout = Duration::from_secs(cli.http_timeout.max(1));
        h.max_conns = cfg.max_sessions;
        h
    });
    let root_shown = cfg.root.display().to_string();
    install_signals();
    let mut out = std::io::stdout();
    let Some(listen) = ftp_listen else {
        // HTTP only.
        let Some(h) = http_cfg else {
            return Err("nothing to serve".into());
        };
        let shown = web_addrs(&h);
        let http = HttpServer::open(cfg, h)
            .map_err(|e| format!("cannot serve {root_shown} over {shown}: {e}"))?;
        let stopper = http.stopper();
        on_signal_stop(move || stopper.stop());
        print_web_addrs(&mut out, http.local_addr(), http.https_addr());
        let _ = out.flush();
        log::info!("serving {root_shown} over {}", web_addrs_of(&http));
        return http.run().map_err(|e| e.to_string());
    };
    let server =
        Server::bind(cfg).map_err(|e| format!("cannot serve {root_shown} on {listen}: {e}"))?;
    raise_nofile();
    let http = match http_cfg {
        Some(h) => {
            let shown = web_addrs(&h);
            let http =
                HttpServer::beside(&server, h).map_err(|e| format!("cannot serve {shown}: {e}"))?;
            Some(http)
        }
        None => None,
    };
    let stopper = server.stopper();
    on_signal_stop(move || stopper.stop());
    let _ = writeln!(out, "listening on {}", server.local_addr());
    if let Some(a) = server.implicit_addr() {
        let _ = writeln!(out, "implicit TLS on {a}");
    }
    if let Some(h) = &http {
        print_web_addrs(&mut out, h.local_addr(), h.https_addr());
    }
    let _ = out.flush();
    log::info!("serving {root_shown} on {}", server.local_addr());
    let http = match http {
        Some(h) => Some(h.spawn().map_err(|e| format!("cannot start HTTP: {e}"))?),
        None => None,
    };
    let res = server.run().map_err(|e| e.to_string());
    if let Some(h) = http {
        h.join();
    }
    res
}

/// The HTTP and HTTPS addresses asked for, for messages.
fn web_addrs(h: &HttpConfig) -> String {
    let mut v = Vec::new();
    if let Some(a) = h.listen {
        v.push(format!("HTTP on {a}"));
    }
    if let Some(a) = h.https {
        v.push(format!("HTTPS on {a}"));
    }
    v.join(" and ")
}

fn web_addrs_of(h: &HttpServer) -> String {
    let mut v = Vec::new();
    if let Some(a) = h.local_addr() {
        v.push(format!("HTTP on {a}"));
    }
    if let Some(a) = h.https_addr() {
        v.push(format!("HTTPS on {a}"));
    }
    v.join(" and ")
}

/// The bound addresses on stdout, one line each (scripts read them).
fn print_web_addrs(out: &mut impl Write, http: Option<SocketAddr>, https: Option<SocketAddr>) {
    if let Some(a) = http {
        let _ = writeln!(out, "http listening on {a}");
    }
    if let Some(a) = https {
        let _ = writeln!(out, "https listening on {a}");
    }
}

/// Calls `stop` once a SIGTERM/SIGINT has arrived.
fn on_signal_stop(stop: impl Fn() + Send + 'static) {
    std::thread::spawn(move || loop {
        if STOP.load(Ordering::SeqCst) {
            log::info!("signal received, stopping");
            stop();
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    });
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    let cli = Cli::parse();
    let res = match cli.cmd {
        Some(Cmd::HashPassword { ref name }) => {
            let mut line = String::new();
            let _ = std::io::stdin().lock().read_line(&mut line);
            let pw = line.trim_end_matches(['\r', '\n']);
            if pw.is_empty() {
                Err("empty password on stdin".to_string())
            } else {
                hash_password(pw)
                    .map(|h| match name {
                        Some(n) => println!("{n}:{h}"),
                        None => println!("{h}"),
                    })
                    .map_err(|e| e.to_string())
            }
        }
        Some(Cmd::GenCert {
            ref host,
            ref out_cert,
            ref out_key,
        }) => gen_cert(host, out_cert, out_key),
        None => serve(cli),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keyftpd: {e}");
            ExitCode::FAILURE
        }
    }
}
