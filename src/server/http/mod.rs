//! keyftpd's HTTP face: the resumable upload of CN101174954A (`GET
//! /PATH?state`, `POST /PATH` multipart from an offset), WebDAV class 1,
//! tus 1.0.0 and a browser upload page, on the same root, accounts and
//! per-file keys as FTP (see `man/keyftp.7`).
//!
//! HTTP/1.1 is hyper's; it runs on a small tokio runtime in its own
//! threads, beside the FTP face's thread-per-session listener. File work
//! runs on tokio's blocking threads through [`backend`], the one seam to
//! keyftpd's file side. Layout:
//! - [`routing`]: method and path to handler; [`auth`]: Basic logins.
//! - [`seed`]: the state query and the multipart POST.
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

use super::listener::{Server, Shared};
use super::ServerConfig;
use backend::Backend;

/// What the HTTP face can be told.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// Where to listen (`127.0.0.1:0` for an ephemeral port).
    pub listen: SocketAddr,
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
    /// Defaults: 60 s timeouts, 256 KiB heads, 64 connections.
    pub fn new(listen: SocketAddr) -> HttpConfig {
        HttpConfig {
            listen,
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
    /// Uploads running on blocking threads (shutdown waits for them).
    pub uploads: AtomicUsize,
}

/// A bound HTTP face, not yet serving.
pub struct HttpServer {
    listener: std::net::TcpListener,
    addr: SocketAddr,
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
    addr: SocketAddr,
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
        let listener = std::net::TcpListener::bind(cfg.listen)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        Ok(HttpServer {
            listener,
            addr,
            ctx: Arc::new(Ctx {
                backend: Backend::new(sh),
                cfg,
                auth: auth::Cache::default(),
                tus: tus::Lengths::default(),
                uploads: AtomicUsize::new(0),
            }),
        })
    }

    /// The bound address (with the real port when bound to 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// A trigger that stops the whole server from elsewhere (signals).
    pub fn stopper(&self) -> HttpStopper {
        HttpStopper(self.ctx.clone())
    }

    /// Serves on a new thread.
    pub fn spawn(self) -> io::Result<HttpHandle> {
        let addr = self.addr;
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
            ctx,
            thread: Some(thread),
        })
    }

    /// Serves until the server is stopped (the shared stop flag, set by
    /// the FTP face's stopper or [`HttpHandle::shutdown`]).
    pub fn run(self) -> io::Result<()> {
        alloc::tune();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(self.ctx.cfg.max_conns + 16)
            .thread_name("keyftpd-http-rt")
            .enable_all()
            .build()?;
        let ctx = self.ctx.clone();
        rt.block_on(accept_loop(self.listener, self.ctx))?;
        // Uploads in flight see their bodies end (cut) and record partials.
        let deadline = Instant::now() + Duration::from_secs(10);
        while ctx.uploads.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        rt.shutdown_timeout(Duration::from_secs(2));
        log::info!("http: stopped");
        Ok(())
    }
}

async fn accept_loop(std_listener: std::net::TcpListener, ctx: Arc<Ctx>) -> io::Result<()> {
    let listener = tokio::net::TcpListener::from_std(std_listener)?;
    let slots = Arc::new(Semaphore::new(ctx.cfg.max_conns.max(1)));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
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
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    log::warn!("http accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = tick.tick() => {
                if ctx.backend.stopping() { break; }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let ctx = ctx.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let svc_ctx = ctx.clone();
            let svc = service_fn(move |req| {
                let ctx = svc_ctx.clone();
                async move { Ok::<_, std::convert::Infallible>(routing::handle(ctx, peer, req).await) }
            });
            let mut b = http1::Builder::new();
            b.timer(TokioTimer::new())
                .header_read_timeout(ctx.cfg.timeout)
                .max_buf_size(ctx.cfg.max_header.max(8192))
                .max_headers(128)
                .keep_alive(true);
            let conn = b.serve_connection(TokioIo::new(stream), svc);
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

impl HttpHandle {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
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
