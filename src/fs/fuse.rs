//! The fuser adapter: each method makes one call into [`Core`] and sends
//! one reply. Errors are logged once here and replied as their errno.
//!
//! Remote reads and `opendir` (a server listing) run on [`Pool`]s and
//! reply from there: the FUSE request threads stay free for `ls`, `stat`
//! and local I/O while downloads crawl. Reads of spooled files stay inline
//! (local disk).

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::SystemTime;

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
    WriteFlags,
};

use super::meta::{MtimeSet, SetMeta};
use super::pool::Pool;
use super::{Attr, Core, FsError, Kind, ATTR_TTL, BLKSIZE};

/// Threads for remote reads (each blocks on its stream while it waits).
pub const READ_THREADS: usize = 4;
/// Threads for directory listings.
pub const LIST_THREADS: usize = 2;

pub struct KeyFs {
    core: Arc<Core>,
    reads: Pool,
    lists: Pool,
    /// Ask the kernel for its writeback cache (fast small writes, out of order).
    pub writeback: bool,
}

impl KeyFs {
    pub fn new(core: Arc<Core>) -> KeyFs {
        KeyFs {
            core,
            reads: Pool::new("keyfs-read", READ_THREADS),
            lists: Pool::new("keyfs-list", LIST_THREADS),
            writeback: false,
        }
    }
}

/// How long the kernel may remember that a name does not exist: short, as
/// a file may appear on the server at any time.
const NEGATIVE_TTL: std::time::Duration = std::time::Duration::from_millis(500);

fn to_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: a.mtime,
        mtime: a.mtime,
        ctime: a.mtime,
        crtime: a.mtime,
        kind: match a.kind {
            Kind::File => FileType::RegularFile,
            Kind::Dir => FileType::Directory,
        },
        perm: a.perm,
        nlink: if a.kind == Kind::Dir { 2 } else { 1 },
        uid: a.uid,
        gid: a.gid,
        rdev: 0,
        blksize: BLKSIZE,
        flags: 0,
    }
}

fn err(op: &str, e: &FsError) -> Errno {
    if e.is_quiet() {
        log::debug!("{op}: {e}");
    } else {
        log::warn!("{op}: {e}");
    }
    Errno::from_i32(e.errno())
}

fn open_flags(direct_io: bool) -> FopenFlags {
    if direct_io {
        FopenFlags::FOPEN_DIRECT_IO
    } else {
        FopenFlags::empty()
    }
}

