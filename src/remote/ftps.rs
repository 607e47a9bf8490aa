//! FTPS for suppaftp: the TLS connector of control and data connections
//! and their stream, over the rustls client of [`crate::transport::tls`].

use rustls::pki_types::ServerName;

use crate::transport::tls::{untrusted, TlsClient};

/// Connects TLS for suppaftp, control and data alike: sets the socket
/// timeouts first and runs the handshake at once, so a certificate that is
/// not trusted is reported as such (a permanent error), not as a broken
/// connection.
#[derive(Debug)]
pub(crate) struct Connector {
    pub client: TlsClient,
    pub timeout: std::time::Duration,
}

/// A TLS stream of a control or data connection. Dropping it sends no
/// close_notify: only [`TlsData::close_notify`] does, so a transfer
/// abandoned by a reset cannot look complete to the server.
#[derive(Debug)]
pub struct TlsData {
    stream: rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>,
}

impl TlsData {
    /// Tells the server the data is complete (after the last byte of an upload).
    pub fn close_notify(&mut self) -> std::io::Result<()> {
        use std::io::Write;
        self.stream.flush()?;
        self.stream.conn.send_close_notify();
        while self.stream.conn.wants_write() {
            self.stream.conn.write_tls(&mut self.stream.sock)?;
        }
        Ok(())
    }
}

impl suppaftp::TlsStream for TlsData {
    type InnerStream = rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>;

    fn tcp_stream(self) -> suppaftp::FtpResult<std::net::TcpStream> {
        self.stream
            .sock
            .try_clone()
            .map_err(suppaftp::FtpError::ConnectionError)
    }

    fn get_ref(&self) -> &std::net::TcpStream {
        &self.stream.sock
    }

    fn mut_ref(&mut self) -> &mut Self::InnerStream {
        &mut self.stream
    }
}

impl suppaftp::TlsConnector for Connector {
    type Stream = TlsData;

    fn connect(&self, domain: &str, mut tcp: std::net::TcpStream) -> suppaftp::FtpResult<TlsData> {
        use suppaftp::FtpError;
        let cio = FtpError::ConnectionError;
        tcp.set_read_timeout(Some(self.timeout)).map_err(cio)?;
        tcp.set_write_timeout(Some(self.timeout)).map_err(cio)?;
        let name = ServerName::try_from(domain.to_string())
            .map_err(|e| FtpError::SecureError(format!("bad TLS server name {domain:?}: {e}")))?;
        let mut conn = rustls::ClientConnection::new(self.client.config.clone(), name)
            .map_err(|e| FtpError::SecureError(e.to_string()))?;
        while conn.is_handshaking() {
            if let Err(e) = conn.complete_io(&mut tcp) {
                return Err(handshake_error(domain, &self.client, e));
            }
        }
        Ok(TlsData {
            stream: rustls::StreamOwned::new(conn, tcp),
        })
    }
}

/// A certificate the client does not trust is a [`suppaftp::FtpError::SecureError`]
/// (permanent, naming the host and the reason); anything else stays a
/// connection error (a retry may work).
fn handshake_error(host: &str, client: &TlsClient, e: std::io::Error) -> suppaftp::FtpError {
    let tls = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match tls.and_then(|t| untrusted(host, &client.trust, t)) {
        Some(msg) => suppaftp::FtpError::SecureError(msg),
        None => suppaftp::FtpError::ConnectionError(e),
    }
}
