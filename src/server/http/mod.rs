//! keyftpd's HTTP face: the resumable upload of CN101174954A (`GET
//! /PATH?state`, `POST /PATH` multipart from an offset), WebDAV class 1,
//! tus 1.0.0 and a browser upload page, on the same root, accounts and
//! per-file keys as FTP (see `man/keyftp.7`).
//!
//! HTTP/1.1 is hyper's; it runs on tokio in threads of its own (one
//! single-threaded runtime per core, connections dealt out in turn),
//! beside the FTP face's thread-per-session listener. The same
//! face may listen for plain HTTP, for HTTPS (tokio-rustls, with the FTPS
//! certificate), or both: one connection limit, one login gate, one set
//! of timeouts. A TLS handshake must end within the login timeout, so a
//! connection that never finishes one does not hold a slot. Under
//! `--require-tls` the plain listener takes no credentials (see
//! [`auth`]). File work
//! runs on tokio's blocking threads through [`backend`], the one seam to
//! keyftpd's file side, except an upload's writes: each body chunk goes
//! to the page cache on the runtime thread that received it, as FTP's
//! STOR does on its session thread (see [`body`]). Layout:
//! - [`routing`]: method and path to handler; [`auth`]: Basic logins.
//! - [`seed`]: the state query and the multipart POST; [`form`]: the
//!   streaming multipart reader it uses.
//! - [`files`]: GET/HEAD with Range, PUT; [`webdav`]: PROPFIND and the
//!   namespace methods; [`tus`]: the tus protocol; [`page`]: the HTML page.
//! - [`body`]: request bodies as streams with an idle timeout, and the
//!   pump from a body into an upload; [`reply`]: responses and error codes.

// Handlers return `Result<_, Response>` where the error is the reply to
// send; a response is built once per request, its size does not matter.
#![allow(clippy::result_large_err)]

mod alloc;
mod auth;
mod backend;
mod body;
mod files;
mod form;
mod page;
mod reply;
mod routing;
mod seed;
mod tus;
mod webdav;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use super::listener::{Server, Shared};
use super::ServerConfig;
use backend::Backend;

/// What the HTTP face can be told.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// Where to listen for plain HTTP (`127.0.0.1:0` for an ephemeral
    /// port); `None`: HTTPS only.
    pub listen: Option<SocketAddr>,
    /// Where to listen for HTTPS, with [`HttpConfig::tls`].
    pub https: Option<SocketAddr>,
    /// The server's TLS config (the FTPS one; HTTP/1.1 is added as ALPN).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Plain HTTP refuses credentials (403): passwords only over TLS.
    pub require_tls: bool,
    /// Limit on an HTTPS connection's TLS handshake.
    pub handshake_timeout: Duration,
    /// Limit on receiving a request's headers, and on a request body that
    /// sends nothing (408, bytes kept).
    pub timeout: Duration,
    /// Largest request head in bytes (431 beyond it). It is also hyper's
    /// read buffer, so it sets the size of the chunks a body arrives in:
    /// with 64 KiB a 1 GiB upload ran at 0.4-0.7x of FTP's rate, with
    /// 256 KiB at about 0.8x (scripts/bench.d/http.sh).
    pub max_header: usize,
    /// At most this many connections at once; more wait to be accepted.
    pub max_conns: usize,
}

impl HttpConfig {
    /// Plain HTTP on `listen`. Defaults: 60 s timeouts, 10 s for a TLS
    /// handshake, 256 KiB heads, 64 connections.
    pub fn new(listen: SocketAddr) -> HttpConfig {
        HttpConfig {
            listen: Some(listen),
            https: None,
            tls: None,
            require_tls: false,
            handshake_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(60),
            max_header: 256 << 10,
            max_conns: 64,
        }
    }
}

/// State every request handler sees.
pub(crate) struct Ctx {
    pub backend: Backend,
    pub cfg: HttpConfig,
    pub auth: auth::Cache,
    pub tus: tus::Lengths,
    /// Uploads begun and not yet recorded (shutdown waits for them).
    pub uploads: AtomicUsize,
}

/// A bound HTTP face, not yet serving.
pub struct HttpServer {
    listener: Option<std::net::TcpListener>,
    addr: Option<SocketAddr>,
    tls: Option<(std::net::TcpListener, TlsAcceptor)>,
    https_addr: Option<SocketAddr>,
    ctx: Arc<Ctx>,
}

/// Stops the server from another thread.
#[derive(Clone)]
pub struct HttpStopper(Arc<Ctx>);

impl HttpStopper {
    /// Sets the shared stop flag; both faces notice it and end.
    pub fn stop(&self) {
        self.0.backend.stop();
    }
}

