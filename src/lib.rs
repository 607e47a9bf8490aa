//! keyfs: mount an FTP or HTTP (WebDAV) directory; writes are spooled
//! locally with a running CRC-32 and uploaded in the background, resuming
//! only when the server's checksum proves the partial is the same file
//! (KEY over FTP, CN102420875A; the resumable POST over HTTP,
//! CN101174954A).
//!
//! # Layout
//! - [`key`]: the KEY/XCRC wire forms, pure, shared by client and server.
//! - [`transport`]: the seam: one connection type ([`transport::Conn`]) that `fs` and
//!   `upload` use for the namespace, ranged reads and the upload primitives, whatever
//!   the protocol; one error type ([`transport::RemoteError`]).
//! - [`remote`]: the FTP transport (suppaftp): namespace ops, RETR at an offset, KEY/XCRC,
//!   the upload primitives (probe, replace, send from an offset, verify).
//! - [`http`]: the HTTP transport: WebDAV namespace, GET with Range; uploads by
//!   keyftpd's state query and multipart POST from an offset (`?crc` checks a
//!   partial), or by whole PUT to a stock WebDAV server.
//! - [`spool`]: spooled data files with a running CRC, and the upload journal.
//! - [`upload`]: the background uploader; [`upload::resume`] is the pure decision.
//! - [`fs`]: the filesystem core and its thin fuser adapter.
//! - [`server`]: keyftpd: the FTP face with the KEY extension and the HTTP face (the
//!   resumable POST, tus, WebDAV, the upload page) over one store.
//! - [`faultproxy`]: a fault-injecting FTP or plain TCP proxy (throttle, cut after N
//!   bytes, outages) for tests and `ftpfault`.

pub mod faultproxy;
pub mod fs;
pub mod http;
pub mod key;
pub mod remote;
pub mod server;
pub mod spool;
pub mod transport;
pub mod upload;
