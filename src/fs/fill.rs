//! Lazy content of a version opened for writing over a server file.
//!
//! Opening an existing server file for writing (without O_TRUNC) used to
//! download the whole file into the spool before the open returned, even
//! when the program went on to truncate it (`truncate -s 0`, `dd seek=`)
//! or to overwrite it. Now the version starts as a spool file of the
//! server's size whose bytes are *missing*: a [`Fill`] remembers which
//! ranges still live only on the server. A write covers its range (those
//! bytes never need fetching), a truncate drops everything past the new
//! size, a read fetches the missing part of what it reads (with some read
//! ahead), and the version is completed (every missing range fetched)
//! before it is sealed for upload, or renamed or deleted on the server.
//!
//! One mutex orders writes, truncates and fetches of a version, and is
//! held across a fetch: a write waits for the fetch in progress, so fetched
//! bytes never land over newer written ones (the fetch skips what a write
//! covered first; a write after it simply overwrites).

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::sync::{Mutex, MutexGuard};

use super::conn::Conns;
use crate::spool::file::SpoolFile;

/// A read of a missing range fetches at least this much (sequential reads
/// then cost one download each MiB, not one per request).
pub const READ_AHEAD: u64 = 1 << 20;
/// Missing ranges at most this far apart are fetched by one transfer.
const MERGE_GAP: u64 = 1 << 20;

/// The server-only ranges of one version, and where to fetch them.
pub struct Fill {
    inner: Mutex<Inner>,
}

struct Inner {
    /// The server path holding the old content.
    remote: String,
    /// Its size when the version was made: a range ending there is read to
    /// the end of the transfer (the connection stays usable).
    size: u64,
    /// start -> end, disjoint, not adjacent.
    missing: BTreeMap<u64, u64>,
}

fn to_io(e: crate::transport::RemoteError) -> io::Error {
    io::Error::from_raw_os_error(e.to_errno())
}

