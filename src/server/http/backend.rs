//! The one seam between the HTTP face and keyftpd's file side: every file
//! system and login action of the HTTP handlers goes through [`Backend`],
//! over the same root, metadata store, busy set and accounts as the FTP
//! sessions, so an upload may start on one face and finish on the other.
//!
//! An upload runs on one blocking thread ([`Backend::upload`]): it claims
//! the path, checks the resume rule, records the file as partial before
//! the first byte, writes and hashes the chunks it is handed, and records
//! complete-or-partial (CRC against key) when the body ends or is cut.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::IpAddr;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::key::Key;
use crate::server::cmd_key::crc_range;
use crate::server::listener::Shared;
use crate::server::listing::hidden;
use crate::server::paths::{PathError, VPath};
use crate::server::store::{FileMeta, KeyState};

/// Why a file action failed.
#[derive(Debug)]
pub(crate) enum BackendError {
    /// The path was refused, or a parent is missing.
    Path(PathError),
    /// The target is missing.
    NotFound,
    /// A directory where a file was needed.
    IsDir,
    /// A file where a directory was needed (or a parent is a file).
    NotDir,
    /// The target exists and may not be replaced.
    Exists,
    /// Another upload of the path is in progress.
    Busy,
    /// The resume rule refused the upload; the file's state as it is.
    Conflict(UpState),
    /// Not allowed on this path (the root; a directory into itself).
    Refused(&'static str),
    /// Anything else from the file system.
    Io(io::Error),
}

impl From<io::Error> for BackendError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::NotFound => BackendError::NotFound,
            io::ErrorKind::AlreadyExists => BackendError::Exists,
            io::ErrorKind::NotADirectory => BackendError::NotDir,
            io::ErrorKind::IsADirectory => BackendError::IsDir,
            _ => BackendError::Io(e),
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

/// What the request side hands the upload thread.
pub(crate) enum Chunk {
    Data(Bytes),
    /// The body ended where the client meant it to.
    End,
}

/// How an upload ended.
#[derive(Debug)]
pub(crate) struct UpEnd {
    pub state: UpState,
    /// The request's bytes did not match `UpOpts::body_crc` and were dropped.
    pub checksum_mismatch: bool,
    /// A local write error that stopped the upload.
    pub error: Option<io::Error>,
}

/// A login's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Login {
    User(String),
    Anonymous,
    Refused,
}

/// The HTTP face's view of keyftpd's shared state.
#[derive(Clone)]
pub(crate) struct Backend {
    sh: Arc<Shared>,
}