/// A running HTTP face (see [`HttpServer::spawn`]).
pub struct HttpHandle {
    addr: Option<SocketAddr>,
    https_addr: Option<SocketAddr>,
    ctx: Arc<Ctx>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpServer {
    /// HTTP only: opens the root of `cfg` (its FTP address is not bound).
    pub fn open(cfg: ServerConfig, http: HttpConfig) -> io::Result<HttpServer> {
        Self::with(Shared::open(cfg)?, http)
    }

    /// Beside an FTP face: the same root, store, busy set and accounts.
    pub fn beside(ftp: &Server, http: HttpConfig) -> io::Result<HttpServer> {
        Self::with(ftp.shared(), http)
    }

    fn with(sh: Arc<Shared>, cfg: HttpConfig) -> io::Result<HttpServer> {
        let bind = |a: SocketAddr| -> io::Result<(std::net::TcpListener, SocketAddr)> {
            let l = std::net::TcpListener::bind(a)?;
            l.set_nonblocking(true)?;
            let addr = l.local_addr()?;
            Ok((l, addr))
        };
        let (listener, addr) = match cfg.listen {
            Some(a) => bind(a).map(|(l, a)| (Some(l), Some(a)))?,
            None => (None, None),
        };
        let (tls, https_addr) = match (cfg.https, &cfg.tls) {
            (Some(a), Some(t)) => {
                let (l, a) = bind(a)?;
                (Some((l, https_acceptor(t))), Some(a))
            }
            (Some(_), None) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "HTTPS needs a certificate (--tls-cert and --tls-key)",
                ))
            }
            (None, _) => (None, None),
        };
        if listener.is_none() && tls.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no HTTP or HTTPS address",
            ));
        }
        Ok(HttpServer {
            listener,
            addr,
            tls,
            https_addr,
            ctx: Arc::new(Ctx {
                backend: Backend::new(sh),
                cfg,
                auth: auth::Cache::default(),
                tus: tus::Lengths::default(),
                uploads: AtomicUsize::new(0),
            }),
        })
    }

    /// The bound plain HTTP address (with the real port when bound to 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// The bound HTTPS address.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https_addr
    }

    /// A trigger that stops the whole server from elsewhere (signals).
    pub fn stopper(&self) -> HttpStopper {
        HttpStopper(self.ctx.clone())
    }

    /// Serves on a new thread.
    pub fn spawn(self) -> io::Result<HttpHandle> {
        let addr = self.addr;
        let https_addr = self.https_addr;
        let ctx = self.ctx.clone();
        let thread = std::thread::Builder::new()
            .name("keyftpd-http".into())
            .spawn(move || {
                if let Err(e) = self.run() {
                    log::error!("http: {e}");
                }
            })?;
        Ok(HttpHandle {
            addr,
            https_addr,
            ctx,
            thread: Some(thread),
        })
    }

    /// Serves until the server is stopped (the shared stop flag, set by
    /// the FTP face's stopper or [`HttpHandle::shutdown`]).
    pub fn run(self) -> io::Result<()> {
        alloc::tune();
        let n = conn_threads();
        let mut conns = Vec::with_capacity(n);
        for i in 0..n {
            conns.push(ConnThread::start(i, self.ctx.cfg.max_conns + 16)?);
        }
        let accept = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let ctx = self.ctx.clone();
        let handles: Vec<_> = conns.iter().map(|c| c.handle.clone()).collect();
        let served = accept.block_on(accept_loop(self.listener, self.tls, self.ctx, handles));
        // Uploads in flight see their bodies end (cut) and record partials.
        let deadline = Instant::now() + Duration::from_secs(10);
        while ctx.uploads.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        for c in conns {
            c.stop();
        }
        accept.shutdown_timeout(Duration::from_secs(2));
        served?;
        log::info!("http: stopped");
        Ok(())
    }
}

/// Threads that serve connections: one per core, at most 8.
fn conn_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
}

/// A thread running a single-threaded runtime for the connections handed
/// to it (in turn by the accept loop). No work stealing, on purpose: with
/// one multi-threaded runtime each readable socket also woke a parked
/// worker to look for work (a futex wake and a context switch per body
/// chunk, on the cores the clients and FTP sessions need); here a
/// connection's socket, its handler and its writes stay on one thread, as
/// an FTP session's do. Blocking work (opens, records, GET reads) goes to
/// the runtime's blocking pool.
struct ConnThread {
    handle: tokio::runtime::Handle,
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl ConnThread {
    fn start(i: usize, blocking: usize) -> io::Result<ConnThread> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .max_blocking_threads(blocking)
            .thread_name("keyftpd-http-blocking")
            .enable_all()
            .build()?;
        let handle = rt.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("keyftpd-http-{i}"))
            .spawn(move || {
                rt.block_on(async {
                    let _ = stopped.await;
                });
                rt.shutdown_timeout(Duration::from_secs(2));
            })?;
        Ok(ConnThread {
            handle,
            stop,
            thread,
        })
    }

    fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

