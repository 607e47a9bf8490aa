//! A spool data file: the local copy of a file being written in the mount,
//! with its CRC-32 computed as the data arrives.
//!
//! Writes may come out of order (several FUSE threads, the writeback cache,
//! `dd seek=`), so the CRC is kept as an *extent map*: every written range
//! `[start, end)` carries the CRC of its bytes. A write that touches the end
//! of one extent or the start of the next is merged into it with
//! `crc32fast::Hasher::combine`, so a sequential copy keeps exactly one
//! extent and costs no second pass. Gaps between extents are holes (zeros)
//! and are folded in at [`SpoolFile::finish`] by hashing zeros from a fixed
//! buffer. Only when a write overlaps bytes already written (a rewrite), a
//! truncate cuts into written data, or the map grows past
//! [`MAX_EXTENTS`], does the file fall back to one sequential re-read at
//! close. Memory is bounded by `MAX_EXTENTS` small entries.
//!
//! Reads and writes use positioned I/O (`pread`/`pwrite`) on one descriptor,
//! so readers of a pending file never disturb its writer.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use crc32fast::Hasher;

/// Past this many disjoint written ranges the map is dropped and the CRC is
/// recomputed from the file at close.
pub const MAX_EXTENTS: usize = 1024;

static ZEROS: [u8; 64 * 1024] = [0u8; 64 * 1024];

#[derive(Clone)]
struct Extent {
    len: u64,
    crc: Hasher,
}

struct State {
    size: u64,
    /// start -> extent; disjoint and non-adjacent (adjacent ones are merged).
    extents: BTreeMap<u64, Extent>,
    /// The map no longer describes the file: recompute at finish.
    recompute: bool,
}

/// One spooled data file. Cheap to share behind an `Arc`: all methods take `&self`.
pub struct SpoolFile {
    file: File,
    path: PathBuf,
    state: Mutex<State>,
    /// Writes and truncates in progress through the file system (see
    /// [`Busy`]).
    busy: AtomicU32,
}

