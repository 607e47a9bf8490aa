//! The listening socket, the session threads, and a clean shutdown that
//! tells every session to stop and waits for them.
//!
//! Connections that have not logged in wait in the [`super::lobby`] (one
//! thread for all of them); a login moves a connection to its own session
//! thread, at most `max_sessions` of them. The listen backlog is the
//! system's `somaxconn`, so a burst of connections is queued by the kernel
//! rather than dropped.
//!
//! Shutdown sets a flag that the lobby, sessions and transfers poll
//! (control reads and data reads use ~0.5 s timeouts). An upload in flight
//! is ended as a partial, with its state recorded, before its session exits.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::config::ServerConfig;
use super::gate::{Login, LoginGate};
use super::lineio::LineReader;
use super::session::{Session, Start};
use super::store::Store;
use super::tls::{Ctrl, Stream};

/// State shared by the listener and all sessions.
pub(crate) struct Shared {
    pub cfg: ServerConfig,
    pub store: Store,
    /// Every login, on every face, goes through this gate.
    pub gate: LoginGate,
    pub stop: AtomicBool,
    pub sessions: AtomicUsize,
    pub next_id: AtomicU64,
    /// Connections logging in over TLS, each on its own thread.
    pub tls_pending: AtomicUsize,
    /// The same, per address (IPv4, or IPv6 /64).
    pub tls_per_ip: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
}

impl Shared {
    /// Opens the root and its store (`cfg.listen` is not bound).
    pub(crate) fn open(cfg: ServerConfig) -> io::Result<Arc<Shared>> {
        let store = Store::open(&cfg.root, cfg.fsync_files)?;
        Ok(Arc::new(Shared {
            gate: LoginGate::new(cfg.accounts.clone(), cfg.gate.clone()),
            cfg,
            store,
            stop: AtomicBool::new(false),
            sessions: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            tls_pending: AtomicUsize::new(0),
            tls_per_ip: Default::default(),
        }))
    }
}

/// Decrements the session count when a session thread ends, even by panic.
pub(crate) struct SessionSlot(pub Arc<Shared>);

impl Drop for SessionSlot {
    fn drop(&mut self) {
        self.0.sessions.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A bound server, not yet accepting.
pub struct Server {
    listener: TcpListener,
    /// The implicit-TLS listener, if any.
    implicit: Option<TcpListener>,
    addr: SocketAddr,
    shared: Arc<Shared>,
}

/// A running server; stops on [`ServerHandle::shutdown`] or drop.
pub struct ServerHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// A cloneable trigger for stopping a server from another thread (signals).
#[derive(Clone)]
pub struct Stopper {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Stopper {
    /// Asks the server to stop; returns at once.
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        wake(self.addr);
    }
}

fn wake(addr: SocketAddr) {
    let mut a = addr;
    if a.ip().is_unspecified() {
        a.set_ip(match a {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let _ = TcpStream::connect_timeout(&a, Duration::from_millis(500));
}

/// The listen backlog: the system's `somaxconn` (the kernel caps any
/// larger value to it anyway), or 4096 where it cannot be read.
pub fn listen_backlog() -> i32 {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(4096)
}

/// Binds `addr` with the [`listen_backlog`].
fn bind_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sock.set_reuse_address(true)?;
    sock.bind(&addr.into())?;
    sock.listen(listen_backlog())?;
    Ok(sock.into())
}

/// Starts the thread of a logged-in session: `out` is what it must send
/// first (the 230), `pending` the command bytes that came after PASS. The
/// caller has already counted the session in `shared.sessions`.
pub(crate) fn spawn_session(
    shared: Arc<Shared>,
    stream: TcpStream,
    id: u64,
    login: Login,
    out: Vec<u8>,
    pending: Vec<u8>,
) {
    let sh = shared.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("keyftpd-session-{id}"))
        .stack_size(512 << 10)
        .spawn(move || {
            let _slot = SessionSlot(sh.clone());
            if stream.set_nonblocking(false).is_err()
                || stream
                    .set_write_timeout(Some(Duration::from_secs(30)))
                    .is_err()
                || (&stream).write_all(&out).is_err()
            {
                return;
            }
            let ctrl = Ctrl::new(Stream::Plain(stream));
            let reader = LineReader::with_pending(ctrl.clone(), &pending);
            let start = Start {
                ctrl,
                reader,
                id,
                login,
                tls_token: None,
                pbsz: false,
                prot_private: false,
            };
            Session::run(sh, start);
        });
    if let Err(e) = spawned {
        shared.sessions.fetch_sub(1, Ordering::SeqCst);
        log::error!("cannot start session thread: {e}");
    }
}

impl Server {
    /// Opens the root and its metadata store and binds the control socket.
    pub fn bind(cfg: ServerConfig) -> io::Result<Server> {
        let listen = cfg.listen;
        let implicit_listen = cfg.implicit_tls_listen;
        let has_cert = cfg.tls.is_some();
        let shared = Shared::open(cfg)?;
        let listener = bind_listener(listen)?;
        let addr = listener.local_addr()?;
        let implicit = match implicit_listen {
            Some(a) if has_cert => Some(bind_listener(a)?),
            Some(_) => return Err(io::Error::other("implicit TLS needs a certificate")),
            None => None,
        };
        Ok(Server {
            listener,
            addr,
            shared,
            implicit,
        })
    }

    /// The state this server shares with its sessions (and the HTTP face).
    pub(crate) fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// The bound control address (with the real port when bound to 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bound implicit-TLS address, if any.
    pub fn implicit_addr(&self) -> Option<SocketAddr> {
        self.implicit.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// A trigger that stops [`Server::run`] from elsewhere.
    pub fn stopper(&self) -> Stopper {
        Stopper {
            addr: self.addr,
            shared: self.shared.clone(),
        }
    }

    /// Runs the accept loop on a new thread.
    pub fn spawn(self) -> ServerHandle {
        let addr = self.addr;
        let shared = self.shared.clone();
        let thread = std::thread::Builder::new()
            .name("keyftpd-accept".into())
            .spawn(move || {
                if let Err(e) = self.run() {
                    log::error!("keyftpd: {e}");
                }
            })
            .ok();
        ServerHandle {
            addr,
            shared,
            thread,
        }
    }

    /// Serves until stopped, then waits (bounded) for sessions to end.
    pub fn run(self) -> io::Result<()> {
        let shared = self.shared;
        let implicit = match self.implicit {
            Some(l) => {
                let sh = shared.clone();
                Some(
                    std::thread::Builder::new()
                        .name("keyftpd-implicit".into())
                        .spawn(move || super::tls_login::accept_implicit(sh, l))?,
                )
            }
            None => None,
        };
        let res = super::lobby::run(shared.clone(), self.listener);
        if let Some(t) = implicit {
            let _ = t.join();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while (shared.sessions.load(Ordering::SeqCst) > 0
            || shared.tls_pending.load(Ordering::SeqCst) > 0)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        log::info!("keyftpd stopped");
        res
    }
}

impl ServerHandle {
    /// The bound control address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, ends every session (uploads become recorded
    /// partials) and waits for them.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        wake(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}
