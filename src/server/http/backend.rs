//! The one seam between the HTTP face and keyftpd's file side: every file
//! system and login action of the HTTP handlers goes through [`Backend`],
//! over the same root, metadata store, busy set and accounts as the FTP
//! sessions, so an upload may start on one face and finish on the other.
//!
//! An upload begins on a blocking thread ([`Backend::start`]): it claims
//! the path, checks the resume rule and records the file as partial before
//! the first byte. A [`Writer`] then writes and hashes each chunk where the
//! body is received, and records complete-or-partial (CRC against key) on
//! a blocking thread again when the body ends or is cut.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::key::Key;
use crate::server::gate::LoginGate;
use crate::server::listener::Shared;
use crate::server::paths::{PathError, VPath};
use crate::server::store::{self, ErrorKind, KeyState, Mode, Start, Stat, StoreError};

/// Why a file action failed.
#[derive(Debug)]
pub(crate) enum BackendError {
    /// The path was refused, or a parent is missing.
    Path(PathError),
    /// The target is missing.
    NotFound,
    /// A directory where a file was needed.
    IsDir,
    /// The target exists and may not be replaced.
    Exists,
    /// Another upload of the path is in progress.
    Busy,
    /// The resume rule refused the upload; the file's state as it is.
    Conflict(UpState),
    /// Not allowed on this path (the root; a directory into itself).
    Refused(&'static str),
    /// Anything else the store said.
    Store(StoreError),
}

impl From<StoreError> for BackendError {
    fn from(e: StoreError) -> Self {
        match e.kind {
            ErrorKind::NotFound => BackendError::NotFound,
            ErrorKind::Busy => BackendError::Busy,
            _ => BackendError::Store(e),
        }
    }
}

impl From<PathError> for BackendError {
    fn from(e: PathError) -> Self {
        BackendError::Path(e)
    }
}

pub(crate) type BResult<T> = Result<T, BackendError>;

/// The seed's upload state of one path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct UpState {
    pub size: u64,
    pub key: Option<Key>,
    pub complete: bool,
}

impl UpState {
    /// The wire form: `{"size": N, "key": "0x1A2B3C4D" or null, "complete": bool}`.
    pub fn json(&self) -> String {
        let key = match self.key {
            Some(k) => format!("\"0x{:08X}\"", k.0),
            None => "null".into(),
        };
        format!(
            "{{\"size\": {}, \"key\": {key}, \"complete\": {}}}",
            self.size, self.complete
        )
    }
}

/// One directory entry or one stat.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub name: String,
    pub dir: bool,
    pub size: u64,
    pub mtime: SystemTime,
    pub key: Option<Key>,
    /// None for a directory or a file keyftpd has no record of.
    pub state: Option<KeyState>,
}

/// How an upload treats what is already stored.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Begin {
    /// Start from byte 0, binding this key (None clears the stored key).
    Replace(Option<Key>),
    /// Continue at `offset`, which must be the stored size. With
    /// `expect: Some(k)` the stored key must equal `k` (and stays);
    /// with None the stored key is kept whatever it is.
    Resume {
        offset: u64,
        expect: Option<Option<Key>>,
    },
}

/// Extra rules of one upload (tus).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct UpOpts {
    /// The file's declared final length: without a key, the upload is
    /// complete only when the file reaches it.
    pub total: Option<u64>,
    /// CRC-32 the bytes of this request must have; on a mismatch (or a
    /// cut, which cannot be verified) they are dropped again.
    pub body_crc: Option<u32>,
}

/// How an upload ended.
#[derive(Debug)]
pub(crate) struct UpEnd {
    pub state: UpState,
    /// The request's bytes did not match `UpOpts::body_crc` and were dropped.
    pub checksum_mismatch: bool,
    /// A store error that stopped the upload or its record.
    pub error: Option<StoreError>,
}

/// The HTTP face's view of keyftpd's shared state.
#[derive(Clone)]
pub(crate) struct Backend {
    sh: Arc<Shared>,
}

fn entry(name: String, st: &Stat) -> Entry {
    let dir = st.is_dir();
    Entry {
        name,
        dir,
        size: if dir { 0 } else { st.len() },
        mtime: st.md.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        key: st.meta.filter(|_| !dir).and_then(|m| m.key),
        state: st.meta.filter(|_| !dir).map(|m| m.state),
    }
}

