//! keyftpd: an FTP server with the KEY checksum extension (see `man/keyftp.7`).
//!
//! A thread per logged-in session over `std::net`, no async; connections
//! not yet logged in share one event-loop thread (the lobby). Layout:
//! - [`config`]: [`ServerConfig`], everything the CLI can set.
//! - [`auth`]: accounts and password hashes.
//! - [`gate`]: [`LoginGate`], failed-login delays and bans by address, shared by every face.
//! - [`listener`]: the listening socket, session threads, shutdown.
//! - [`lobby`]: connections not yet logged in, all on one thread.
//! - [`session`]: one control connection's state machine and command dispatch;
//!   commands by group in `cmd_basic`, `cmd_fs`, `cmd_transfer`, `cmd_active`
//!   (PORT/EPRT), `cmd_key`, `cmd_hash`.
//! - [`paths`]: virtual paths, resolved on strings.
//! - [`store`]: the protocol-neutral store: files confined beneath the
//!   root by the kernel, per-file key metadata in extended attributes,
//!   the upload lifecycle and its lock; `store_reply` maps it to FTP.
//! - [`data`]: passive and active data connections and byte pumps.
//! - [`http`]: the HTTP face (the seed's resumable POST, tus, WebDAV, a
//!   browser page) on the same store and login gate.
//! - [`listing`]: MLSD/LIST/NLST formatting.
//! - [`lineio`]: the bounded control-line reader.
//! - [`tls`]: certificates, TLS streams, session-bound data connections;
//!   `tls_login` logs in connections that sent AUTH TLS (or came to the
//!   implicit-TLS port), each on its own thread.
//!
//! In-process use (tests of other modules):
//! ```no_run
//! # fn main() -> std::io::Result<()> {
//! use keyfs::server::{Server, ServerConfig};
//! let cfg = ServerConfig::new("/srv/ftp".into(), "127.0.0.1:0".parse().unwrap())
//!     .with_user("u", "p");
//! let server = Server::bind(cfg)?;
//! let addr = server.local_addr();
//! let handle = server.spawn();
//! // ... connect to addr ...
//! handle.shutdown();
//! # Ok(()) }
//! ```

pub mod auth;
mod cmd_active;
mod cmd_basic;
mod cmd_fs;
mod cmd_hash;
mod cmd_key;
mod cmd_list;
mod cmd_transfer;
pub mod config;
pub mod data;
pub mod gate;
pub mod http;
pub mod lineio;
pub mod listener;
pub mod listing;
mod lobby;
pub mod paths;
mod session;
pub mod store;
mod store_reply;
pub mod tls;
mod tls_login;

pub use auth::{hash_password, Accounts};
pub use config::ServerConfig;
pub use gate::{GateLimits, Login, LoginGate, Refusal, Ticket};
pub use listener::{Server, ServerHandle};
