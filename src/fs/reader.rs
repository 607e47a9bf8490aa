//! Streaming reads of a remote file: one ranged read from the offset
//! ([`Conn::open_read`]) per open handle, received ahead by a *producer*
//! thread while
//! the FUSE requests are answered from what already arrived.
//!
//! Why a thread: a read costs two copies, the socket receive and the FUSE
//! reply into the page cache. Done one after the other on the requesting
//! thread, a sequential read runs at the speed of their sum; with the
//! receive on its own thread the two overlap (on two cores, the speed of
//! the slower one).
//!
//! The kernel issues reads of up to 1 MiB, several at once and not always
//! in order (async readahead, several pool threads). A *window* keeps the
//! most recent bytes taken off the stream: a read that lands inside the
//! window, or not far ([`SKIP_MAX`]) past the stream or the furthest
//! request, is served without a new connection; only a backward seek
//! before the window or a jump far ahead restarts the transfer there.
//!
//! The window is a ring of [`SEGS`] segments of [`SEG`] bytes (file offset
//! `o` lives in segment `(o / SEG) % SEGS` at `o % SEG`), each behind its
//! own lock: the producer receives straight into the segment at the stream
//! position, the reader answers from a slice of another one (copied only
//! when a request spans two segments; the kernel's are aligned), and the
//! two only wait for each other when they need the same segment (then the
//! reader waits for the socket read in progress). Replies of one handle go
//! out one at a time (the caller holds the handle's lock), alongside the
//! producer. The producer stays at most [`AHEAD`] past the furthest
//! request, which leaves `SEGS * SEG - AHEAD - SEG` (5 MiB) behind it for
//! late requests. Memory per handle: `SEGS * SEG` (8 MiB), taken segment
//! by segment as the stream reaches them; a dropped window's buffers are
//! kept for the next one (at most one window's worth, process-wide).
//!
//! Lifecycle: no thread until the first read. The producer exits at the
//! end of the file (giving its connection back to the pool), when it gives
//! up after [`RETRIES`] failed reconnects in a row (the next read reports
//! the error, the one after starts over), and when the handle is dropped
//! (release, unmount): then it stops after the socket read in progress
//! (bounded by the connection's read timeout) and closes its connection.
//! A restart (seek) is done by the same thread: it drops the old transfer
//! and opens one at the new offset.

use std::io::Read;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use super::conn::Conns;
use crate::transport::{Conn, Download, RemoteError};

/// Bytes per segment of the window.
pub const SEG: usize = 1 << 20;
/// Segments in the ring: the memory bound per handle is `SEGS * SEG`.
pub const SEGS: usize = 8;
const RING: u64 = (SEG * SEGS) as u64;
/// How far past the end of the furthest request the producer receives.
pub const AHEAD: u64 = 2 << 20;
/// A forward jump up to this far past the stream (or past the furthest
/// request, if further) is read through instead of reconnecting.
pub const SKIP_MAX: u64 = 2 << 20;
/// Largest request answered at once (the kernel asks at most 1 MiB).
const MAX_REQ: usize = 2 << 20;
/// Failed reconnects in a row before the producer gives up.
pub const RETRIES: u32 = 3;

/// Producer threads alive in this process (for tests and diagnostics).
static LIVE: AtomicUsize = AtomicUsize::new(0);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Producer threads alive now, all handles together.
pub fn live_producers() -> usize {
    LIVE.load(Ordering::SeqCst)
}

/// One segment: bytes `[lo, hi)` of `data` hold file offsets
/// `base + lo .. base + hi` of transfer `gen`.
#[derive(Default)]
struct Seg {
    data: Vec<u8>,
    gen: u64,
    base: u64,
    lo: usize,
    hi: usize,
}

/// What the reader and the producer tell each other (under one lock).
#[derive(Default)]
struct Ctl {
    /// Bumped by every restart; the producer follows it.
    gen: u64,
    /// Where transfer `gen` starts.
    start: u64,
    /// File offset of the oldest byte kept.
    win_start: u64,
    /// File offset of the next byte off the stream.
    pos: u64,
    /// End of the furthest request: the producer stays within [`AHEAD`].
    demand: u64,
    /// Transfer `gen` reached the end of the file at `pos`.
    eof: bool,
    /// The producer gave up on transfer `gen`; the next read restarts.
    broken: bool,
    /// Why it gave up (reported once).
    error: Option<RemoteError>,
    /// The handle is gone.
    stop: bool,
    /// Id of the producer thread running, if any.
    thread: Option<u64>,
    /// Some read has happened (a transfer exists or existed).
    started: bool,
    /// The reader waits for bytes / the producer waits for demand.
    reader_waits: bool,
    producer_waits: bool,
}