fn state_of(st: &Stat) -> UpState {
    UpState {
        size: st.len(),
        key: st.meta.and_then(|m| m.key),
        // A file keyftpd has no record of was put there whole.
        complete: st.meta.is_none_or(|m| m.state == KeyState::Complete),
    }
}

/// The parent directory of `v` (the root for the root).
fn parent(v: &VPath) -> VPath {
    v.resolve("..").unwrap_or_default()
}

impl Backend {
    pub fn new(sh: Arc<Shared>) -> Backend {
        Backend { sh }
    }

    /// True once the server is stopping.
    pub fn stopping(&self) -> bool {
        self.sh.stop.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Asks the whole server (both faces) to stop.
    pub fn stop(&self) {
        self.sh
            .stop
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// The login gate every face shares (per-address delays and bans).
    pub fn gate(&self) -> &LoginGate {
        &self.sh.gate
    }

    /// True when requests without credentials may read.
    pub fn anonymous_allowed(&self) -> bool {
        self.sh.cfg.accounts.is_anonymous("anonymous")
    }

    fn store(&self) -> &store::Store {
        &self.sh.store
    }

    /// Stat of `v`; NotFound when missing.
    pub fn stat(&self, v: &VPath) -> BResult<Entry> {
        let st = self.store().stat(v)?;
        Ok(entry(v.name().unwrap_or("").to_string(), &st))
    }

    /// The seed's state of `v`: a missing file is size 0, no key, not
    /// complete; a missing parent is NotFound; a directory IsDir.
    pub fn state(&self, v: &VPath) -> BResult<UpState> {
        if v.is_root() {
            return Err(BackendError::IsDir);
        }
        match self.store().stat(v) {
            Ok(st) if st.is_dir() => Err(BackendError::IsDir),
            Ok(st) if st.is_file() => Ok(state_of(&st)),
            Ok(_) => Err(BackendError::Refused("not a regular file")),
            Err(e) if e.kind == ErrorKind::NotFound => match self.store().stat(&parent(v)) {
                Ok(p) if p.is_dir() => Ok(UpState {
                    size: 0,
                    key: None,
                    complete: false,
                }),
                _ => Err(BackendError::NotFound),
            },
            Err(e) => Err(e.into()),
        }
    }

    /// The entries of directory `v`, sorted by name (the store leaves out
    /// its own directory, special files and escaping symlinks).
    pub fn list(&self, v: &VPath) -> BResult<Vec<Entry>> {
        Ok(self
            .store()
            .list(v)?
            .iter()
            .map(|e| entry(e.name.clone(), &e.stat))
            .collect())
    }

    /// Records the declared final length of an upload of `v` (tus) in a
    /// `user.keyftpd.length` attribute beside the file's record.
    pub fn set_declared_len(&self, v: &VPath, n: u64) -> bool {
        let Ok((f, _)) = self.store().open_read(v) else {
            return false;
        };
        rustix::fs::fsetxattr(
            &f,
            XATTR_LEN,
            n.to_string().as_bytes(),
            rustix::fs::XattrFlags::empty(),
        )
        .is_ok()
    }

    /// The declared final length of `v`, if one was recorded.
    pub fn declared_len(&self, v: &VPath) -> Option<u64> {
        let (f, _) = self.store().open_read(v).ok()?;
        let mut buf = [0u8; 32];
        let n = rustix::fs::fgetxattr(&f, XATTR_LEN, &mut buf[..]).ok()?;
        std::str::from_utf8(&buf[..n]).ok()?.parse().ok()
    }

    /// Opens file `v` for reading.
    pub fn open_read(&self, v: &VPath) -> BResult<(File, Entry)> {
        match self.store().open_read(v) {
            Ok((f, st)) => Ok((f, entry(v.name().unwrap_or("").to_string(), &st))),
            Err(e) if e.kind == ErrorKind::NotRegular && self.stat(v).is_ok_and(|e| e.dir) => {
                Err(BackendError::IsDir)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// CRC-32 of the first `end` bytes of file `v` (all of it: `None`);
    /// a range past the end is a store `Conflict`.
    pub fn crc(&self, v: &VPath, end: Option<u64>) -> BResult<u32> {
        Ok(self.store().crc(v, end.map(|e| (0, e)))?)
    }

    /// Sets the modification time of `v` (PROPPATCH).
    pub fn set_mtime(&self, v: &VPath, t: SystemTime) -> BResult<()> {
        self.store().set_mtime(v, t)?;
        Ok(())
    }

    /// Creates directory `v` (its parent must exist).
    pub fn mkdir(&self, v: &VPath) -> BResult<()> {
        if v.is_root() {
            return Err(BackendError::Exists);
        }
        match self.store().mkdir(v) {
            Err(e) if e.kind == ErrorKind::Conflict => Err(BackendError::Exists),
            r => Ok(r?),
        }
    }

    /// Deletes file `v`, or directory `v` with everything below it; key
    /// metadata goes with each file. A file being uploaded is Busy.
    pub fn delete(&self, v: &VPath) -> BResult<()> {
        if v.is_root() {
            return Err(BackendError::Refused("cannot delete the root"));
        }
        match self.store().delete(v) {
            Err(e) if e.kind == ErrorKind::NotRegular && self.stat(v).is_ok_and(|e| e.dir) => {}
            r => return Ok(r?),
        }
        for e in self.store().list(v)? {
            self.delete(&v.resolve(&e.name)?)?;
        }
        Ok(self.store().rmdir(v)?)
    }

    /// Moves `from` to `to` (a file or a whole directory) with its key
    /// metadata. With `overwrite` an existing `to` is deleted first; else
    /// it is Exists.
    pub fn rename(&self, from: &VPath, to: &VPath, overwrite: bool) -> BResult<()> {
        if from.is_root() || to.is_root() || under(to, from) {
            return Err(BackendError::Refused("cannot move the root or into itself"));
        }
        self.store().stat(from)?;
        if from.rel() == to.rel() {
            return Ok(());
        }
        if let Ok(t) = self.store().stat(to) {
            if !overwrite {
                return Err(BackendError::Exists);
            }
            if t.is_dir() {
                self.delete(to)?;
            }
        }
        Ok(self.store().rename(from, to)?)
    }

    /// Copies `from` (file, or directory with everything below) to `to`;
    /// each copied file carries its key, and its state follows from it.
    pub fn copy(&self, from: &VPath, to: &VPath, overwrite: bool, owner: &str) -> BResult<()> {
        if to.is_root() || under(to, from) || from.rel() == to.rel() {
            return Err(BackendError::Refused(
                "cannot copy onto the root, itself or into itself",
            ));
        }
        let src = self.store().stat(from)?;
        if self.store().stat(to).is_ok() {
            if !overwrite {
                return Err(BackendError::Exists);
            }
            self.delete(to)?;
        }
        if src.is_dir() {
            self.mkdir(to)?;
            for e in self.store().list(from)? {
                self.copy(&from.resolve(&e.name)?, &to.resolve(&e.name)?, false, owner)?;
            }
            return Ok(());
        }
        let (f, st) = self.store().open_read(from)?;
        let mode = Mode {
            start: Start::Replace,
            key: st.meta.and_then(|m| m.key),
            owner: owner.to_string(),
            claim: None,
        };
        let mut up = self.store().begin_upload(to, mode)?;
        let mut buf = vec![0u8; 256 << 10];
        let mut pos = 0u64;
        loop {
            let n = match f.read_at(&mut buf, pos) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(StoreError::io("copy", &e).into()),
            };
            up.write(&buf[..n])?;
            pos += n as u64;
        }
        let clean = st.meta.is_none_or(|m| m.state == KeyState::Complete);
        up.finish(clean)?;
        Ok(())
    }

    /// Begins an upload of `v` (blocking: the lock, the resume rule, the
    /// "partial" record). Err when refused; then nothing was written.
    /// The bytes then go through [`Writer::write`] as they arrive, and
    /// [`Writer::end`] records how it ended.
    pub fn start(&self, v: &VPath, begin: Begin, opts: UpOpts, owner: &str) -> BResult<Writer> {
        let up = self.begin(v, begin, owner)?;
        Ok(Writer {
            offset: up.offset(),
            bound: up.key(),
            up,
            v: v.clone(),
            opts,
            body_hasher: crc32fast::Hasher::new(),
            got: 0,
            error: None,
        })
    }

    /// Begins the store's upload and applies the seed's resume rule: a
    /// resume must be at the stored size, with the stored key when one is
    /// expected; otherwise Conflict with the state, nothing written.
    fn begin(&self, v: &VPath, begin: Begin, owner: &str) -> BResult<store::Upload> {
        if v.is_root() {
            return Err(BackendError::IsDir);
        }
        let mode = |start, key, claim| Mode {
            start,
            key,
            owner: owner.to_string(),
            claim,
        };
        let (offset, expect) = match begin {
            Begin::Replace(k) => {
                return self
                    .store()
                    .begin_upload(v, mode(Start::Replace, k, None))
                    .map_err(|e| self.begin_error(v, e))
            }
            Begin::Resume { offset, expect } => (offset, expect),
        };
        // Under the upload's lock, the file is what it is: check it there.
        let claim = expect.flatten();
        let up = match self
            .store()
            .begin_upload(v, mode(Start::At(offset), None, claim))
        {
            Ok(u) => u,
            Err(e) if e.kind == ErrorKind::Conflict => {
                return Err(match self.state(v) {
                    Ok(st) => BackendError::Conflict(st),
                    Err(e) => e,
                })
            }
            Err(e) => return Err(self.begin_error(v, e)),
        };
        let now = self.store().stat(v).map(|st| state_of(&st));
        match now {
            Ok(st) if st.size == offset && expect.is_none_or(|k| k == up.key()) => Ok(up),
            Ok(st) => {
                up.abandon();
                Err(BackendError::Conflict(st))
            }
            Err(e) => {
                up.abandon();
                Err(e.into())
            }
        }
    }

    fn begin_error(&self, v: &VPath, e: StoreError) -> BackendError {
        match e.kind {
            ErrorKind::NotRegular if self.stat(v).is_ok_and(|e| e.dir) => BackendError::IsDir,
            ErrorKind::NotFound => BackendError::Path(PathError::NotFound),
            _ => e.into(),
        }
    }
}

/// One upload in progress, from [`Backend::start`]. It writes on the
/// thread that receives the body, as each chunk arrives: no hand-off of
/// chunks to another thread (a context switch per chunk, and chunks
/// queued in between), and every byte handed over is on its way to the
/// page cache before the next is read, so memory per upload is the
/// connection's read buffer whatever the size.
pub(crate) struct Writer {
    up: store::Upload,
    v: VPath,
    opts: UpOpts,
    offset: u64,
    bound: Option<Key>,
    /// CRC of this request's bytes, for `opts.body_crc`.
    body_hasher: crc32fast::Hasher,
    got: u64,
    error: Option<StoreError>,
}

impl Writer {
    /// Set when a newer upload of the same account and key takes the file.
    pub fn takeover_flag(&self) -> Arc<AtomicBool> {
        self.up.takeover_flag()
    }

    /// The file's state when the upload began.
    pub fn start_state(&self) -> UpState {
        UpState {
            size: self.offset,
            key: self.bound,
            complete: false,
        }
    }

    /// Writes the next bytes of the body and hashes them; false once a
    /// write failed (the upload takes no more; [`Writer::end`] says why).
    pub fn write(&mut self, b: &[u8]) -> bool {
        if self.error.is_some() {
            return false;
        }
        // With a checksum the bytes are written but counted only once they
        // proved right (re-read from the page cache), else cut away again.
        let r = if self.opts.body_crc.is_some() {
            self.up
                .file()
                .and_then(|f| io::Write::write_all(f, b).map_err(|e| StoreError::io("write", &e)))
        } else {
            self.up.write(b)
        };
        if let Err(e) = r {
            self.error = Some(e);
            return false;
        }
        if self.opts.body_crc.is_some() {
            self.body_hasher.update(b);
        }
        self.got += b.len() as u64;
        true
    }

    /// Gives the upload up before any byte (its requester went away while
    /// it began): the file and its record stay as they were.
    pub fn abandon(self) {
        log::info!("http: upload of {} abandoned before data", self.v.display());
        self.up.abandon();
    }

    /// Records how the upload ended (blocking: a re-read for a checksum,
    /// the record, an fsync when durable). `clean`: the body ended where
    /// the client meant it to; else a cut, and every byte written is kept
    /// with the file partial (except bytes that fail `opts.body_crc`).
    pub fn end(self, clean: bool) -> UpEnd {
        let Writer {
            mut up,
            v,
            opts,
            offset,
            bound,
            body_hasher,
            got,
            mut error,
        } = self;
        let mut mismatch = false;
        if opts.body_crc.is_some() {
            mismatch = error.is_some() || !clean || opts.body_crc != Some(body_hasher.finalize());
            let counted = if mismatch {
                Ok(())
            } else {
                count_written(&mut up, offset, got)
            };
            if mismatch || counted.is_err() {
                mismatch = true;
                if let Err(e) = up.file().and_then(|f| {
                    f.set_len(offset)
                        .map_err(|e| StoreError::io("truncate", &e))
                }) {
                    error = error.or(Some(e));
                }
            }
        }
        let len = up.len();
        let done_clean =
            clean && !mismatch && error.is_none() && opts.total.is_none_or(|t| t == len);
        let done = match up.finish(done_clean) {
            Ok(d) => d,
            Err(e) => {
                log::error!("http: recording state of {}: {e}", v.display());
                error = error.or(Some(e));
                store::Done {
                    state: KeyState::Partial,
                    len,
                    crc: 0,
                    key: bound,
                }
            }
        };
        log::info!(
            "http: upload {} offset={offset} bytes={got} clean={clean}{} crc={:08X} key={} state={}",
            v.display(),
            if mismatch { " dropped(checksum)" } else { "" },
            done.crc,
            bound.map(|k| k.to_string()).unwrap_or("none".into()),
            done.state.as_str()
        );
        UpEnd {
            state: UpState {
                size: done.len,
                key: done.key,
                complete: done.state == KeyState::Complete,
            },
            checksum_mismatch: mismatch,
            error,
        }
    }
}

/// Counts `[offset, offset + len)`, written through [`store::Upload::file`],
/// into the upload's CRC by reading it back.
fn count_written(up: &mut store::Upload, offset: u64, len: u64) -> Result<(), StoreError> {
    let mut buf = vec![0u8; 256 << 10];
    let mut pos = offset;
    let end = offset + len;
    while pos < end {
        let want = (end - pos).min(buf.len() as u64) as usize;
        let n = up
            .file()?
            .read_at(&mut buf[..want], pos)
            .map_err(|e| StoreError::io("read back", &e))?;
        if n == 0 {
            return Err(StoreError::new(
                ErrorKind::Io,
                "file shrank under an upload",
            ));
        }
        up.hashed(&buf[..n]);
        pos += n as u64;
    }
    Ok(())
}

/// The declared final length of a tus upload, beside the store's record.
const XATTR_LEN: &str = "user.keyftpd.length";

/// True when `a` is strictly below `b`.
fn under(a: &VPath, b: &VPath) -> bool {
    let (a, b) = (a.rel(), b.rel());
    b.is_empty() || a.starts_with(&format!("{b}/"))
}

/// Reads `len` bytes of `file` from `offset` in chunks onto `tx`
/// (blocking; stops early when the receiver is gone). hyper cannot hand a
/// file to `sendfile`, so each byte is read once into a chunk that hyper
/// then writes to the socket as it is (no further copy); the chunk is read
/// into uninitialised memory, not zeroed first.
pub(crate) fn send_range(file: File, offset: u64, len: u64, tx: mpsc::Sender<io::Result<Bytes>>) {
    const CHUNK: u64 = 256 << 10;
    let mut pos = offset;
    let end = offset + len;
    while pos < end {
        let want = (end - pos).min(CHUNK) as usize;
        let mut buf = Vec::with_capacity(want);
        let r = match rustix::io::pread(&file, rustix::buffer::spare_capacity(&mut buf), pos) {
            Ok(0) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while sending",
            )),
            Ok(n) => {
                pos += n as u64;
                Ok(Bytes::from(buf))
            }
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => Err(e.into()),
        };
        let failed = r.is_err();
        if tx.blocking_send(r).is_err() || failed {
            return;
        }
    }
}
