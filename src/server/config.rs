//! Server configuration: what the `keyftpd` CLI sets, with defaults that
//! suit a small home server. Tests shorten the delays.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::auth::Accounts;
use super::gate::GateLimits;

/// Everything a [`super::Server`] needs.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The directory served as `/`.
    pub root: PathBuf,
    /// Control connection address (`127.0.0.1:0` for an ephemeral port).
    pub listen: SocketAddr,
    /// Who may log in.
    pub accounts: Accounts,
    /// Passive ports `lo..=hi`; None for any ephemeral port.
    pub passive_ports: Option<(u16, u16)>,
    /// At most this many logged-in sessions at once; more get 421.
    pub max_sessions: usize,
    /// At most this many connections waiting to log in; a newer one
    /// closes the oldest idle one of the address holding the most.
    pub max_pending: usize,
    /// At most this many connections waiting to log in per address
    /// (IPv4, or IPv6 /64); a newer one closes that address's oldest.
    pub max_pending_per_ip: usize,
    /// Close a control connection idle this long (421).
    pub idle_timeout: Duration,
    /// Close a connection not logged in this long after it connected (421),
    /// so clients that never log in cannot hold session slots.
    pub login_timeout: Duration,
    /// Failed-login delays, bans and the overall rate (see [`super::gate`]).
    pub gate: GateLimits,
    /// How long to wait for a passive data connection, and for a stalled one.
    pub data_timeout: Duration,
    /// fsync each uploaded file before recording its state.
    pub fsync_files: bool,
    /// Certificate and key for FTPS (see [`super::tls::load_server_config`]).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Refuse USER before AUTH TLS (530) and data under PROT C (521).
    pub require_tls: bool,
    /// Implicit FTPS: TLS from the first byte on this address.
    pub implicit_tls_listen: Option<SocketAddr>,
}

impl ServerConfig {
    /// A config with defaults and no accounts.
    pub fn new(root: PathBuf, listen: SocketAddr) -> ServerConfig {
        ServerConfig {
            root,
            listen,
            accounts: Accounts::default(),
            passive_ports: None,
            max_sessions: 64,
            max_pending: 256,
            max_pending_per_ip: 16,
            idle_timeout: Duration::from_secs(300),
            login_timeout: Duration::from_secs(10),
            gate: GateLimits::default(),
            data_timeout: Duration::from_secs(60),
            fsync_files: false,
            tls: None,
            require_tls: false,
            implicit_tls_listen: None,
        }
    }

    /// Sets a single account with a plain-text password.
    pub fn with_user(mut self, name: &str, password: &str) -> ServerConfig {
        self.accounts = Accounts::single(name, password);
        self
    }
}