struct Shared {
    path: String,
    ctl: Mutex<Ctl>,
    cv: Condvar,
    segs: Vec<Mutex<Seg>>,
    transfers: AtomicU32,
}

/// Segment buffers of dropped windows, for the next window: freed, they
/// would stay in the allocator's arena of the thread that filled them, and
/// each new read-ahead thread would fill another (RSS growing by a window
/// per file read). At most one window's worth is kept.
static SPARE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

fn new_buffer() -> Vec<u8> {
    lock(&SPARE).pop().unwrap_or_else(|| vec![0; SEG])
}

impl Drop for Shared {
    fn drop(&mut self) {
        let mut spare = lock(&SPARE);
        for seg in &mut self.segs {
            let seg = seg.get_mut().unwrap_or_else(|e| e.into_inner());
            if seg.data.len() == SEG && spare.len() < SEGS {
                spare.push(std::mem::take(&mut seg.data));
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn ctl(&self) -> MutexGuard<'_, Ctl> {
        lock(&self.ctl)
    }
    fn wait<'a>(&self, g: MutexGuard<'a, Ctl>) -> MutexGuard<'a, Ctl> {
        self.cv.wait(g).unwrap_or_else(|e| e.into_inner())
    }
}

pub struct RemoteReader {
    path: String,
    /// Created by the first read.
    shared: Option<Arc<Shared>>,
}

impl RemoteReader {
    pub fn new(path: &str) -> RemoteReader {
        RemoteReader {
            path: path.to_string(),
            shared: None,
        }
    }

    /// Transfers started so far (1 for a purely sequential read).
    pub fn transfers(&self) -> u32 {
        self.shared
            .as_ref()
            .map_or(0, |s| s.transfers.load(Ordering::SeqCst))
    }

    /// Reads up to `size` bytes at `offset` (short only at end of file).
    pub fn read(
        &mut self,
        conns: &Conns,
        offset: u64,
        size: usize,
    ) -> Result<Vec<u8>, RemoteError> {
        self.read_with(conns, offset, size, |d| d.to_vec())
    }

    /// Like [`read`](Self::read), but hands the bytes to `answer` as a
    /// slice of the window (no copy unless they span two segments).
    pub fn read_with<T>(
        &mut self,
        conns: &Conns,
        offset: u64,
        size: usize,
        answer: impl FnOnce(&[u8]) -> T,
    ) -> Result<T, RemoteError> {
        let end = offset.saturating_add(size.min(MAX_REQ) as u64);
        log::trace!("read of {} at {offset} +{size}", self.path);
        let sh = self
            .shared
            .get_or_insert_with(|| {
                Arc::new(Shared {
                    path: self.path.clone(),
                    ctl: Mutex::new(Ctl::default()),
                    cv: Condvar::new(),
                    segs: (0..SEGS).map(|_| Mutex::new(Seg::default())).collect(),
                    transfers: AtomicU32::new(0),
                })
            })
            .clone();
        let mut answer = Some(answer);
        // The window only moves under a read that is slower than the
        // producer by more than the window: then the bytes are fetched again.
        for _ in 0..4 {
            let (from, to, gen) = wait_for(&sh, conns, offset, end)?;
            if from > offset {
                // Dropped from the window meanwhile: the next turn restarts.
                continue;
            }
            if from >= to {
                if let Some(f) = answer.take() {
                    return Ok(f(&[]));
                }
                break;
            }
            let first = (from / SEG as u64) as usize % SEGS;
            let last = ((to - 1) / SEG as u64) as usize % SEGS;
            if first == last {
                let seg = lock(&sh.segs[first]);
                if let Some((a, b)) = slice_of(&seg, gen, from, to) {
                    if let Some(f) = answer.take() {
                        return Ok(f(&seg.data[a..b]));
                    }
                }
            } else {
                let mut joined = Vec::with_capacity((to - from) as usize);
                let mut at = from;
                while at < to {
                    let seg_end = (at - at % SEG as u64 + SEG as u64).min(to);
                    let seg = lock(&sh.segs[(at / SEG as u64) as usize % SEGS]);
                    match slice_of(&seg, gen, at, seg_end) {
                        Some((a, b)) => joined.extend_from_slice(&seg.data[a..b]),
                        None => break,
                    }
                    at = seg_end;
                }
                if at == to {
                    if let Some(f) = answer.take() {
                        return Ok(f(&joined));
                    }
                }
            }
            log::debug!("read of {} at {offset}: window moved; again", self.path);
        }
        Err(RemoteError::Protocol("read window kept moving".into()))
    }
}

impl Drop for RemoteReader {
    fn drop(&mut self) {
        if let Some(sh) = &self.shared {
            sh.ctl().stop = true;
            sh.cv.notify_all();
        }
    }
}

