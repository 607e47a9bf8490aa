//! State shared by every connection of one proxy: the faults in force, the
//! byte counters, the throttle's pacing clocks, and a registry of open
//! sockets so that shutdown can close them all (threads blocked in `read`
//! wake up when their socket is shut down).

use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use super::{Faults, Stats};

/// Direction of a byte stream: `Up` is client to server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dir {
    Up,
    Down,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub up_data: AtomicU64,
    pub down_data: AtomicU64,
    pub up_ctrl: AtomicU64,
    pub down_ctrl: AtomicU64,
    pub sessions: AtomicU64,
    pub data_conns: AtomicU64,
    pub cuts: AtomicU64,
    pub holds: AtomicU64,
    pub hold_end_ms: AtomicU64,
}

pub(crate) struct Shared {
    pub upstream: SocketAddr,
    pub stopped: AtomicBool,
    pub counters: Counters,
    faults: Mutex<Faults>,
    sockets: Mutex<HashMap<u64, TcpStream>>,
    next_id: AtomicU64,
    /// Per direction: the instant at which the bytes paced so far are "sent".
    pace: [Mutex<Option<Instant>>; 2],
    /// The end of the outage under way (see `Faults::hold_after`).
    hold_until: Mutex<Option<Instant>>,
}

/// Locks a mutex, recovering the data if a thread panicked while holding it
/// (the data here stays consistent: counters and plain values).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    pub fn new(upstream: SocketAddr, faults: Faults) -> Self {
        Shared {
            upstream,
            stopped: AtomicBool::new(false),
            counters: Counters::default(),
            faults: Mutex::new(faults),
            sockets: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            pace: [Mutex::new(None), Mutex::new(None)],
            hold_until: Mutex::new(None),
        }
    }

    pub fn faults(&self) -> Faults {
        lock(&self.faults).clone()
    }

    pub fn set_faults(&self, f: Faults) {
        *lock(&self.faults) = f;
    }

    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        let g = |a: &AtomicU64| a.load(Ordering::SeqCst);
        Stats {
            up_data: g(&c.up_data),
            down_data: g(&c.down_data),
            up_ctrl: g(&c.up_ctrl),
            down_ctrl: g(&c.down_ctrl),
            sessions: g(&c.sessions),
            data_conns: g(&c.data_conns),
            cuts: g(&c.cuts),
            holds: g(&c.holds),
            hold_end_ms: g(&c.hold_end_ms),
        }
    }

    /// If the faults call for a cut of a data connection that has sent
    /// `sent` upload bytes, consumes one cut and returns true.
    pub fn take_cut(&self, sent: u64) -> bool {
        let f = lock(&self.faults);
        match f.cut_after {
            Some(n) if sent >= n => {
                let done = self.counters.cuts.load(Ordering::SeqCst);
                if f.cuts == 0 || done < f.cuts {
                    self.counters.cuts.fetch_add(1, Ordering::SeqCst);
                    true
                } else {
                    false
                }
            }
            _ => false,
        }
    }

    /// How many more upload bytes this connection may forward before its
    /// cut point, when a cut is still to be made.
    pub fn bytes_to_cut(&self, sent: u64) -> Option<u64> {
        let f = lock(&self.faults);
        let n = f.cut_after?;
        let done = self.counters.cuts.load(Ordering::SeqCst);
        if f.cuts != 0 && done >= f.cuts {
            return None;
        }
        Some(n.saturating_sub(sent))
    }

    /// Whether the proxy answers `verb` (upper case) with 550 itself.
    pub fn refuses(&self, verb: &[u8]) -> bool {
        let f = lock(&self.faults);
        f.refuse
            .iter()
            .any(|r| r.as_bytes().eq_ignore_ascii_case(verb))
    }

    /// Whether a FEAT line (` NAME args`) names a hidden feature.
    pub fn hides_feature(&self, line: &[u8]) -> bool {
        let name = line
            .split(|b| b.is_ascii_whitespace())
            .find(|w| !w.is_empty())
            .unwrap_or_default();
        let f = lock(&self.faults);
        f.hide_feat
            .iter()
            .any(|h| h.as_bytes().eq_ignore_ascii_case(name))
    }

    pub fn cut_control(&self) -> bool {
        lock(&self.faults).cut_control
    }

    pub fn reset_server(&self) -> bool {
        lock(&self.faults).reset_server
    }

    /// Chunk size for one read, so a throttled stream is paced smoothly
    /// (about 20 chunks per second).
    pub fn chunk_len(&self, max: usize) -> usize {
        match lock(&self.faults).throttle {
            Some(r) if r > 0 => (r / 20).clamp(512, max as u64) as usize,
            _ => max,
        }
    }

    /// Sleeps as long as the throttle requires after `n` bytes went `dir`.
    pub fn pace(&self, dir: Dir, n: usize) {
        let rate = match lock(&self.faults).throttle {
            Some(r) if r > 0 => r,
            _ => return,
        };
        let cost = Duration::from_secs_f64(n as f64 / rate as f64);
        let until = {
            let mut p = lock(&self.pace[dir as usize]);
            let now = Instant::now();
            let start = match *p {
                Some(t) if t > now => t,
                _ => now,
            };
            let until = start + cost;
            *p = Some(until);
            until
        };
        // Sleep in short slices so a shutdown is not held up.
        loop {
            let now = Instant::now();
            if now >= until || self.stopped.load(Ordering::SeqCst) {
                return;
            }
            thread::sleep((until - now).min(Duration::from_millis(100)));
        }
    }

    /// Starts the outage once `hold_after` upload bytes went through.
    pub fn check_hold(&self) {
        let f = lock(&self.faults);
        let Some(n) = f.hold_after else { return };
        if self.counters.up_data.load(Ordering::SeqCst) < n {
            return;
        }
        let mut h = lock(&self.hold_until);
        if h.is_some() || self.counters.holds.load(Ordering::SeqCst) > 0 {
            return;
        }
        *h = Some(Instant::now() + f.hold_for);
        let end = std::time::SystemTime::now() + f.hold_for;
        let ms = end
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        self.counters.hold_end_ms.store(ms, Ordering::SeqCst);
        self.counters.holds.fetch_add(1, Ordering::SeqCst);
        log::info!("ftpfault: link down for {:?}", f.hold_for);
    }

    /// Blocks while an outage is under way (every relay and connect passes here).
    pub fn gate(&self) {
        loop {
            let until = *lock(&self.hold_until);
            let now = Instant::now();
            match until {
                Some(t) if now < t && !self.stopped.load(Ordering::SeqCst) => {
                    thread::sleep((t - now).min(Duration::from_millis(20)))
                }
                _ => return,
            }
        }
    }

    /// The outages begun so far: a connection notes it once connected, to
    /// tell later whether an outage came during its life.
    pub fn epoch(&self) -> u64 {
        self.counters.holds.load(Ordering::SeqCst)
    }

    /// [`Shared::gate`] for a connection made at `epoch`. False when an
    /// outage that forgets connections came since: then it returns only
    /// once the proxy stops, the connection's sockets held open and silent
    /// meanwhile, and the caller relays nothing more (a close neither).
    pub fn pass(&self, epoch: u64) -> bool {
        self.gate();
        if !(lock(&self.faults).hold_forget && self.epoch() > epoch) {
            return true;
        }
        while !self.stopped.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// Remembers a socket so that shutdown can close it. Returns its id.
    pub fn register(&self, s: &TcpStream) -> Option<u64> {
        let clone = s.try_clone().ok()?;
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        lock(&self.sockets).insert(id, clone);
        if self.stopped.load(Ordering::SeqCst) {
            let _ = s.shutdown(Shutdown::Both);
        }
        Some(id)
    }

    pub fn unregister(&self, id: Option<u64>) {
        if let Some(id) = id {
            lock(&self.sockets).remove(&id);
        }
    }

    /// Stops the proxy: every registered socket is shut down.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        for s in lock(&self.sockets).values() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// Resets a TCP connection at once (RST to the peer, no FIN), even while
/// other threads hold duplicates of the socket: `connect(AF_UNSPEC)` makes
/// Linux disconnect the socket, which sends a reset and wakes blocked
/// readers. A plain shutdown follows as a fallback.
pub(crate) fn abort(s: &TcpStream) {
    // SAFETY: a zeroed sockaddr with family AF_UNSPEC is a valid argument
    // to connect(2); the fd is owned by `s` and stays open during the call.
    unsafe {
        let mut sa: libc::sockaddr = std::mem::zeroed();
        sa.sa_family = libc::AF_UNSPEC as libc::sa_family_t;
        libc::connect(
            s.as_raw_fd(),
            &sa,
            std::mem::size_of::<libc::sockaddr>() as libc::socklen_t,
        );
    }
    let _ = s.shutdown(Shutdown::Both);
}
