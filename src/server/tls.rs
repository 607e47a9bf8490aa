//! TLS for keyftpd (rustls with the ring provider, no OpenSSL).
//!
//! - [`load_server_config`] reads a PEM certificate chain and key into a
//!   rustls server config with session resumption (a session cache and
//!   stateless tickets), shared by every face that speaks TLS.
//! - [`self_signed`] makes a certificate pair for a quick start.
//! - [`Stream`] is a control or data connection, plain or TLS;
//!   [`Ctrl`] shares one between a session's line reader and its replies.
//! - [`accept`] runs a server handshake with a deadline.
//!
//! Data connections under `PROT P` must resume the control connection's
//! own session: every control connection embeds a random token in the
//! tickets it issues ([`new_token`]), and a data connection whose
//! handshake is not a resumption carrying that token is refused. A
//! process that merely reaches the passive port first cannot take or
//! inject a transfer.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustls::server::{ServerConnection, ServerSessionMemoryCache};
use rustls::{HandshakeKind, StreamOwned};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A TLS server connection over TCP.
pub type TlsStream = StreamOwned<ServerConnection, TcpStream>;

/// Session-cache entries kept for TLS 1.2 session IDs.
const SESSION_CACHE: usize = 4096;

/// Loads a PEM certificate chain and private key into a server config
/// that resumes sessions (needed by FTPS data connections).
pub fn load_server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate found", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("TLS certificate: {e}"))?;
    cfg.session_storage = Arc::new(Watched(ServerSessionMemoryCache::new(SESSION_CACHE)));
    // "ftp" only: a browser sent to an FTPS port (offering http/1.1 or h2)
    // fails the handshake instead of having its request read as FTP
    // commands (the ALPACA cross-protocol attack). Clients that offer no
    // ALPN, as most FTP clients do, are not affected; the HTTPS face sets
    // its own.
    cfg.alpn_protocols = vec![b"ftp".to_vec()];
    // Stateless tickets may be used many times: each data connection
    // resumes the control connection's session afresh.
    let ticketer = rustls::crypto::ring::Ticketer::new().map_err(|e| format!("TLS: {e}"))?;
    cfg.ticketer = Arc::new(Watched(ticketer));
    Ok(Arc::new(cfg))
}

/// The config for data connections: the control config (same session
/// cache and ticket keys, so resumption works). TLS 1.3 tickets go only on
/// connections the client reads to their end (downloads, listings): a
/// client that uploads never reads its data connection, and tickets left
/// unread there would make its close a reset that cuts the upload's tail.
/// Clients that use each ticket once (rustls) get new ones that way.
pub fn data_config(
    cfg: &Arc<rustls::ServerConfig>,
    client_reads: bool,
) -> Arc<rustls::ServerConfig> {
    let mut c = (**cfg).clone();
    c.send_tls13_tickets = if client_reads { 2 } else { 0 };
    Arc::new(c)
}

/// A self-signed certificate and key for `host` (a DNS name or an IP
/// address), both PEM.
pub fn self_signed(host: &str) -> Result<(String, String), String> {
    let ck = rcgen::generate_simple_self_signed(vec![host.to_string()])
        .map_err(|e| format!("cannot make a certificate for {host}: {e}"))?;
    Ok((ck.cert.pem(), ck.signing_key.serialize_pem()))
}

/// A fresh random token that binds data connections to one control connection.
pub fn new_token() -> Vec<u8> {
    let mut t = vec![0u8; 16];
    let rng = rustls::crypto::ring::default_provider().secure_random;
    if rng.fill(&mut t).is_err() {
        // The kernel's generator is the fallback; a failure of both leaves
        // zeros, which still cannot match another session's random token.
        let _ = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut t));
    }
    t
}

/// Runs a server handshake on `tcp` within `timeout`; `early` holds bytes
/// already read from the socket. `token` is embedded in the tickets issued.
pub fn accept(
    cfg: &Arc<rustls::ServerConfig>,
    mut tcp: TcpStream,
    early: &[u8],
    token: &[u8],
    timeout: Duration,
) -> io::Result<TlsStream> {
    let mut conn = ServerConnection::new(cfg.clone()).map_err(io::Error::other)?;
    conn.set_resumption_data(token);
    let mut early = early;
    while !early.is_empty() {
        if conn.read_tls(&mut early)? == 0 {
            break;
        }
        conn.process_new_packets().map_err(io::Error::other)?;
    }
    let deadline = Instant::now() + timeout;
    tcp.set_read_timeout(Some(Duration::from_millis(200)))?;
    tcp.set_write_timeout(Some(timeout))?;
    while conn.is_handshaking() {
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "TLS handshake timed out",
            ));
        }
        match conn.complete_io(&mut tcp) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    // Tickets (TLS 1.3) are sent after the handshake: push them out now.
    while conn.wants_write() {
        conn.write_tls(&mut tcp)?;
    }
    Ok(StreamOwned::new(conn, tcp))
}