/// Where `[from, to)` (inside one segment) lies in `seg`, if it holds it.
fn slice_of(seg: &Seg, gen: u64, from: u64, to: u64) -> Option<(usize, usize)> {
    let base = from - from % SEG as u64;
    let a = (from - base) as usize;
    let b = (to - base) as usize;
    (seg.gen == gen && seg.base == base && seg.lo <= a && b <= seg.hi).then_some((a, b))
}

/// Makes sure a transfer covers `offset` (restarting it if not), waits
/// until `[offset, end)` arrived (or the end of the file), and returns the
/// part held with the transfer's generation.
fn wait_for(
    sh: &Arc<Shared>,
    conns: &Conns,
    offset: u64,
    end: u64,
) -> Result<(u64, u64, u64), RemoteError> {
    let mut c = sh.ctl();
    let in_window = offset >= c.win_start && offset <= c.pos;
    // Ahead of the stream but near the furthest request: the producer is
    // on its way there (async readahead asks several MiB at once).
    let ahead = offset >= c.pos && offset.saturating_sub(c.pos.max(c.demand)) <= SKIP_MAX;
    if !c.started || c.broken || !(in_window || ahead) {
        if c.started {
            log::debug!(
                "read of {} at {offset}: restart (window {}..{}, broken {})",
                sh.path,
                c.win_start,
                c.pos,
                c.broken
            );
        }
        c.gen += 1;
        c.start = offset;
        c.win_start = offset;
        c.pos = offset;
        c.demand = end;
        c.eof = false;
        c.broken = false;
        c.error = None;
        c.started = true;
        if c.thread.is_none() {
            spawn(sh, conns, &mut c)?;
        }
    }
    c.demand = c.demand.max(end);
    // A producer waiting for demand (or in a reconnect pause) must see
    // a new demand and a restart.
    if c.producer_waits {
        sh.cv.notify_all();
    }
    while c.pos < end && !c.eof && !c.broken {
        c.reader_waits = true;
        c = sh.wait(c);
    }
    c.reader_waits = false;
    if c.pos < end && c.broken {
        return Err(match c.error.take() {
            Some(e) => e,
            None => RemoteError::Protocol("read-ahead stopped".into()),
        });
    }
    Ok((offset.max(c.win_start), end.min(c.pos), c.gen))
}

fn spawn(sh: &Arc<Shared>, conns: &Conns, c: &mut Ctl) -> Result<(), RemoteError> {
    let id = NEXT_ID.fetch_add(1, Ordering::SeqCst);
    c.thread = Some(id);
    LIVE.fetch_add(1, Ordering::SeqCst);
    let exit = Exit { sh: sh.clone(), id };
    let conns = conns.clone();
    let spawned = std::thread::Builder::new()
        .name("keyfs-readahead".into())
        .spawn(move || produce(exit, conns));
    match spawned {
        Ok(_) => Ok(()),
        // The closure (and so `Exit`) was dropped: it reset `thread`, but
        // we hold the lock it needs, so undo here.
        Err(e) => {
            c.thread = None;
            c.broken = true;
            Err(RemoteError::Io(e))
        }
    }
}

/// Held by a producer thread: counts it, and on any exit not decided under
/// the lock (a panic, a failed spawn) tells the reader it is gone.
struct Exit {
    sh: Arc<Shared>,
    id: u64,
}

impl Drop for Exit {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::SeqCst);
        // A normal exit already cleared `thread` under the lock; a failed
        // spawn drops this while its caller holds the lock (and cleans up).
        let c = if std::thread::panicking() {
            Some(self.sh.ctl())
        } else {
            match self.sh.ctl.try_lock() {
                Ok(g) => Some(g),
                Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
                Err(TryLockError::WouldBlock) => None,
            }
        };
        if let Some(mut c) = c {
            if c.thread == Some(self.id) {
                c.thread = None;
                c.broken = true;
                drop(c);
                self.sh.cv.notify_all();
            }
        }
    }
}

struct Stream {
    session: Conn,
    download: Download,
}

/// Opens a transfer of `path` at `offset`: a pooled connection, or one
/// fresh one when the pooled one went stale.
fn open(conns: &Conns, path: &str, offset: u64) -> Result<Stream, RemoteError> {
    let mut session = conns.take()?;
    let download = match session.open_read(path, offset) {
        Ok(d) => d,
        Err(e) if e.server_answered() => return Err(e),
        Err(_) => {
            session = Conn::connect(conns.endpoint(), Duration::from_secs(15))?;
            session.open_read(path, offset)?
        }
    };
    Ok(Stream { session, download })
}

