//! keyftpd: an FTP server with the KEY checksum extension (see `man/keyftp.7`).
//!
//! Thread per session over `std::net`, no async. Layout:
//! - [`config`]: [`ServerConfig`], everything the CLI can set.
//! - [`auth`]: accounts and password hashes.
//! - [`listener`]: the accept loop, the session cap, shutdown.
//! - [`session`]: one control connection's state machine and command dispatch;
//!   commands by group in [`cmd_basic`], [`cmd_fs`], [`cmd_transfer`], [`cmd_key`].
//! - [`paths`]: virtual paths, resolved on strings.
//! - [`store`]: the protocol-neutral store: files confined beneath the
//!   root by the kernel, per-file key metadata in extended attributes,
//!   the upload lifecycle and its lock; `store_reply` maps it to FTP.
//! - [`data`]: passive data connections and byte pumps.
//! - [`listing`]: MLSD/LIST/NLST formatting.
//! - [`lineio`]: the bounded control-line reader.
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
mod cmd_basic;
mod cmd_fs;
mod cmd_key;
mod cmd_list;
mod cmd_transfer;
pub mod config;
pub mod data;
pub mod http;
pub mod lineio;
pub mod listener;
pub mod listing;
pub mod paths;
mod session;
pub mod store;
mod store_reply;

pub use auth::{hash_password, Accounts};
pub use config::ServerConfig;
pub use listener::{Server, ServerHandle};