/// The acceptor of the HTTPS listener: the FTPS config with HTTP/1.1
/// as its one ALPN protocol (a client offering h2 too gets HTTP/1.1).
/// TLS sessions kept for HTTPS clients to resume.
const HTTPS_SESSIONS: usize = 256;

fn https_acceptor(tls: &Arc<rustls::ServerConfig>) -> TlsAcceptor {
    let mut cfg = (**tls).clone();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    // A cache of its own: a flood of HTTPS handshakes must not evict the
    // sessions FTPS data connections resume (else their transfers get 522).
    cfg.session_storage = rustls::server::ServerSessionMemoryCache::new(HTTPS_SESSIONS);
    TlsAcceptor::from(Arc::new(cfg))
}

/// Accepts on the plain listener, or never when there is none.
async fn accept_on(
    l: &Option<tokio::net::TcpListener>,
) -> io::Result<(tokio::net::TcpStream, SocketAddr)> {
    match l {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

async fn accept_loop(
    plain: Option<std::net::TcpListener>,
    tls: Option<(std::net::TcpListener, TlsAcceptor)>,
    ctx: Arc<Ctx>,
    conns: Vec<tokio::runtime::Handle>,
) -> io::Result<()> {
    let plain = plain.map(tokio::net::TcpListener::from_std).transpose()?;
    let (tls_listener, acceptor) = match tls {
        Some((l, a)) => (Some(tokio::net::TcpListener::from_std(l)?), Some(a)),
        None => (None, None),
    };
    // One limit over both listeners.
    let slots = Arc::new(Semaphore::new(ctx.cfg.max_conns.max(1)));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut turn = 0usize;
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = tick.tick() => {
                if ctx.backend.stopping() { break; }
                continue;
            }
        };
        let (accepted, secure) = tokio::select! {
            r = accept_on(&plain) => (r, false),
            r = accept_on(&tls_listener) => (r, true),
            _ = tick.tick() => {
                if ctx.backend.stopping() { break; }
                continue;
            }
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                log::warn!("http accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        // Moved to the connection thread's own reactor, so its readiness
        // wakes that thread alone.
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                log::warn!("http {peer}: {e}");
                continue;
            }
        };
        let ctx = ctx.clone();
        let mut stop = stop_rx.clone();
        let acceptor = if secure { acceptor.clone() } else { None };
        let rt = &conns[turn % conns.len()];
        turn = turn.wrapping_add(1);
        rt.spawn(async move {
            let _permit = permit;
            let stream = match tokio::net::TcpStream::from_std(stream) {
                Ok(s) => s,
                Err(e) => return log::warn!("http {peer}: {e}"),
            };
            let Some(acceptor) = acceptor else {
                return serve(ctx, peer, false, TokioIo::new(stream), stop).await;
            };
            // The handshake is bounded: a client that never finishes it
            // gives its slot back after the login timeout.
            let limit = ctx.cfg.handshake_timeout;
            let hs = tokio::time::timeout(limit, acceptor.accept(stream));
            let done = tokio::select! {
                r = hs => r,
                _ = stop.changed() => return,
            };
            match done {
                Ok(Ok(s)) => serve(ctx, peer, true, TokioIo::new(s), stop).await,
                Ok(Err(e)) => log::info!("https {peer}: TLS handshake failed: {e}"),
                Err(_) => log::info!(
                    "https {peer}: no TLS handshake within {} s; closed",
                    limit.as_secs_f64()
                ),
            }
        });
    }
    let _ = stop_tx.send(true);
    // Let connections finish their graceful shutdown.
    let _ = tokio::time::timeout(
        Duration::from_secs(3),
        slots.acquire_many(ctx.cfg.max_conns.max(1) as u32),
    )
    .await;
    Ok(())
}

/// Serves HTTP/1.1 requests on one connection, plain or TLS (`secure`),
/// until it ends or the server stops.
async fn serve<I>(
    ctx: Arc<Ctx>,
    peer: SocketAddr,
    secure: bool,
    io: I,
    mut stop: tokio::sync::watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let svc_ctx = ctx.clone();
    let svc = service_fn(move |req| {
        let ctx = svc_ctx.clone();
        async move { Ok::<_, std::convert::Infallible>(routing::handle(ctx, peer, secure, req).await) }
    });
    let mut b = http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(ctx.cfg.timeout)
        .max_buf_size(ctx.cfg.max_header.max(8192))
        .max_headers(128)
        .keep_alive(true);
    let conn = b.serve_connection(io, svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                log::debug!("http {peer}: {e}");
            }
        }
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
        }
    }
}

impl HttpHandle {
    /// The bound plain HTTP address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// The bound HTTPS address.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https_addr
    }

    /// Waits for the HTTP face to end (after the server's stop flag).
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Stops the whole server (both faces) and waits for this face.
    pub fn shutdown(self) {
        self.ctx.backend.stop();
        self.join();
    }
}