/// The producer: follows the reader's generation, keeps the stream
/// received up to [`AHEAD`] past the furthest request.
fn produce(exit: Exit, conns: Conns) {
    let sh = exit.sh.clone();
    let mut stream: Option<Stream> = None;
    let mut gen = 0u64;
    let mut pos = 0u64;
    let mut fails = 0u32;
    loop {
        // Wait for work; follow a restart.
        let old;
        {
            let mut c = sh.ctl();
            let mut dropped = None;
            loop {
                if c.stop {
                    c.thread = None;
                    return;
                }
                if c.gen != gen {
                    gen = c.gen;
                    pos = c.start;
                    fails = 0;
                    dropped = stream.take();
                }
                if c.eof || c.broken {
                    c.thread = None;
                    return;
                }
                if pos < c.demand.saturating_add(AHEAD) {
                    break;
                }
                c.producer_waits = true;
                c = sh.wait(c);
                c.producer_waits = false;
            }
            // The segment at `pos` forgets its previous lap.
            let s0 = pos - pos % SEG as u64;
            let keep_from = (s0 + SEG as u64).saturating_sub(RING);
            if c.win_start < keep_from {
                c.win_start = keep_from;
            }
            old = dropped;
        }
        drop(old);
        let st = match stream.as_mut() {
            Some(st) => st,
            None => match open(&conns, &sh.path, pos) {
                Ok(st) => {
                    sh.transfers.fetch_add(1, Ordering::SeqCst);
                    stream.insert(st)
                }
                Err(e) => {
                    fails += 1;
                    if e.server_answered() || fails > RETRIES {
                        give_up(&sh, gen, e);
                    } else {
                        log::info!("read of {}: {e}; reconnecting", sh.path);
                        pause(&sh, gen, fails);
                    }
                    continue;
                }
            },
        };
        let idx = (pos / SEG as u64) as usize % SEGS;
        let at = (pos % SEG as u64) as usize;
        let mut seg = lock(&sh.segs[idx]);
        if seg.data.is_empty() {
            seg.data = new_buffer();
        }
        let base = pos - at as u64;
        if seg.gen != gen || seg.base != base || seg.hi != at {
            seg.gen = gen;
            seg.base = base;
            seg.lo = at;
            seg.hi = at;
        }
        let r = loop {
            match st.download.read(&mut seg.data[at..]) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => break r,
            }
        };
        match r {
            Ok(0) => {
                drop(seg);
                let Some(Stream {
                    mut session,
                    download,
                }) = stream.take()
                else {
                    continue;
                };
                match session.finish_read(download) {
                    Ok(()) => {
                        conns.give_back(session);
                        let mut c = sh.ctl();
                        if c.gen == gen {
                            c.eof = true;
                            sh.cv.notify_all();
                        }
                    }
                    // A cut that looked like an end: ask again from here
                    // (at the real end the server sends nothing and says
                    // the transfer is complete).
                    Err(e) => {
                        fails += 1;
                        if fails > RETRIES {
                            give_up(&sh, gen, e);
                        } else {
                            log::info!("read of {} ended badly ({e}); reconnecting", sh.path);
                        }
                    }
                }
            }
            Ok(k) => {
                let mut c = sh.ctl();
                if c.gen == gen && !c.stop {
                    seg.hi = at + k;
                    pos += k as u64;
                    c.pos = pos;
                    fails = 0;
                    if c.reader_waits {
                        sh.cv.notify_all();
                    }
                }
            }
            Err(e) => {
                drop(seg);
                stream = None;
                fails += 1;
                if fails > RETRIES {
                    give_up(&sh, gen, RemoteError::Io(e));
                } else {
                    log::info!("read of {} interrupted ({e}); reconnecting", sh.path);
                    pause(&sh, gen, fails);
                }
            }
        }
    }
}

/// Marks transfer `gen` failed with `e` (unless the reader moved on).
fn give_up(sh: &Shared, gen: u64, e: RemoteError) {
    log::warn!("read of {}: giving up: {e}", sh.path);
    let mut c = sh.ctl();
    if c.gen == gen {
        c.broken = true;
        c.error = Some(e);
        sh.cv.notify_all();
    }
}

/// Waits a little before reconnect number `fails`, unless the handle goes
/// away or the reader restarts.
fn pause(sh: &Shared, gen: u64, fails: u32) {
    let until = Instant::now() + Duration::from_millis(100 * u64::from(fails));
    let mut c = sh.ctl();
    while !c.stop && c.gen == gen {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        c.producer_waits = true;
        c = sh
            .cv
            .wait_timeout(c, left)
            .map(|(g, _)| g)
            .unwrap_or_else(|e| e.into_inner().0);
        c.producer_waits = false;
    }
}
