//! Server configuration: what the `keyftpd` CLI sets, with defaults that
//! suit a small home server. Tests shorten the delays.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::auth::Accounts;

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
    /// At most this many sessions at once; more get 421.
    pub max_sessions: usize,
    /// Close a control connection idle this long (421).
    pub idle_timeout: Duration,
    /// Close a connection not logged in this long after it connected (421),
    /// so clients that never log in cannot hold session slots.
    pub login_timeout: Duration,
    /// Delay before answering a wrong password (slows guessing).
    pub auth_fail_delay: Duration,
    /// How long to wait for a passive data connection, and for a stalled one.
    pub data_timeout: Duration,
    /// fsync each uploaded file before recording its state.
    pub fsync_files: bool,
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
            idle_timeout: Duration::from_secs(300),
            login_timeout: Duration::from_secs(30),
            auth_fail_delay: Duration::from_secs(1),
            data_timeout: Duration::from_secs(60),
            fsync_files: false,
        }
    }

    /// Sets a single account with a plain-text password.
    pub fn with_user(mut self, name: &str, password: &str) -> ServerConfig {
        self.accounts = Accounts::single(name, password);
        self
    }
}
