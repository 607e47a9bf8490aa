//! A fault-injecting FTP proxy on loopback, for tests and the `ftpfault` binary.
//!
//! Tests need a bad network that behaves the same way every run: a data
//! connection cut after exactly N uploaded bytes, an upload slowed to a known
//! rate, and a count of every byte that crossed, so a test can prove that a
//! resume re-sent only the missing part. The proxy sits between an FTP client
//! and a real server:
//!
//! - the control connection is relayed line by line; `227` (PASV) and `229`
//!   (EPSV) replies are rewritten so the client opens its data connections to
//!   a proxy listener, which forwards them to the server's data port
//!   ([`control`]); active mode (PORT/EPRT) is refused with 502 so clients
//!   fall back to passive mode and no data bypasses the proxy;
//! - data connections are pumped in both directions, counted, throttled and,
//!   when armed, cut once N bytes of upload data went through: the client
//!   gets a TCP reset, the server exactly N bytes and an end of stream (or a
//!   reset too) ([`data`]); or have one upload byte inverted on the way;
//! - chosen commands can be refused (`550`) by the proxy, and chosen
//!   features hidden from FEAT, to play a server that lists a command but
//!   denies it, or one that lacks it ([`control`]);
//! - everything stops on [`FaultProxy::shutdown`] (or drop), and the binary
//!   also stops by itself after a bounded time.
//!
//! Faults can be changed while the proxy runs ([`FaultProxy::set_faults`]).
//!
//! In TCP mode ([`FaultProxy::start_tcp`], `ftpfault --tcp`) every
//! connection is relayed as one data connection (counted as data, cut and
//! throttled the same way): for HTTP, where requests and bodies share one
//! stream.

mod control;
mod data;
mod shared;

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use shared::Shared;

/// The faults to inject. All of them may be changed while the proxy runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Cut a data connection once this many upload bytes (client to server)
    /// went through it. `Some(0)` cuts at the first upload byte.
    pub cut_after: Option<u64>,
    /// How many cuts to make in total; 0 means every data connection that
    /// reaches `cut_after`.
    pub cuts: u64,
    /// Also cut the control connection of the session whose data connection
    /// was cut.
    pub cut_control: bool,
    /// Reset the server's side of a cut data connection too. By default the
    /// server receives exactly `cut_after` bytes and then an end of stream
    /// (as when the client process dies), so byte counts are exact; with a
    /// reset, the server's kernel drops whatever it had not read yet.
    pub reset_server: bool,
    /// Rate limit for data connections in bytes per second, shared by all of
    /// them, per direction.
    pub throttle: Option<u64>,
    /// Invert byte N (from 0) of the upload data of every data connection
    /// that gets that far: a corruption on the way that TCP did not catch,
    /// so the server stores, and checksums, one wrong byte.
    pub flip_byte: Option<u64>,
    /// Commands (verbs, any case) the proxy answers itself with
    /// `550 <VERB>: Operation not permitted` instead of passing them on,
    /// as ProFTPD does for a command it lists in FEAT but denies
    /// (`<Limit XCRC> DenyAll`).
    pub refuse: Vec<String>,
    /// Features dropped from the server's FEAT reply (matched on the
    /// first word, any case), e.g. `KEY` to make keyftpd look stock.
    pub hide_feat: Vec<String>,
    /// A link outage: once this many upload data bytes went through (all
    /// connections together), nothing crosses the proxy for `hold_for`, in
    /// either direction, on control and data connections alike, and new
    /// connections get no answer; then everything continues. Once.
    pub hold_after: Option<u64>,
    pub hold_for: Duration,
    /// The outage also loses every connection open when it began, as a
    /// middlebox that lost its state does: after it, they carry nothing
    /// more, not even a close, until the proxy exits. Each end learns of it
    /// only by its own timeout.
    pub hold_forget: bool,
}

/// Byte counts so far. `up` is client to server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub up_data: u64,
    pub down_data: u64,
    pub up_ctrl: u64,
    pub down_ctrl: u64,
    pub sessions: u64,
    pub data_conns: u64,
    pub cuts: u64,
    /// Outages (`hold_after`) begun.
    pub holds: u64,
    /// When the outage ends (or ended), Unix time in milliseconds; 0 if none.
    pub hold_end_ms: u64,
}