impl Filesystem for KeyFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_write(BLKSIZE);
        let _ = config.set_max_readahead(BLKSIZE);
        // O_TRUNC reaches `open`, which then starts an empty version at
        // once (else the kernel strips it and truncates afterwards: still
        // nothing fetched, see `fill`, but one more step).
        if config
            .add_capabilities(fuser::InitFlags::FUSE_ATOMIC_O_TRUNC)
            .is_err()
        {
            log::debug!("the kernel has no atomic O_TRUNC");
        }
        // Writable opens bypass the page cache (direct_io: fast large
        // writes); this lets programs mmap them all the same (Linux 6.6+).
        if config
            .add_capabilities(fuser::InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP)
            .is_err()
        {
            log::warn!("the kernel cannot mmap direct_io files: shared mmap of a file open for writing fails with ENODEV");
        }
        if self.writeback {
            let _ = config.add_capabilities(fuser::InitFlags::FUSE_WRITEBACK_CACHE);
        }
        Ok(())
    }

    fn destroy(&mut self) {
        self.reads.stop();
        self.lists.stop();
        self.core.shutdown();
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.core.lookup(parent.0, name) {
            Ok(a) => reply.entry(&ATTR_TTL, &to_attr(&a), Generation(0)),
            // A negative entry (node id 0): the kernel remembers the miss
            // briefly, so `cp` does not ask again before its create.
            Err(e) if e.errno() == libc::ENOENT => {
                let none = Attr {
                    ino: 0,
                    kind: Kind::File,
                    size: 0,
                    mtime: std::time::SystemTime::UNIX_EPOCH,
                    perm: 0,
                    uid: 0,
                    gid: 0,
                };
                reply.entry(&NEGATIVE_TTL, &to_attr(&none), Generation(0))
            }
            Err(e) => reply.error(err("lookup", &e)),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.core.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.core.getattr(ino.0) {
            Ok(a) => reply.attr(&ATTR_TTL, &to_attr(&a)),
            Err(e) => reply.error(err("getattr", &e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let meta = SetMeta {
            mtime: mtime.map(|t| match t {
                TimeOrNow::SpecificTime(t) => MtimeSet::At(t),
                TimeOrNow::Now => MtimeSet::Now,
            }),
            mode,
            uid,
            gid,
        };
        match self.core.setattr_with(ino.0, size, meta) {
            Ok(a) => reply.attr(&ATTR_TTL, &to_attr(&a)),
            Err(e) => reply.error(err("setattr", &e)),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        match self.core.mkdir(parent.0, name) {
            Ok(a) => reply.entry(&ATTR_TTL, &to_attr(&a), Generation(0)),
            Err(e) => reply.error(err("mkdir", &e)),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.core.unlink(parent.0, name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err("unlink", &e)),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.core.rmdir(parent.0, name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err("rmdir", &e)),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        match self
            .core
            .rename(parent.0, name, newparent.0, newname, flags.bits())
        {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err("rename", &e)),
        }
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.core.open_by(ino.0, flags.0, req.pid()) {
            Ok(o) => reply.opened(FileHandle(o.fh), open_flags(o.direct_io)),
            Err(e) => reply.error(err("open", &e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let core = self.core.clone();
        let read = move || {
            let mut reply = Some(reply);
            let r = core.read_with(fh.0, offset, size, |d| {
                if let Some(reply) = reply.take() {
                    reply.data(d);
                }
            });
            if let (Err(e), Some(reply)) = (r, reply) {
                reply.error(err("read", &e));
            }
        };
        if self.core.read_may_block(fh.0) {
            self.reads.run(read);
        } else {
            read();
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.core.write(fh.0, offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(err("write", &e)),
        }
    }

    fn flush(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        match self.core.flush(fh.0, req.pid()) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err("flush", &e)),
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let core = self.core.clone();
        let release = move || match core.release(fh.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err("release", &e)),
        };
        // Fetching the rest of a file's old content takes a read thread,
        // not a request thread.
        if self.core.release_may_block(fh.0) {
            self.reads.run(release);
        } else {
            release();
        }
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.core.fsync(fh.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err("fsync", &e)),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let core = self.core.clone();
        self.lists.run(move || match core.opendir(ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(err("opendir", &e)),
        });
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        match self.core.readdir(fh.0, offset) {
            Ok(entries) => {
                for e in entries {
                    let kind = match e.kind {
                        Kind::File => FileType::RegularFile,
                        Kind::Dir => FileType::Directory,
                    };
                    if reply.add(INodeNo(e.ino), e.next, kind, &e.name) {
                        break;
                    }
                }
                reply.ok()
            }
            Err(e) => reply.error(err("readdir", &e)),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.core.releasedir(fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: fuser::ReplyXattr,
    ) {
        // No transport keeps extended attributes; ENOSYS makes the kernel
        // stop asking.
        reply.error(Errno::ENOSYS);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, _size: u32, reply: fuser::ReplyXattr) {
        reply.error(Errno::ENOSYS);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.core.statfs() {
            Ok(s) => reply.statfs(
                s.f_blocks,
                s.f_bfree,
                s.f_bavail,
                s.f_files,
                s.f_ffree,
                s.f_bsize as u32,
                255,
                s.f_frsize as u32,
            ),
            Err(e) => reply.error(err("statfs", &e)),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        match self.core.create_by(parent.0, name, flags, req.pid()) {
            Ok((a, o)) => reply.created(
                &ATTR_TTL,
                &to_attr(&a),
                Generation(0),
                FileHandle(o.fh),
                open_flags(o.direct_io),
            ),
            Err(e) => reply.error(err("create", &e)),
        }
    }
}