fn entry(name: String, md: &fs::Metadata, meta: Option<FileMeta>) -> Entry {
    let dir = md.is_dir();
    Entry {
        name,
        dir,
        size: if dir { 0 } else { md.len() },
        mtime: md.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        key: meta.filter(|_| !dir).and_then(|m| m.key),
        state: meta.filter(|_| !dir).map(|m| m.state),
    }
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

    /// The delay before answering a wrong password.
    pub fn auth_fail_delay(&self) -> std::time::Duration {
        self.sh.cfg.auth_fail_delay
    }

    /// Checks a login with the FTP accounts (blocking: a hash check).
    pub fn login(&self, _peer: IpAddr, user: &str, pass: &str) -> Login {
        let acc = &self.sh.cfg.accounts;
        if !acc.check(user, pass) {
            return Login::Refused;
        }
        if acc.is_anonymous(user) {
            Login::Anonymous
        } else {
            Login::User(user.to_string())
        }
    }

    /// True when requests without credentials may read.
    pub fn anonymous_allowed(&self) -> bool {
        self.sh.cfg.accounts.is_anonymous("anonymous")
    }

    fn real(&self, v: &VPath, follow_last: bool) -> BResult<PathBuf> {
        Ok(self.sh.jail.check(v, follow_last)?)
    }

    /// Stat of `v`; NotFound when missing.
    pub fn stat(&self, v: &VPath) -> BResult<Entry> {
        let real = self.real(v, true)?;
        let md = fs::metadata(&real)?;
        let meta = self.sh.store.get(&v.rel());
        Ok(entry(v.name().unwrap_or("").to_string(), &md, meta))
    }

    /// The seed's state of `v`: a missing file is size 0, no key, not
    /// complete; a missing parent is NotFound; a directory IsDir.
    pub fn state(&self, v: &VPath) -> BResult<UpState> {
        if v.is_root() {
            return Err(BackendError::IsDir);
        }
        let real = self.real(v, true)?;
        match fs::metadata(&real) {
            Ok(md) if md.is_dir() => Err(BackendError::IsDir),
            Ok(md) => Ok(self.state_of(v, &md)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                match real.parent().map(fs::metadata) {
                    Some(Ok(p)) if p.is_dir() => Ok(UpState {
                        size: 0,
                        key: None,
                        complete: false,
                    }),
                    _ => Err(BackendError::NotFound),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    fn state_of(&self, v: &VPath, md: &fs::Metadata) -> UpState {
        let meta = self.sh.store.get(&v.rel());
        UpState {
            size: md.len(),
            key: meta.and_then(|m| m.key),
            // A file keyftpd has no record of was put there whole.
            complete: meta.is_none_or(|m| m.state == KeyState::Complete),
        }
    }

    /// The entries of directory `v`, sorted by name; the metadata
    /// directory and symlinks leading outside the root are left out.
    pub fn list(&self, v: &VPath) -> BResult<Vec<Entry>> {
        let real = self.real(v, true)?;
        let mut out = Vec::new();
        for e in fs::read_dir(real)? {
            let e = e?;
            let Ok(name) = e.file_name().into_string() else {
                continue;
            };
            if hidden(&name) {
                continue;
            }
            let Ok(child) = v.resolve(&name) else {
                continue;
            };
            let Ok(real) = self.sh.jail.check(&child, true) else {
                continue;
            };
            let Ok(md) = fs::metadata(&real) else {
                continue;
            };
            out.push(entry(name, &md, self.sh.store.get(&child.rel())));
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Records the declared final length of an upload of `v` (tus), in a
    /// `user.keyftpd.length` attribute beside the file where the file
    /// system has them. False when it could not be kept.
    pub fn set_declared_len(&self, v: &VPath, n: u64) -> bool {
        let Ok(real) = self.real(v, true) else {
            return false;
        };
        xattr_set(&real, XATTR_LEN, n.to_string().as_bytes()).is_ok()
    }

    /// The declared final length of `v`, if one was recorded.
    pub fn declared_len(&self, v: &VPath) -> Option<u64> {
        let real = self.real(v, true).ok()?;
        let raw = xattr_get(&real, XATTR_LEN)?;
        std::str::from_utf8(&raw).ok()?.parse().ok()
    }

    /// Opens file `v` for reading.
    pub fn open_read(&self, v: &VPath) -> BResult<(File, Entry)> {
        let real = self.real(v, true)?;
        let f = File::open(&real)?;
        let md = f.metadata()?;
        if md.is_dir() {
            return Err(BackendError::IsDir);
        }
        let meta = self.sh.store.get(&v.rel());
        Ok((f, entry(v.name().unwrap_or("").to_string(), &md, meta)))
    }

    /// Creates directory `v` (its parent must exist).
    pub fn mkdir(&self, v: &VPath) -> BResult<()> {
        if v.is_root() {
            return Err(BackendError::Exists);
        }
        let real = self.real(v, false)?;
        Ok(fs::create_dir(real)?)
    }

    /// Deletes file `v`, or directory `v` with everything below it; key
    /// metadata goes with each file. A file being uploaded is Busy.
    pub fn delete(&self, v: &VPath) -> BResult<()> {
        if v.is_root() {
            return Err(BackendError::Refused("cannot delete the root"));
        }
        let real = self.real(v, false)?;
        let md = fs::symlink_metadata(&real)?;
        if !md.is_dir() {
            let _guard = self.sh.claim(&v.rel()).ok_or(BackendError::Busy)?;
            fs::remove_file(&real)?;
            if let Err(e) = self.sh.store.remove(&v.rel()) {
                log::error!("http: metadata for DELETE {}: {e}", v.display());
            }
            return Ok(());
        }
        for e in fs::read_dir(&real)? {
            let name = e?.file_name();
            let Some(name) = name.to_str() else {
                return Err(BackendError::Io(io::Error::other("name is not UTF-8")));
            };
            let child = v.resolve(name)?;
            self.delete(&child)?;
        }
        Ok(fs::remove_dir(&real)?)
    }

    /// Moves `from` to `to` (a file or a whole directory) with its key
    /// metadata. With `overwrite` an existing `to` is deleted first; else
    /// it is Exists.
    pub fn rename(&self, from: &VPath, to: &VPath, overwrite: bool) -> BResult<()> {
        if from.is_root() || to.is_root() || under(to, from) {
            return Err(BackendError::Refused("cannot move the root or into itself"));
        }
        let (rf, rt) = (self.real(from, false)?, self.real(to, false)?);
        fs::symlink_metadata(&rf)?;
        let (from_rel, to_rel) = (from.rel(), to.rel());
        if from_rel == to_rel {
            return Ok(());
        }
        if fs::symlink_metadata(&rt).is_ok() {
            if !overwrite {
                return Err(BackendError::Exists);
            }
            self.delete(to)?;
        }
        let _to_guard = self.sh.claim(&to_rel).ok_or(BackendError::Busy)?;
        let _from_guard = self.sh.claim(&from_rel).ok_or(BackendError::Busy)?;
        let before = fs::symlink_metadata(&rf).ok().filter(|m| m.is_file());
        fs::rename(&rf, &rt)?;
        if let Err(e) = self.sh.store.rename(&from_rel, &to_rel) {
            log::error!("http: metadata for MOVE: {e}");
        }
        if let (Some(b), Ok(a)) = (&before, fs::symlink_metadata(&rt)) {
            if let Err(e) = self.sh.store.renamed_file(&to_rel, b, &a) {
                log::error!("http: metadata for MOVE: {e}");
            }
        }
        Ok(())
    }

    /// Copies `from` (file, or directory with everything below) to `to`;
    /// each copied file carries its key and state.
    pub fn copy(&self, from: &VPath, to: &VPath, overwrite: bool) -> BResult<()> {
        if to.is_root() || under(to, from) || from.rel() == to.rel() {
            return Err(BackendError::Refused(
                "cannot copy onto the root, itself or into itself",
            ));
        }
        let (rf, rt) = (self.real(from, true)?, self.real(to, false)?);
        let md = fs::metadata(&rf)?;
        if fs::symlink_metadata(&rt).is_ok() {
            if !overwrite {
                return Err(BackendError::Exists);
            }
            self.delete(to)?;
        }
        if md.is_dir() {
            fs::create_dir(&rt)?;
            for e in fs::read_dir(&rf)? {
                let name = e?.file_name();
                let Some(name) = name.to_str().filter(|n| !hidden(n)) else {
                    continue;
                };
                self.copy(&from.resolve(name)?, &to.resolve(name)?, false)?;
            }
            return Ok(());
        }
        let _guard = self.sh.claim(&to.rel()).ok_or(BackendError::Busy)?;
        let mut src = File::open(&rf)?;
        let mut dst = File::create(&rt)?;
        let mut h = crc32fast::Hasher::new();
        let mut buf = vec![0u8; 256 << 10];
        let mut len = 0u64;
        loop {
            let n = match src.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            dst.write_all(&buf[..n])?;
            h.update(&buf[..n]);
            len += n as u64;
        }
        let crc = h.finalize();
        match self.sh.store.get(&from.rel()) {
            Some(m) => {
                let meta =
                    FileMeta::stamped(m.key, m.state, crc, len, dst.metadata().ok().as_ref());
                if let Err(e) = self.sh.store.set(&to.rel(), meta) {
                    log::error!("http: metadata for COPY: {e}");
                }
            }
            None => {
                let _ = self.sh.store.remove(&to.rel());
            }
        }
        Ok(())
    }

    /// Runs one upload of `v` on the calling (blocking) thread. `ready`
    /// gets the state at the start, or why the upload is refused (then
    /// nothing is written); chunks then come from `rx`. A closed channel
    /// without [`Chunk::End`] is a cut: every byte received is kept and
    /// the file stays partial.
    pub fn upload(
        &self,
        v: &VPath,
        begin: Begin,
        opts: UpOpts,
        ready: oneshot::Sender<BResult<UpState>>,
        mut rx: mpsc::Receiver<Chunk>,
    ) -> Option<UpEnd> {
        let rel = v.rel();
        let sh = self.sh.clone();
        let started = (|| {
            if v.is_root() {
                return Err(BackendError::IsDir);
            }
            let real = self.real(v, true)?;
            let guard = sh.claim(&rel).ok_or(BackendError::Busy)?;
            let (file, bound, offset, prefix_crc) = self.open_upload(v, &real, begin)?;
            Ok((guard, file, bound, offset, prefix_crc))
        })();
        let (guard, mut file, bound, offset, prefix_crc) = match started {
            Ok(x) => x,
            Err(e) => {
                let _ = ready.send(Err(e));
                return None;
            }
        };
        let start = UpState {
            size: offset,
            key: bound,
            complete: false,
        };
        if ready.send(Ok(start)).is_err() {
            // The request went away before any byte: a resume changed
            // nothing, a replace left an empty partial (recorded as such).
            log::info!("http: upload of {} abandoned before data", v.display());
        }
        let mut hasher = crc32fast::Hasher::new_with_initial_len(prefix_crc, offset);
        let mut body_hasher = crc32fast::Hasher::new();
        let mut got = 0u64;
        let mut clean = false;
        let mut error = None;
        while let Some(c) = rx.blocking_recv() {
            match c {
                Chunk::Data(b) => {
                    if let Err(e) = file.write_all(&b) {
                        error = Some(e);
                        break;
                    }
                    hasher.update(&b);
                    if opts.body_crc.is_some() {
                        body_hasher.update(&b);
                    }
                    got += b.len() as u64;
                }
                Chunk::End => {
                    clean = true;
                    break;
                }
            }
        }
        drop(rx);
        let mut len = offset + got;
        if error.is_some() {
            // A failed write may have left bytes past what was hashed.
            let _ = file.set_len(len);
        }
        let mismatch = opts
            .body_crc
            .is_some_and(|want| !clean || body_hasher.finalize() != want);
        if mismatch {
            if let Err(e) = file.set_len(offset) {
                error = error.or(Some(e));
            }
            len = offset;
            hasher = crc32fast::Hasher::new_with_initial_len(prefix_crc, offset);
        }
        if sh.cfg.fsync_files {
            if let Err(e) = file.sync_data() {
                log::error!("http: fsync {}: {e}", v.display());
            }
        }
        let crc = hasher.finalize();
        let complete = match bound {
            Some(k) => k.0 == crc,
            None => clean && !mismatch && error.is_none() && opts.total.is_none_or(|t| t == len),
        };
        let state = if complete {
            KeyState::Complete
        } else {
            KeyState::Partial
        };
        let md = file.metadata().ok();
        drop(file);
        let end = FileMeta::stamped(bound, state, crc, len, md.as_ref());
        if let Err(e) = sh.store.set(&rel, end) {
            log::error!("http: recording state of {}: {e}", v.display());
        }
        drop(guard);
        log::info!(
            "http: upload {} offset={offset} bytes={got} clean={clean}{} crc={crc:08X} key={} state={}",
            v.display(),
            if mismatch { " dropped(checksum)" } else { "" },
            bound.map(|k| k.to_string()).unwrap_or("none".into()),
            state.as_str()
        );
        Some(UpEnd {
            state: UpState {
                size: len,
                key: bound,
                complete,
            },
            checksum_mismatch: mismatch,
            error,
        })
    }

    /// Checks the resume rule, opens the file at its offset and records it
    /// as partial. Returns (file, bound key, offset, CRC of the prefix).
    fn open_upload(
        &self,
        v: &VPath,
        real: &PathBuf,
        begin: Begin,
    ) -> BResult<(File, Option<Key>, u64, u32)> {
        let rel = v.rel();
        let existing = match fs::metadata(real) {
            Ok(md) if md.is_dir() => return Err(BackendError::IsDir),
            Ok(md) => Some(md),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e.into()),
        };
        let meta = self.sh.store.get(&rel);
        let now = match &existing {
            Some(md) => self.state_of(v, md),
            None => UpState {
                size: 0,
                key: None,
                complete: false,
            },
        };
        let (offset, bound) = match begin {
            Begin::Replace(k) => (0, k),
            Begin::Resume { offset, expect } => {
                let stored = meta.and_then(|m| m.key);
                if offset != now.size || expect.is_some_and(|k| k != stored) {
                    return Err(BackendError::Conflict(now));
                }
                (offset, stored)
            }
        };
        let prefix_crc = if offset == 0 {
            0
        } else {
            let cached = match (meta, &existing) {
                (Some(m), Some(md)) if m.len == offset => m.trusted_crc(md),
                _ => None,
            };
            match cached {
                Some(c) => c,
                None => crc_range(&mut File::open(real)?, 0, offset)?,
            }
        };
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(offset == 0)
            .open(real)?;
        if offset > 0 {
            file.set_len(offset)?;
            file.seek(SeekFrom::Start(offset))?;
        }
        let md = file.metadata().ok();
        let start = FileMeta::stamped(bound, KeyState::Partial, prefix_crc, offset, md.as_ref());
        if let Err(e) = self.sh.store.set(&rel, start) {
            log::error!("http: recording state of {}: {e}", v.display());
        }
        Ok((file, bound, offset, prefix_crc))
    }
}

const XATTR_LEN: &str = "user.keyftpd.length";

fn c_path(p: &std::path::Path) -> io::Result<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(io::Error::other)
}

fn xattr_set(p: &std::path::Path, name: &str, value: &[u8]) -> io::Result<()> {
    let (cp, cn) = (
        c_path(p)?,
        std::ffi::CString::new(name).map_err(io::Error::other)?,
    );
    // SAFETY: valid NUL-terminated strings and a slice with its length.
    let r = unsafe {
        libc::setxattr(
            cp.as_ptr(),
            cn.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn xattr_get(p: &std::path::Path, name: &str) -> Option<Vec<u8>> {
    let (cp, cn) = (c_path(p).ok()?, std::ffi::CString::new(name).ok()?);
    let mut buf = [0u8; 32];
    // SAFETY: valid NUL-terminated strings and a buffer with its length.
    let n = unsafe { libc::getxattr(cp.as_ptr(), cn.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (n >= 0).then(|| buf[..n as usize].to_vec())
}

/// True when `a` is strictly below `b`.
fn under(a: &VPath, b: &VPath) -> bool {
    let (a, b) = (a.rel(), b.rel());
    b.is_empty() || a.starts_with(&format!("{b}/"))
}

/// Reads `len` bytes of `file` from `offset` in chunks onto `tx`
/// (blocking; stops early when the receiver is gone).
pub(crate) fn send_range(file: File, offset: u64, len: u64, tx: mpsc::Sender<io::Result<Bytes>>) {
    const CHUNK: u64 = 256 << 10;
    let mut pos = offset;
    let end = offset + len;
    while pos < end {
        let want = (end - pos).min(CHUNK) as usize;
        let mut buf = vec![0u8; want];
        let r = match file.read_at(&mut buf, pos) {
            Ok(0) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while sending",
            )),
            Ok(n) => {
                buf.truncate(n);
                pos += n as u64;
                Ok(Bytes::from(buf))
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Err(e),
        };
        let failed = r.is_err();
        if tx.blocking_send(r).is_err() || failed {
            return;
        }
    }
}