impl Stats {
    /// One line `key=value ...`, the stats file format shell tests parse.
    pub fn to_line(&self) -> String {
        format!(
            "up_data={} down_data={} up_ctrl={} down_ctrl={} sessions={} data_conns={} cuts={} holds={} hold_end_ms={}",
            self.up_data,
            self.down_data,
            self.up_ctrl,
            self.down_ctrl,
            self.sessions,
            self.data_conns,
            self.cuts,
            self.holds,
            self.hold_end_ms
        )
    }
}

/// A running proxy. Dropping it shuts it down.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Listens on `listen` (use port 0 for a free port) and forwards every
    /// session to `upstream`.
    pub fn start(listen: SocketAddr, upstream: SocketAddr, faults: Faults) -> io::Result<Self> {
        Self::start_mode(listen, upstream, faults, false)
    }

    /// Like [`FaultProxy::start`], relaying each connection as a plain TCP
    /// stream (no FTP control parsing); the upload direction is client to
    /// server.
    pub fn start_tcp(listen: SocketAddr, upstream: SocketAddr, faults: Faults) -> io::Result<Self> {
        Self::start_mode(listen, upstream, faults, true)
    }

    fn start_mode(
        listen: SocketAddr,
        upstream: SocketAddr,
        faults: Faults,
        tcp: bool,
    ) -> io::Result<Self> {
        let listener = TcpListener::bind(listen)?;
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let shared = Arc::new(Shared::new(upstream, faults));
        let sh = Arc::clone(&shared);
        let acceptor = thread::Builder::new()
            .name("ftpfault-accept".into())
            .spawn(move || accept_loop(listener, sh, tcp))?;
        Ok(FaultProxy {
            addr,
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The byte counts so far.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// The faults now in force.
    pub fn faults(&self) -> Faults {
        self.shared.faults()
    }

    /// Replaces the faults; applies to bytes forwarded from now on.
    pub fn set_faults(&self, faults: Faults) {
        self.shared.set_faults(faults);
    }

    /// Stops accepting, closes every connection, and waits for the acceptor.
    pub fn shutdown(&mut self) {
        self.shared.stop();
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>, tcp: bool) {
    while !shared.stopped.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                let sh = Arc::clone(&shared);
                let spawned = thread::Builder::new()
                    .name("ftpfault-session".into())
                    .spawn(move || {
                        if tcp {
                            data::run_tcp(client, sh)
                        } else {
                            control::run_session(client, sh)
                        }
                    });
                if let Err(e) = spawned {
                    log::warn!("ftpfault: cannot start session thread: {e}");
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                log::warn!("ftpfault: accept: {e}");
                thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Parses a byte count or rate: a number with an optional `K`, `M` or `G`
/// suffix (powers of 1024), e.g. `512K`, `8M`, `1000`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                _ => return Err(format!("bad size suffix in {s:?} (use K, M or G)")),
            };
            (&t[..i], m)
        }
        _ => (t, 1),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("bad size {s:?} (expected e.g. 1000, 512K, 8M)"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("512K"), Ok(512 * 1024));
        assert_eq!(parse_size("8m"), Ok(8 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert!(parse_size("").is_err());
        assert!(parse_size("12X").is_err());
        assert!(parse_size("K").is_err());
        assert!(parse_size("99999999999999G").is_err());
    }

    #[test]
    fn stats_line_format() {
        let s = Stats {
            up_data: 1,
            down_data: 2,
            up_ctrl: 3,
            down_ctrl: 4,
            sessions: 5,
            data_conns: 6,
            cuts: 7,
            holds: 1,
            hold_end_ms: 9,
        };
        assert_eq!(
            s.to_line(),
            "up_data=1 down_data=2 up_ctrl=3 down_ctrl=4 sessions=5 data_conns=6 cuts=7 \
             holds=1 hold_end_ms=9"
        );
    }
}
