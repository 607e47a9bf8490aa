//! Streaming reads of a remote file: one `REST offset` + `RETR` data
//! connection per open handle, read sequentially, reconnected only on a
//! seek.
//!
//! The kernel issues reads of ~128 KiB, several at once and not always in
//! order (async reads, several FUSE threads). A *window* keeps the most
//! recent bytes taken off the stream: a read that lands inside the window,
//! or a little ahead of the stream position, is served without a new
//! connection; only a backward seek before the window or a jump far ahead
//! restarts the transfer at the new offset.
//!
//! The window is a fixed ring of [`RING`] bytes (file offset `o` lives at
//! `ring[o % RING]`), so the hot path copies each byte only where the
//! kernel must: the socket is read straight into the ring (no zero-fill,
//! no shifting of old bytes), and the answer is handed to the caller as a
//! slice of the ring (copied only in the rare case it wraps). After each
//! answer the stream is read up to [`READ_AHEAD`] further, so the RETR
//! keeps flowing while the kernel copies the reply out. Memory per handle
//! is bounded by [`RING`], allocated zeroed (untouched pages cost nothing).

use std::io::Read;

use super::conn::Conns;
use crate::remote::{Download, RemoteError, Session};

/// Size of the ring that holds the window (a power of two).
pub const RING: usize = 4 << 20;
/// Largest single socket read.
const CHUNK: usize = 256 * 1024;
/// Bytes read past the end of the last answer, while the kernel works.
pub const READ_AHEAD: u64 = 1 << 20;
/// Bytes always kept behind the stream position for out-of-order reads.
pub const WINDOW_MAX: usize = RING - CHUNK;
/// A forward jump up to this far is read through instead of reconnecting.
pub const SKIP_MAX: u64 = 2 << 20;

struct Stream {
    session: Session,
    download: Download,
}

pub struct RemoteReader {
    path: String,
    stream: Option<Stream>,
    /// File offset of the oldest byte kept.
    win_start: u64,
    /// File offset of the next byte off the stream.
    pos: u64,
    /// `RING` bytes once the first fill happens.
    ring: Vec<u8>,
    /// The stream reached the end of the file at `pos`.
    eof: bool,
    /// Transfers started (1 for a purely sequential read).
    pub transfers: u32,
}

impl RemoteReader {
    pub fn new(path: &str) -> RemoteReader {
        RemoteReader {
            path: path.to_string(),
            stream: None,
            win_start: 0,
            pos: 0,
            ring: Vec::new(),
            eof: false,
            transfers: 0,
        }
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
    /// slice (no copy), then reads ahead on the stream.
    pub fn read_with<T>(
        &mut self,
        conns: &Conns,
        offset: u64,
        size: usize,
        answer: impl FnOnce(&[u8]) -> T,
    ) -> Result<T, RemoteError> {
        let size = size.min(WINDOW_MAX - CHUNK);
        let end = offset + size as u64;
        let in_window = offset >= self.win_start && offset <= self.pos;
        let ahead = offset >= self.pos && offset - self.pos <= SKIP_MAX;
        let usable = (self.stream.is_some() || self.eof) && (in_window || ahead);
        if !usable {
            self.restart(conns, offset)?;
        }
        let mut retries = 0;
        while self.pos < end && !self.eof {
            if let Err(e) = self.fill(conns, end) {
                // Continue on a fresh connection from where we are, a few times.
                retries += 1;
                if retries > 3 {
                    return Err(e);
                }
                log::info!("read of {} interrupted ({e}); reconnecting", self.path);
                self.restart_keep(conns, self.pos)?;
            }
        }
        let from = offset.max(self.win_start);
        let to = end.min(self.pos);
        let out = if from < to {
            let a = (from % RING as u64) as usize;
            let len = (to - from) as usize;
            if a + len <= RING {
                answer(&self.ring[a..a + len])
            } else {
                let mut v = Vec::with_capacity(len);
                v.extend_from_slice(&self.ring[a..]);
                v.extend_from_slice(&self.ring[..len - (RING - a)]);
                answer(&v)
            }
        } else {
            answer(&[])
        };
        // Keep the stream flowing while the kernel copies the answer out.
        // An error here only drops the stream; the next read reconnects.
        let ahead_to = end + READ_AHEAD;
        while self.pos < ahead_to && !self.eof && self.stream.is_some() {
            if self.fill(conns, ahead_to).is_err() {
                break;
            }
        }
        Ok(out)
    }

    /// One socket read (up to [`CHUNK`], not past `until` by more than
    /// needed) into the ring at the stream position, dropping the oldest
    /// bytes to make room.
    fn fill(&mut self, conns: &Conns, until: u64) -> Result<(), RemoteError> {
        let Some(st) = self.stream.as_mut() else {
            return Err(RemoteError::Protocol("no stream".into()));
        };
        if self.ring.is_empty() {
            self.ring = vec![0; RING];
        }
        let want = (until.saturating_sub(self.pos) as usize).clamp(64 * 1024, CHUNK);
        let at = (self.pos % RING as u64) as usize;
        let n = want.min(RING - at);
        // Room for n more bytes: keep at most RING - n behind.
        let keep_from = (self.pos + n as u64).saturating_sub(RING as u64);
        if self.win_start < keep_from {
            self.win_start = keep_from;
        }
        let r = loop {
            match st.download.read(&mut self.ring[at..at + n]) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => break r,
            }
        };
        match r {
            Ok(0) => {
                self.eof = true;
                if let Some(Stream {
                    mut session,
                    download,
                }) = self.stream.take()
                {
                    if session.finish_retr(download).is_ok() {
                        conns.give_back(session);
                    }
                }
                Ok(())
            }
            Ok(k) => {
                self.pos += k as u64;
                Ok(())
            }
            Err(e) => {
                self.stream = None;
                Err(RemoteError::Io(e))
            }
        }
    }

    fn restart(&mut self, conns: &Conns, offset: u64) -> Result<(), RemoteError> {
        self.win_start = offset;
        self.pos = offset;
        self.restart_keep(conns, offset)
    }

    /// Opens a new transfer at `offset` (== the current position).
    fn restart_keep(&mut self, conns: &Conns, offset: u64) -> Result<(), RemoteError> {
        self.stream = None;
        self.eof = false;
        self.transfers += 1;
        let mut session = conns.take()?;
        let download = match session.retr_at(&self.path, offset) {
            Ok(d) => d,
            Err(e @ RemoteError::Reply { .. }) => return Err(e),
            Err(_) => {
                // A pooled connection that went stale: one fresh try.
                session = crate::remote::Session::connect(
                    conns.endpoint(),
                    std::time::Duration::from_secs(15),
                )?;
                session.retr_at(&self.path, offset)?
            }
        };
        self.stream = Some(Stream { session, download });
        Ok(())
    }
}