impl Fill {
    /// The whole of `[0, size)` is on the server at `remote`.
    pub fn new(remote: &str, size: u64) -> Fill {
        let mut missing = BTreeMap::new();
        if size > 0 {
            missing.insert(0, size);
        }
        Fill {
            inner: Mutex::new(Inner {
                remote: remote.to_string(),
                size,
                missing,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True once nothing is left to fetch.
    pub fn is_done(&self) -> bool {
        self.lock().missing.is_empty()
    }

    /// Bytes still to fetch.
    pub fn missing_bytes(&self) -> u64 {
        self.lock().missing.iter().map(|(s, e)| e - s).sum()
    }

    /// Writes `data` at `offset` into `spool`; those bytes no longer need
    /// fetching.
    pub fn write(&self, spool: &SpoolFile, offset: u64, data: &[u8]) -> io::Result<usize> {
        let mut g = self.lock();
        let n = spool.write_at(offset, data)?;
        g.remove(offset, offset + n as u64);
        Ok(n)
    }

    /// Truncates `spool`; nothing past `size` is fetched any more.
    pub fn truncate(&self, spool: &SpoolFile, size: u64) -> io::Result<()> {
        let mut g = self.lock();
        spool.truncate(size)?;
        g.remove(size, u64::MAX);
        Ok(())
    }

    /// Fetches the missing parts of `[from, to)` into `spool`.
    pub fn fetch(&self, conns: &Conns, spool: &SpoolFile, from: u64, to: u64) -> io::Result<()> {
        let mut g = self.lock();
        let parts: Vec<(u64, u64)> = g
            .missing
            .iter()
            .map(|(s, e)| ((*s).max(from), (*e).min(to)))
            .filter(|(s, e)| s < e)
            .collect();
        // Parts close together share one transfer (the bytes between them
        // are read and dropped): a transfer stopped early wastes what the
        // server already had in flight, about as much.
        let mut i = 0;
        while i < parts.len() {
            let mut j = i + 1;
            while j < parts.len() && parts[j].0 - parts[j - 1].1 <= MERGE_GAP {
                j += 1;
            }
            let run = &parts[i..j];
            let at_end = run[run.len() - 1].1 == g.size;
            fetch_run(conns, &g.remote, spool, run, at_end)?;
            for (s, e) in run {
                g.remove(*s, *e);
            }
            i = j;
        }
        Ok(())
    }

    /// Fetches what a read of `[offset, offset + len)` needs, reading ahead
    /// up to [`READ_AHEAD`].
    pub fn fetch_for_read(
        &self,
        conns: &Conns,
        spool: &SpoolFile,
        offset: u64,
        len: u64,
    ) -> io::Result<()> {
        let end = offset.saturating_add(len.max(READ_AHEAD));
        let needed = {
            let g = self.lock();
            g.missing
                .range(..offset.saturating_add(len))
                .next_back()
                .is_some_and(|(_, e)| *e > offset)
        };
        if needed {
            self.fetch(conns, spool, offset, end)?;
        }
        Ok(())
    }

    /// Fetches everything still missing.
    pub fn complete(&self, conns: &Conns, spool: &SpoolFile) -> io::Result<()> {
        self.fetch(conns, spool, 0, u64::MAX)
    }
}

impl Inner {
    /// Drops `[from, to)` from the missing ranges.
    fn remove(&mut self, from: u64, to: u64) {
        if from >= to {
            return;
        }
        let hit: Vec<(u64, u64)> = self
            .missing
            .range(..to)
            .filter(|(_, e)| **e > from)
            .map(|(s, e)| (*s, *e))
            .collect();
        for (s, e) in hit {
            self.missing.remove(&s);
            if s < from {
                self.missing.insert(s, from);
            }
            if e > to {
                self.missing.insert(to, e);
            }
        }
    }
}

/// Downloads the ranges `parts` (sorted, disjoint) of `remote` into
/// `spool` at the same offsets, in one transfer from the first one's start.
/// When the last one ends at the end of the file the transfer is read to
/// its end and the connection reused; otherwise it is stopped early and
/// dropped.
fn fetch_run(
    conns: &Conns,
    remote: &str,
    spool: &SpoolFile,
    parts: &[(u64, u64)],
    at_end: bool,
) -> io::Result<()> {
    let (Some(first), Some(last)) = (parts.first(), parts.last()) else {
        return Ok(());
    };
    let (from, to) = (first.0, last.1);
    let mut session = conns.take().map_err(to_io)?;
    let mut dl = session.open_read(remote, from).map_err(to_io)?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut off = from;
    while off < to {
        let want = buf.len().min((to - off) as usize);
        let n = match dl.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let end = off + n as u64;
        for (s, e) in parts.iter().filter(|(s, e)| *s < end && *e > off) {
            let (a, b) = ((*s).max(off), (*e).min(end));
            let chunk = &buf[(a - off) as usize..(b - off) as usize];
            if spool.write_at(a, chunk)? < chunk.len() {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
        }
        off = end;
    }
    if off < to {
        // The server's file is shorter than it was listed: it changed
        // under us, and the old content cannot be completed.
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("{remote}: the server's copy ended at {off}, expected {to} bytes"),
        ));
    }
    if at_end {
        // Drain to the end so the session can be reused.
        loop {
            match dl.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        session.finish_read(dl).map_err(to_io)?;
        conns.give_back(session);
    }
    // Otherwise the stream and the session are dropped: a read stopped
    // early leaves the connection in an unknown state.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(f: &Fill) -> Vec<(u64, u64)> {
        f.lock().missing.iter().map(|(s, e)| (*s, *e)).collect()
    }

    #[test]
    fn writes_and_truncates_shrink_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let spool = SpoolFile::create(&dir.path().join("s")).unwrap();
        let f = Fill::new("x", 100);
        f.write(&spool, 10, &[1; 10]).unwrap();
        assert_eq!(ranges(&f), vec![(0, 10), (20, 100)]);
        f.write(&spool, 0, &[1; 5]).unwrap();
        assert_eq!(ranges(&f), vec![(5, 10), (20, 100)]);
        f.truncate(&spool, 50).unwrap();
        assert_eq!(ranges(&f), vec![(5, 10), (20, 50)]);
        assert_eq!(f.missing_bytes(), 35);
        f.truncate(&spool, 0).unwrap();
        assert!(f.is_done());
        assert!(Fill::new("x", 0).is_done());
    }
}
