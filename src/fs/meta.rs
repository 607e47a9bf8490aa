//! setattr's metadata: the modification time, the mode and the owner.
//!
//! What is kept (see the README's table):
//! - **mtime** (`touch -d`, `cp -p`, `rsync -t`): shown at once; for a file
//!   still in the spool it goes with its upload job (journal) and is set by
//!   the transport's [`Conn::set_mtime`] after the verified upload; for a
//!   file only on the server, at once. The server keeps whole seconds. A
//!   server that cannot set times keeps its own (the upload's), and the
//!   call still succeeds, as on rclone mount.
//! - **mode** (`chmod`): the same way, by [`Conn::chmod`]; the server's
//!   mode shows where its listing has one. A server that keeps no modes
//!   leaves the call succeeding and the mode the server's (rclone mount's
//!   rule: `cp -p` and `rsync -p` keep working).
//! - **owner** (`chown`): no transport can give a file away; a chown to
//!   the owner the mount shows (a no-op) succeeds, any other fails with
//!   EPERM, as for an unprivileged user (and as sshfs without idmap).

//!
//! [`Conn::set_mtime`]: crate::transport::Conn::set_mtime
//! [`Conn::chmod`]: crate::transport::Conn::chmod

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{errno, inode, Attr, Core, FsResult, Status};
use crate::transport::Applied;

/// How setattr changes the modification time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MtimeSet {
    /// `touch f`: the server's own time of the upload is as good.
    Now,
    /// `touch -d`, `cp -p`, `rsync -t`: kept.
    At(SystemTime),
}

/// The metadata part of a setattr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetMeta {
    pub mtime: Option<MtimeSet>,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// `t` in whole seconds, as the server keeps it.
fn whole_seconds(t: SystemTime) -> SystemTime {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => UNIX_EPOCH + Duration::from_secs(d.as_secs()),
        Err(_) => t,
    }
}

impl Core {
    /// chown: only to the owner already shown.
    pub(super) fn check_owner(&self, m: &SetMeta) -> FsResult<()> {
        let other_uid = m.uid.is_some_and(|u| u != self.uid);
        let other_gid = m.gid.is_some_and(|g| g != self.gid);
        if other_uid || other_gid {
            return Err(errno(libc::EPERM));
        }
        Ok(())
    }

    /// Sets the mtime and mode of `ino`: on its local version (and its
    /// upload job), or on the server. For a file on the server, returns its
    /// attributes as the server now shows them (a stat of the one entry):
    /// a listing may not show it (some servers list no dot files, such as
    /// `rsync`'s temporary ones).
    pub(super) fn apply_meta(&self, ino: u64, m: &SetMeta) -> FsResult<Option<Attr>> {
        if m.mtime.is_none() && m.mode.is_none() {
            return Ok(None);
        }
        let mode = m.mode.map(|v| v & 0o7777);
        let (time, keep) = match m.mtime {
            Some(MtimeSet::At(t)) => (Some(t), true),
            Some(MtimeSet::Now) => (Some(SystemTime::now()), false),
            None => (None, false),
        };
        let local = {
            let mut st = self.lock();
            match st.pending.get_mut(&ino) {
                Some(l) => {
                    if let Some(t) = time {
                        l.mtime = t;
                        l.wanted.mtime = keep.then_some(t);
                    }
                    if mode.is_some() {
                        l.wanted.mode = mode;
                    }
                    // An uploaded version still open: shown as set, and
                    // set on the server copy below.
                    (l.status != Status::Uploaded).then_some((l.id, l.status, l.wanted))
                }
                None => None,
            }
        };
        match local {
            // Sealed into the job at close.
            Some((_, Status::Writing, _)) => return Ok(None),
            Some((id, _, wanted)) if self.uploader.set_wanted(id, wanted) => return Ok(None),
            // Uploaded meanwhile: set it on the server copy.
            _ => {}
        }
        let path = self.path_of(ino)?;
        if path.is_empty() {
            return Ok(None); // the mount's root: not ours to change
        }
        let (timed, moded, entry) = self
            .conns
            .ns(|s| {
                let timed = match time {
                    Some(t) => s.set_mtime(&path, t)? == Applied::Done,
                    None => false,
                };
                let moded = match mode {
                    Some(v) => s.chmod(&path, v)? == Applied::Done,
                    None => false,
                };
                let entry = if timed || moded { s.stat(&path)? } else { None };
                Ok((timed, moded, entry))
            })
            .map_err(|e| {
                log::warn!("{path}: cannot set its time/mode on the server: {e}");
                errno(e.to_errno())
            })?;
        log::debug!("{path}: set on the server: mtime {timed}, mode {moded}");
        // What the server holds now shows at once in the cached listing.
        let mut st = self.lock();
        let dir = inode::parent_of(&path);
        let from_server = entry.is_some();
        let found = entry.or_else(|| {
            st.dirs.get(dir).and_then(|(_, list)| {
                list.iter()
                    .find(|e| e.name == inode::name_of(&path))
                    .cloned()
            })
        });
        let Some(mut e) = found else {
            return Ok(None);
        };
        // What the server's stat said stands; a cached entry gets what was
        // just set.
        if let (true, Some(t)) = (timed, time) {
            if !from_server || e.mtime.is_none() {
                e.mtime = Some(whole_seconds(t));
            }
        }
        if moded && (!from_server || e.mode.is_none()) {
            e.mode = mode;
        }
        st.upsert(dir, e.clone());
        if st.pending.contains_key(&ino) {
            return Ok(None);
        }
        Ok(Some(self.entry_attr(ino, &e)))
    }
}
