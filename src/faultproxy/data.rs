//! Data connections: one proxy listener per PASV/EPSV reply, accepting one
//! client connection and forwarding it to the server's data port, counting,
//! throttling and (when armed) cutting the upload direction.
//!
//! A cut comes exactly after the configured number of upload bytes went to
//! the server, so a test knows how much the server can have received: the
//! client gets a TCP reset, the server an end of stream (see [`cut`]).

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::shared::{abort, lock, Dir, Shared};

/// How long a proxy data listener waits for the client to connect.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const BUF: usize = 64 * 1024;

/// The control sockets of one session, so a cut can take them down too.
#[derive(Default)]
pub(crate) struct SessionSockets {
    pub sockets: std::sync::Mutex<Vec<TcpStream>>,
}

impl SessionSockets {
    pub fn abort_all(&self) {
        for s in lock(&self.sockets).iter() {
            abort(s);
        }
    }
}

/// Binds a listener on `local_ip` for the client and returns its address;
/// a thread accepts one connection and forwards it to `upstream_data`.
pub(crate) fn open(
    shared: &Arc<Shared>,
    local_ip: IpAddr,
    upstream_data: SocketAddr,
    session: &Arc<SessionSockets>,
) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(SocketAddr::new(local_ip, 0))?;
    let addr = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    let sh = Arc::clone(shared);
    let sess = Arc::clone(session);
    thread::Builder::new()
        .name("ftpfault-data".into())
        .spawn(move || {
            if let Some(client) = accept_one(&listener, &sh) {
                drop(listener);
                if let Err(e) = forward(client, upstream_data, &sh, &sess) {
                    log::info!("ftpfault: data connection to {upstream_data}: {e}");
                }
            }
        })?;
    Ok(addr)
}

/// TCP mode: relays one client connection to the upstream as a data
/// connection.
pub(crate) fn run_tcp(client: TcpStream, shared: Arc<Shared>) {
    shared.counters.sessions.fetch_add(1, Ordering::SeqCst);
    let upstream = shared.upstream;
    let sess = Arc::new(SessionSockets::default());
    if let Err(e) = forward(client, upstream, &shared, &sess) {
        log::info!("ftpfault: connection to {upstream}: {e}");
    }
}

fn accept_one(listener: &TcpListener, shared: &Shared) -> Option<TcpStream> {
    let deadline = Instant::now() + ACCEPT_TIMEOUT;
    while Instant::now() < deadline && !shared.stopped.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((s, _)) => return s.set_nonblocking(false).ok().map(|_| s),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(5));
            }
            Err(e) => {
                log::info!("ftpfault: data accept: {e}");
                return None;
            }
        }
    }
    None
}

fn forward(
    client: TcpStream,
    upstream: SocketAddr,
    shared: &Arc<Shared>,
    session: &Arc<SessionSockets>,
) -> io::Result<()> {
    shared.gate();
    let server = match TcpStream::connect_timeout(&upstream, CONNECT_TIMEOUT) {
        Ok(s) => s,
        Err(e) => {
            abort(&client);
            return Err(e);
        }
    };
    shared.counters.data_conns.fetch_add(1, Ordering::SeqCst);
    let epoch = shared.epoch();
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let ids = [shared.register(&client), shared.register(&server)];
    let aborted = Arc::new(AtomicBool::new(false));

    let down = {
        let (src, dst) = (server.try_clone()?, client.try_clone()?);
        let (sh, ab, sess) = (
            Arc::clone(shared),
            Arc::clone(&aborted),
            Arc::clone(session),
        );
        thread::Builder::new()
            .name("ftpfault-down".into())
            .spawn(move || pump(src, dst, Dir::Down, epoch, &sh, &ab, &sess))?
    };
    pump(client, server, Dir::Up, epoch, shared, &aborted, session);
    let _ = down.join();
    for id in ids {
        shared.unregister(id);
    }
    Ok(())
}

/// Copies `src` to `dst` until EOF or an error, counting and pacing; in the
/// upload direction, cuts the connection at the configured byte. `epoch`:
/// when the connection was made (see [`Shared::pass`]).
fn pump(
    mut src: TcpStream,
    mut dst: TcpStream,
    dir: Dir,
    epoch: u64,
    shared: &Shared,
    aborted: &AtomicBool,
    session: &SessionSockets,
) {
    let counter = match dir {
        Dir::Up => &shared.counters.up_data,
        Dir::Down => &shared.counters.down_data,
    };
    let mut buf = vec![0u8; BUF];
    let mut sent: u64 = 0;
    loop {
        let mut want = shared.chunk_len(BUF);
        let to_cut = if dir == Dir::Up {
            shared.bytes_to_cut(sent)
        } else {
            None
        };
        if let Some(left) = to_cut {
            // At the cut point, read one byte more to learn that the client
            // goes on; it is dropped by the cut.
            want = want.min(left.max(1) as usize);
        }
        let n = match src.read(&mut buf[..want]) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to_cut == Some(0) && shared.take_cut(sent) {
            cut(&src, &dst, shared, aborted, session);
            return;
        }
        shared.pace(dir, n);
        if dir == Dir::Up {
            if let Some(at) = shared.faults().flip_byte {
                if at >= sent && at - sent < n as u64 {
                    buf[(at - sent) as usize] ^= 0xFF;
                    log::info!("ftpfault: inverted upload byte {at}");
                }
            }
        }
        if !shared.pass(epoch) {
            return;
        }
        if dst.write_all(&buf[..n]).is_err() {
            break;
        }
        sent += n as u64;
        counter.fetch_add(n as u64, Ordering::SeqCst);
        if dir == Dir::Up {
            shared.check_hold();
        }
        if to_cut.is_some() && shared.bytes_to_cut(sent) == Some(0) && shared.take_cut(sent) {
            cut(&src, &dst, shared, aborted, session);
            return;
        }
    }
    if aborted.load(Ordering::SeqCst) {
        return;
    }
    // An end of stream does not cross an outage either.
    if !shared.pass(epoch) {
        return;
    }
    // Pass the end of stream on; the other direction may still be running.
    let _ = dst.shutdown(std::net::Shutdown::Write);
}

/// Cuts a data connection: the client gets a reset at once; the server,
/// unless `reset_server` is set, gets every byte forwarded so far and then
/// an end of stream, as when a client process dies, so that a test knows
/// exactly how many bytes the server can have stored. (A reset would make
/// the server's kernel drop whatever it had not read yet.)
fn cut(
    client: &TcpStream,
    server: &TcpStream,
    shared: &Shared,
    aborted: &AtomicBool,
    session: &SessionSockets,
) {
    aborted.store(true, Ordering::SeqCst);
    log::info!("ftpfault: cutting data connection");
    abort(client);
    if shared.reset_server() {
        abort(server);
    } else {
        // The downward pump drains the server's side until it closes.
        let _ = server.set_read_timeout(Some(Duration::from_secs(10)));
        let _ = server.shutdown(std::net::Shutdown::Write);
    }
    if shared.cut_control() {
        session.abort_all();
    }
}