/// A write or truncate in progress in a spool file, from the moment the
/// file system picked the file under its lock until the guard drops: the
/// file system seals a version at close(2) only when none is (a write that
/// lands after the CRC was taken would make the upload fail).
pub struct Busy(Arc<SpoolFile>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

impl SpoolFile {
    /// Creates (truncating) an empty spool file at `path`.
    pub fn create(path: &Path) -> io::Result<SpoolFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(Self::with_state(file, path, 0, BTreeMap::new(), false))
    }

    /// Wraps `file`, an empty file just created (or taken from the spool's
    /// pool) at `path` and open for reading and writing.
    pub fn from_new(file: File, path: &Path) -> SpoolFile {
        Self::with_state(file, path, 0, BTreeMap::new(), false)
    }

    /// Opens an existing spool file whose CRC is already known (a job loaded
    /// from the journal); a `crc` of `None` means it must be recomputed.
    pub fn open_existing(path: &Path, crc: Option<u32>) -> io::Result<SpoolFile> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let size = file.metadata()?.len();
        let mut extents = BTreeMap::new();
        let recompute = match crc {
            Some(c) if size > 0 => {
                extents.insert(
                    0,
                    Extent {
                        len: size,
                        crc: Hasher::new_with_initial_len(c, size),
                    },
                );
                false
            }
            Some(_) => false,
            None => true,
        };
        Ok(Self::with_state(file, path, size, extents, recompute))
    }

    fn with_state(
        file: File,
        path: &Path,
        size: u64,
        extents: BTreeMap<u64, Extent>,
        recompute: bool,
    ) -> SpoolFile {
        SpoolFile {
            file,
            path: path.to_path_buf(),
            state: Mutex::new(State {
                size,
                extents,
                recompute,
            }),
            busy: AtomicU32::new(0),
        }
    }

    /// Counts a write in progress until the guard drops.
    pub fn busy(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }

    /// Whether a write or truncate is in progress (see [`Busy`]).
    pub fn is_busy(&self) -> bool {
        self.busy.load(Ordering::Acquire) > 0
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the map inconsistent in
        // a way that matters more than losing the process; recover the data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The file's logical size (the end of the last write or truncate).
    pub fn size(&self) -> u64 {
        self.lock().size
    }

    /// True when the writes so far were not simple enough to keep the
    /// running CRC (a re-read will happen at finish).
    pub fn needs_recompute(&self) -> bool {
        self.lock().recompute
    }

    /// Number of disjoint written ranges tracked (for tests and logs).
    pub fn extent_count(&self) -> usize {
        self.lock().extents.len()
    }

    /// Writes `data` at `offset`. Returns the number of bytes written: short
    /// only when the disk filled up after some bytes went through; when
    /// nothing could be written the error (e.g. ENOSPC) is returned and the
    /// file is unchanged as far as the CRC map knows.
    pub fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<usize> {
        let mut done = 0usize;
        let mut err = None;
        while done < data.len() {
            match self.file.write_at(&data[done..], offset + done as u64) {
                Ok(0) => {
                    err = Some(io::Error::from_raw_os_error(libc::ENOSPC));
                    break;
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        // The logical size is ours: a failed pwrite that extended the file
        // physically changes nothing that stat, read or the CRC see.
        if done > 0 {
            self.account(offset, &data[..done]);
        }
        match err {
            Some(e) if done == 0 => Err(e),
            _ => Ok(done),
        }
    }

    fn account(&self, offset: u64, data: &[u8]) {
        let end = offset + data.len() as u64;
        let mut st = self.lock();
        st.size = st.size.max(end);
        if st.recompute {
            return;
        }
        // Overlap with the extent starting before `end` that ends after `offset`?
        let overlaps = st
            .extents
            .range(..end)
            .next_back()
            .is_some_and(|(s, e)| s + e.len > offset);
        if overlaps {
            st.recompute = true;
            st.extents.clear();
            return;
        }
        let mut crc = Hasher::new();
        crc.update(data);
        let mut start = offset;
        let mut ext = Extent {
            len: data.len() as u64,
            crc,
        };
        // Merge with a predecessor that ends exactly at `offset`.
        let prev = st
            .extents
            .range(..offset)
            .next_back()
            .map(|(s, e)| (*s, e.len));
        if let Some((ps, plen)) = prev {
            if ps + plen == offset {
                if let Some(mut p) = st.extents.remove(&ps) {
                    p.crc.combine(&ext.crc);
                    p.len += ext.len;
                    start = ps;
                    ext = p;
                }
            }
        }
        // Merge with a successor that starts exactly at `end`.
        if let Some(next) = st.extents.remove(&end) {
            ext.crc.combine(&next.crc);
            ext.len += next.len;
        }
        st.extents.insert(start, ext);
        if st.extents.len() > MAX_EXTENTS {
            st.recompute = true;
            st.extents.clear();
        }
    }

    /// Reads up to `len` bytes at `offset`, stopping at the logical size.
    pub fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let size = self.size();
        if offset >= size {
            return Ok(Vec::new());
        }
        let want = len.min((size - offset) as usize);
        let mut buf = vec![0u8; want];
        let mut got = 0;
        while got < want {
            match self.file.read_at(&mut buf[got..], offset + got as u64) {
                Ok(0) => break, // a hole at the end that pwrite never filled: zeros
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(buf)
    }

    /// Sets the logical size. Growing adds a hole (zeros); shrinking below
    /// written data makes the CRC map fall back to a recompute.
    pub fn truncate(&self, size: u64) -> io::Result<()> {
        self.file.set_len(size)?;
        let mut st = self.lock();
        if size == 0 {
            st.extents.clear();
            st.recompute = false;
        } else if size < st.size && !st.recompute {
            let cuts = st
                .extents
                .iter()
                .next_back()
                .is_some_and(|(s, e)| s + e.len > size);
            if cuts {
                st.recompute = true;
                st.extents.clear();
            }
        }
        st.size = size;
        Ok(())
    }

    /// Flushes the data to disk (fsync).
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Copies the whole content into a new spool file at `path` (used when
    /// a file already queued for upload is opened for writing again).
    pub fn copy_to(&self, path: &Path) -> io::Result<SpoolFile> {
        self.copy_into(SpoolFile::create(path)?)
    }

    /// Copies this file's content into `out`, a new empty spool file.
    pub fn copy_into(&self, out: SpoolFile) -> io::Result<SpoolFile> {
        let size = self.size();
        let mut off = 0u64;
        while off < size {
            let chunk = self.read_at(off, 1 << 20)?;
            if chunk.is_empty() {
                break;
            }
            let n = out.write_at(off, &chunk)?;
            if n < chunk.len() {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            off += n as u64;
        }
        if out.size() < size {
            out.truncate(size)?;
        }
        Ok(out)
    }

    /// The final size and CRC-32 of the whole file. Uses the extent map when
    /// it describes the file, otherwise reads the file once.
    pub fn finish(&self) -> io::Result<(u64, u32)> {
        let st = self.lock();
        let size = st.size;
        if st.recompute {
            drop(st);
            return Ok((size, self.recompute(size)?));
        }
        let mut total = Hasher::new();
        let mut pos = 0u64;
        for (start, ext) in st.extents.iter() {
            if *start > pos {
                total.combine(&zeros_crc(start - pos));
            }
            total.combine(&ext.crc);
            pos = start + ext.len;
        }
        if size > pos {
            total.combine(&zeros_crc(size - pos));
        }
        Ok((size, total.finalize()))
    }

    fn recompute(&self, size: u64) -> io::Result<u32> {
        let mut h = Hasher::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut off = 0u64;
        while off < size {
            let want = buf.len().min((size - off) as usize);
            let n = match self.file.read_at(&mut buf[..want], off) {
                Ok(0) => {
                    // Past the physical end: the rest is a hole.
                    h.combine(&zeros_crc(size - off));
                    break;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            h.update(&buf[..n]);
            off += n as u64;
        }
        Ok(h.finalize())
    }
}

fn zeros_crc(mut len: u64) -> Hasher {
    let mut h = Hasher::new();
    while len > 0 {
        let n = len.min(ZEROS.len() as u64) as usize;
        h.update(&ZEROS[..n]);
        len -= n as u64;
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bytes(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    #[test]
    fn sequential_writes_keep_one_extent_and_no_recompute() {
        let dir = tempfile::tempdir().unwrap();
        let f = SpoolFile::create(&dir.path().join("a")).unwrap();
        let data = bytes(300_000, 7);
        for (i, c) in data.chunks(4096).enumerate() {
            assert_eq!(f.write_at((i * 4096) as u64, c).unwrap(), c.len());
        }
        assert_eq!(f.extent_count(), 1);
        assert!(!f.needs_recompute());
        assert_eq!(f.finish().unwrap(), (300_000, crc32fast::hash(&data)));
    }

    #[test]
    fn reversed_writes_merge_without_recompute() {
        let dir = tempfile::tempdir().unwrap();
        let f = SpoolFile::create(&dir.path().join("a")).unwrap();
        let data = bytes(10_000, 1);
        for i in (0..10).rev() {
            f.write_at(i * 1000, &data[i as usize * 1000..(i as usize + 1) * 1000])
                .unwrap();
        }
        assert_eq!(f.extent_count(), 1);
        assert!(!f.needs_recompute());
        assert_eq!(f.finish().unwrap().1, crc32fast::hash(&data));
    }

    #[test]
    fn holes_are_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let f = SpoolFile::create(&dir.path().join("a")).unwrap();
        f.write_at(5000, b"tail").unwrap();
        f.truncate(10_000).unwrap();
        let mut want = vec![0u8; 10_000];
        want[5000..5004].copy_from_slice(b"tail");
        assert_eq!(f.finish().unwrap(), (10_000, crc32fast::hash(&want)));
        assert_eq!(f.read_at(4998, 8).unwrap(), b"\0\0tail\0\0");
    }

    #[test]
    fn rewrite_falls_back_to_recompute() {
        let dir = tempfile::tempdir().unwrap();
        let f = SpoolFile::create(&dir.path().join("a")).unwrap();
        f.write_at(0, b"hello world").unwrap();
        f.write_at(6, b"WORLD").unwrap();
        assert!(f.needs_recompute());
        assert_eq!(f.finish().unwrap().1, crc32fast::hash(b"hello WORLD"));
    }

    #[test]
    fn truncate_shrink_and_zero() {
        let dir = tempfile::tempdir().unwrap();
        let f = SpoolFile::create(&dir.path().join("a")).unwrap();
        f.write_at(0, b"hello world").unwrap();
        f.truncate(5).unwrap();
        assert_eq!(f.finish().unwrap(), (5, crc32fast::hash(b"hello")));
        f.truncate(0).unwrap();
        f.write_at(0, b"x").unwrap();
        assert!(!f.needs_recompute());
        assert_eq!(f.finish().unwrap(), (1, crc32fast::hash(b"x")));
    }

    #[test]
    fn open_existing_appends_with_known_crc() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a");
        std::fs::write(&p, b"abc").unwrap();
        let f = SpoolFile::open_existing(&p, Some(crc32fast::hash(b"abc"))).unwrap();
        f.write_at(3, b"def").unwrap();
        assert!(!f.needs_recompute());
        assert_eq!(f.finish().unwrap(), (6, crc32fast::hash(b"abcdef")));
        let g = SpoolFile::open_existing(&p, None).unwrap();
        assert_eq!(g.finish().unwrap(), (6, crc32fast::hash(b"abcdef")));
        let h = g.copy_to(&dir.path().join("b")).unwrap();
        assert_eq!(h.finish().unwrap(), (6, crc32fast::hash(b"abcdef")));
    }

    #[test]
    fn too_many_extents_fall_back() {
        let dir = tempfile::tempdir().unwrap();
        let f = SpoolFile::create(&dir.path().join("a")).unwrap();
        let mut want = vec![0u8; (MAX_EXTENTS as u64 * 4 + 4) as usize];
        for i in 0..=MAX_EXTENTS as u64 {
            f.write_at(i * 4, b"x").unwrap();
            want[(i * 4) as usize] = b'x';
        }
        assert!(f.needs_recompute());
        want.truncate(f.size() as usize);
        assert_eq!(f.finish().unwrap().1, crc32fast::hash(&want));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Any order of writes (disjoint chunks in a random permutation, plus
        /// optional random rewrites) gives the CRC of the final bytes.
        #[test]
        fn any_write_order_gives_crc_of_final_bytes(
            len in 1usize..20_000,
            cuts in proptest::collection::vec(1usize..4000, 1..20),
            order_seed in any::<u64>(),
            rewrites in proptest::collection::vec((0usize..20_000, 1usize..500, any::<u8>()), 0..3),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let f = SpoolFile::create(&dir.path().join("p")).unwrap();
            let data = bytes(len, 3);
            let mut chunks = Vec::new();
            let mut pos = 0;
            let mut i = 0;
            while pos < len {
                let n = cuts[i % cuts.len()].min(len - pos);
                chunks.push((pos, n));
                pos += n;
                i += 1;
            }
            // Deterministic shuffle from the seed.
            let mut s = order_seed | 1;
            for k in (1..chunks.len()).rev() {
                s ^= s << 13; s ^= s >> 7; s ^= s << 17;
                chunks.swap(k, (s % (k as u64 + 1)) as usize);
            }
            let mut model = vec![0u8; len];
            for (off, n) in chunks {
                f.write_at(off as u64, &data[off..off + n]).unwrap();
                model[off..off + n].copy_from_slice(&data[off..off + n]);
            }
            for (off, n, b) in rewrites {
                let off = off % len;
                let n = n.min(len - off);
                let patch = vec![b; n];
                f.write_at(off as u64, &patch).unwrap();
                model[off..off + n].copy_from_slice(&patch);
            }
            prop_assert_eq!(f.finish().unwrap(), (len as u64, crc32fast::hash(&model)));
            prop_assert_eq!(f.read_at(0, len).unwrap(), model);
        }
    }
}
