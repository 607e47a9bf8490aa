//! The accept loop: one thread per session, a cap on sessions, and a clean
//! shutdown that tells every session to stop and waits for them.
//!
//! Shutdown sets a flag that sessions and transfers poll (control reads and
//! data reads use ~0.5 s timeouts), then wakes the blocking `accept` by
//! connecting to the listener. An upload in flight is ended as a partial,
//! with its state recorded, before its session exits.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::config::ServerConfig;
use super::session::Session;
use super::store::Store;

/// State shared by the listener and all sessions.
pub(crate) struct Shared {
    pub cfg: ServerConfig,
    pub store: Store,
    pub stop: AtomicBool,
    pub sessions: AtomicUsize,
    next_id: AtomicU64,
}

impl Shared {
    /// Opens the root and its store (`cfg.listen` is not bound).
    pub(crate) fn open(cfg: ServerConfig) -> io::Result<Arc<Shared>> {
        let store = Store::open(&cfg.root, cfg.fsync_files)?;
        Ok(Arc::new(Shared {
            cfg,
            store,
            stop: AtomicBool::new(false),
            sessions: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
        }))
    }
}

/// Decrements the session count when a session thread ends, even by panic.
struct SessionSlot(Arc<Shared>);

impl Drop for SessionSlot {
    fn drop(&mut self) {
        self.0.sessions.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A bound server, not yet accepting.
pub struct Server {
    listener: TcpListener,
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

impl Server {
    /// Opens the root and its metadata store and binds the control socket.
    pub fn bind(cfg: ServerConfig) -> io::Result<Server> {
        let listen = cfg.listen;
        let shared = Shared::open(cfg)?;
        let listener = TcpListener::bind(listen)?;
        let addr = listener.local_addr()?;
        Ok(Server {
            listener,
            addr,
            shared,
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

    /// Accepts sessions until stopped, then waits (bounded) for sessions to end.
    pub fn run(self) -> io::Result<()> {
        let shared = self.shared;
        for conn in self.listener.incoming() {
            if shared.stop.load(Ordering::SeqCst) {
                break;
            }
            let stream = match conn {
                Ok(s) => s,
                Err(e) => {
                    log::warn!("accept: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            let active = shared.sessions.fetch_add(1, Ordering::SeqCst);
            if active >= shared.cfg.max_sessions {
                shared.sessions.fetch_sub(1, Ordering::SeqCst);
                let peer = stream.peer_addr().ok();
                log::warn!("refused session from {peer:?}: {active} sessions open (max)");
                let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
                let _ = (&stream).write_all(b"421 Too many connections, try again later\r\n");
                continue;
            }
            let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
            let sh = shared.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("keyftpd-session-{id}"))
                .stack_size(512 << 10)
                .spawn(move || {
                    let _slot = SessionSlot(sh.clone());
                    Session::run(sh, stream, id);
                });
            if let Err(e) = spawned {
                shared.sessions.fetch_sub(1, Ordering::SeqCst);
                log::error!("cannot start session thread: {e}");
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while shared.sessions.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        log::info!("keyftpd stopped");
        Ok(())
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
