//! keyfs: mount an FTP directory; writes are spooled locally with a running
//! CRC-32 and uploaded in the background, resuming only when the server's
//! checksum proves the partial is the same file (patent CN102420875A).
//!
//! # Layout
//! - [`key`]: the KEY/XCRC wire forms, pure, shared by client and server.
//! - [`transport`]: the seam: one connection type ([`transport::Conn`]) that `fs` and
//!   `upload` use for the namespace, ranged reads and the upload primitives, whatever
//!   the protocol; one error type ([`transport::RemoteError`]).
//! - [`remote`]: the FTP transport (suppaftp): namespace ops, RETR at an offset, KEY/XCRC,
//!   the upload primitives (probe, replace, send from an offset, verify).
//! - [`http`]: the HTTP transport: WebDAV namespace, GET with Range, whole-PUT uploads.
//! - [`spool`]: spooled data files with a running CRC, and the upload journal.
//! - [`upload`]: the background uploader; [`upload::resume`] is the pure decision.
//! - [`fs`]: the filesystem core and its thin fuser adapter.
//! - [`server`]: keyftpd, the FTP server with the KEY extension.
//! - [`faultproxy`]: a fault-injecting FTP proxy (throttle, cut after N bytes) for tests and `ftpfault`.

pub mod faultproxy;
pub mod fs;
pub mod http;
pub mod key;
pub mod remote;
pub mod server;
pub mod spool;
pub mod transport;
pub mod upload;
