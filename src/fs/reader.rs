//! Streaming reads of a remote file: one `REST offset` + `RETR` data
//! connection per open handle, read sequentially, reconnected only on a
//! seek.
//!
//! The kernel issues reads of ~128 KiB, several at once and not always in
//! order (async reads, several FUSE threads). A small *window* keeps the
//! most recent bytes taken off the stream: a read that lands inside the
//! window, or a little ahead of the stream position, is served without a
//! new connection; only a backward seek before the window or a jump far
//! ahead restarts the transfer at the new offset. Memory per handle is
//! bounded by [`WINDOW_MAX`] plus one request.

use std::io::Read;

use super::conn::Conns;
use crate::remote::{Download, RemoteError, Session};

/// Bytes kept behind the stream position for out-of-order reads.
pub const WINDOW_MAX: usize = 1 << 20;
/// A forward jump up to this far is read through instead of reconnecting.
pub const SKIP_MAX: u64 = 2 << 20;

struct Stream {
    session: Session,
    download: Download,
}

pub struct RemoteReader {
    path: String,
    stream: Option<Stream>,
    /// File offset of `window[0]`.
    win_start: u64,
    window: Vec<u8>,
    /// The stream reached the end of the file at `win_start + window.len()`.
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
            window: Vec::new(),
            eof: false,
            transfers: 0,
        }
    }

    fn pos(&self) -> u64 {
        self.win_start + self.window.len() as u64
    }

    /// Reads up to `size` bytes at `offset` (short only at end of file).
    pub fn read(
        &mut self,
        conns: &Conns,
        offset: u64,
        size: usize,
    ) -> Result<Vec<u8>, RemoteError> {
        let end = offset + size as u64;
        let in_window = offset >= self.win_start && offset <= self.pos();
        let ahead = offset >= self.pos() && offset - self.pos() <= SKIP_MAX;
        let usable = (self.stream.is_some() || self.eof) && (in_window || ahead);
        if !usable {
            self.restart(conns, offset)?;
        }
        let mut retries = 0;
        while self.pos() < end && !self.eof {
            if let Err(e) = self.fill(conns, end) {
                // Continue on a fresh connection from where we are, a few times.
                retries += 1;
                if retries > 3 {
                    return Err(e);
                }
                log::info!("read of {} interrupted ({e}); reconnecting", self.path);
                let at = self.pos();
                self.restart_keep(conns, at)?;
            }
        }
        let from = (offset.max(self.win_start) - self.win_start) as usize;
        let to = (end.min(self.pos()) - self.win_start) as usize;
        let out = if from < to {
            self.window[from..to].to_vec()
        } else {
            Vec::new()
        };
        self.trim();
        Ok(out)
    }

    fn fill(&mut self, conns: &Conns, until: u64) -> Result<(), RemoteError> {
        let Some(st) = self.stream.as_mut() else {
            return Err(RemoteError::Protocol("no stream".into()));
        };
        let want = (until - (self.win_start + self.window.len() as u64)) as usize;
        let chunk = want.clamp(64 * 1024, 256 * 1024);
        let old = self.window.len();
        self.window.resize(old + chunk, 0);
        let r = loop {
            match st.download.read(&mut self.window[old..]) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => break r,
            }
        };
        match r {
            Ok(0) => {
                self.window.truncate(old);
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
            Ok(n) => {
                self.window.truncate(old + n);
                Ok(())
            }
            Err(e) => {
                self.window.truncate(old);
                self.stream = None;
                Err(RemoteError::Io(e))
            }
        }
    }

    /// Drops old bytes so at most WINDOW_MAX stay behind the position.
    fn trim(&mut self) {
        if self.window.len() > 2 * WINDOW_MAX {
            let cut = self.window.len() - WINDOW_MAX;
            self.window.drain(..cut);
            self.win_start += cut as u64;
        }
    }

    fn restart(&mut self, conns: &Conns, offset: u64) -> Result<(), RemoteError> {
        self.window.clear();
        self.win_start = offset;
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