/// True when a data connection's handshake resumed the session whose
/// tickets carry `token`. Call on the thread that ran the handshake.
pub fn resumed_with(s: &TlsStream, token: &[u8]) -> bool {
    if s.conn.handshake_kind() != Some(HandshakeKind::Resumed) {
        return false;
    }
    if s.conn.received_resumption_data() == Some(token) {
        return true;
    }
    // rustls reports the resumption data for TLS 1.3 only; under TLS 1.2
    // the session state it resumed (which holds the token) is looked at.
    RESUMED.with(|r| {
        r.borrow()
            .as_deref()
            .is_some_and(|state| state.windows(token.len()).any(|w| w == token))
    })
}

thread_local! {
    /// The session state the last resumption on this thread recovered.
    static RESUMED: std::cell::RefCell<Option<Vec<u8>>> = const { std::cell::RefCell::new(None) };
}

/// Forgets this thread's last resumed state (before a data handshake).
pub fn clear_resumed() {
    RESUMED.with(|r| *r.borrow_mut() = None);
}

fn note_resumed(state: &Option<Vec<u8>>) {
    if let Some(v) = state {
        RESUMED.with(|r| *r.borrow_mut() = Some(v.clone()));
    }
}

/// A session store or ticketer that remembers, per thread, the state each
/// resumption recovered (see [`resumed_with`]).
#[derive(Debug)]
struct Watched<T: ?Sized>(Arc<T>);

impl<T: rustls::server::StoresServerSessions> rustls::server::StoresServerSessions for Watched<T> {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        self.0.put(key, value)
    }
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        let v = self.0.get(key);
        note_resumed(&v);
        v
    }
    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        let v = self.0.take(key);
        note_resumed(&v);
        v
    }
    fn can_cache(&self) -> bool {
        self.0.can_cache()
    }
}

impl rustls::server::ProducesTickets for Watched<dyn rustls::server::ProducesTickets> {
    fn enabled(&self) -> bool {
        self.0.enabled()
    }
    fn lifetime(&self) -> u32 {
        self.0.lifetime()
    }
    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.0.encrypt(plain)
    }
    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        let v = self.0.decrypt(cipher);
        note_resumed(&v);
        v
    }
}

/// A connection, plain or TLS.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

impl Stream {
    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &s.sock,
        }
    }

    /// True for TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// Ends the stream cleanly: a TLS close_notify, so the peer can tell a
    /// complete transfer from a cut one.
    pub fn finish(&mut self) -> io::Result<()> {
        if let Stream::Tls(s) = self {
            s.flush()?;
            s.conn.send_close_notify();
            while s.conn.wants_write() {
                s.conn.write_tls(&mut s.sock)?;
            }
        }
        Ok(())
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => {
                // rustls only queues what it cannot send at once: push it out.
                // The bytes are queued by now: only a real failure is reported.
                let n = s.write(buf)?;
                match s.flush() {
                    Err(e) if e.kind() != io::ErrorKind::Interrupted => Err(e),
                    _ => Ok(n),
                }
            }
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// A session's control connection, shared by its line reader and its
/// replies (one thread uses both, so the lock is never contended).
#[derive(Clone)]
pub struct Ctrl(Arc<Mutex<Stream>>);

impl Ctrl {
    pub fn new(s: Stream) -> Ctrl {
        Ctrl(Arc::new(Mutex::new(s)))
    }

    fn lock(&self) -> MutexGuard<'_, Stream> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True when the control connection is TLS.
    pub fn is_tls(&self) -> bool {
        self.lock().is_tls()
    }

    /// The socket's descriptor (for poll).
    pub fn raw_fd(&self) -> RawFd {
        self.lock().tcp().as_raw_fd()
    }

    /// Plain text a TLS connection has decrypted but not yet handed out.
    pub fn has_buffered(&self) -> bool {
        match &mut *self.lock() {
            Stream::Plain(_) => false,
            Stream::Tls(s) => s
                .conn
                .process_new_packets()
                .map(|st| st.plaintext_bytes_to_read() > 0)
                .unwrap_or(false),
        }
    }

    /// Runs `f` on the TCP socket (timeouts, addresses).
    pub fn with_tcp<T>(&self, f: impl FnOnce(&TcpStream) -> T) -> T {
        f(self.lock().tcp())
    }
}

impl Read for Ctrl {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.lock().read(buf)
    }
}

impl Write for Ctrl {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.lock().write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.lock().flush()
    }
}
