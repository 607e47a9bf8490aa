//! What keyftpd records per file, and its wire form in the file's
//! `user.keyftpd` extended attribute.
//!
//! One attribute holds the whole record, so one `fsetxattr` replaces it
//! atomically: `1 KEY STATE CRC LEN MTIME_NS DEV INO CTIME_NS` (`KEY` is
//! `-` when none, `STATE` is `p` or `c`, `CRC` and `KEY` in hex).
//!
//! The CRC cache (`crc` of the first `len` bytes) lets a resume, an XCRC of
//! a whole file and the MLST `x.key` fact skip re-reading it. It is trusted
//! only while the file is the one it was taken of: same size and mtime, and
//! same identity, `(dev, ino, ctime)`. Size and mtime alone are not proof:
//! a rewrite in place that keeps the size and restores the mtime (`touch
//! -r`, `rsync --inplace -t`) passes them. The ctime cannot be set from user
//! space and changes with every write, truncate, chmod or rename (on Linux
//! 6.13+ with a fine-grained stamp once it has been looked at, so even a
//! write in the same clock tick shows). Anything that does not match is
//! recomputed from the file. Writing the attribute itself moves the ctime
//! on; how the store still trusts its own record is told in
//! [`super`]'s module doc.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::time::UNIX_EPOCH;

use crate::key::Key;

/// Whether an upload has been verified against its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyState {
    /// Started, interrupted, or CRC differs from the key.
    Partial,
    /// CRC of the file equals its key (or, keyless, the transfer ended cleanly).
    Complete,
}

impl KeyState {
    /// The MLSD fact value.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Partial => "partial",
            KeyState::Complete => "complete",
        }
    }
}

/// What is recorded for one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileMeta {
    /// The key the upload was bound to, if any.
    pub key: Option<Key>,
    /// Partial or complete.
    pub state: KeyState,
    /// CRC-32 of the first `len` bytes.
    pub crc: u32,
    /// Length covered by `crc`.
    pub len: u64,
    /// The file's mtime (ns since the epoch) when `crc` was taken.
    pub mtime_ns: u128,
    /// The file's identity when `crc` was taken; `None` for records from
    /// before it was kept (never trusted).
    pub ident: Option<Ident>,
}

/// Which inode, in which state: `(dev, ino, ctime)`. The ctime is set by
/// the kernel on every change of the inode and cannot be set by a user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ident {
    pub dev: u64,
    pub ino: u64,
    /// ctime in ns since the epoch (negative before it).
    pub ctime_ns: i128,
}

impl Ident {
    pub fn of(md: &fs::Metadata) -> Ident {
        Ident {
            dev: md.dev(),
            ino: md.ino(),
            ctime_ns: i128::from(md.ctime()) * 1_000_000_000 + i128::from(md.ctime_nsec()),
        }
    }
}

impl FileMeta {
    /// A record of `crc` over the first `len` bytes of the file whose
    /// metadata (taken after the last write) is `md`.
    pub fn stamped(
        key: Option<Key>,
        state: KeyState,
        crc: u32,
        len: u64,
        md: Option<&fs::Metadata>,
    ) -> FileMeta {
        FileMeta {
            key,
            state,
            crc,
            len,
            mtime_ns: md.map(mtime_ns).unwrap_or(0),
            ident: md.map(Ident::of),
        }
    }

    /// The cached CRC if the file is still the one it was taken of: same
    /// size, mtime, device, inode and ctime.
    pub fn trusted_crc(&self, md: &fs::Metadata) -> Option<u32> {
        (md.len() == self.len && mtime_ns(md) == self.mtime_ns && self.ident == Some(Ident::of(md)))
            .then_some(self.crc)
    }
}

/// A file's mtime in ns since the epoch (0 if unknown).
pub fn mtime_ns(md: &fs::Metadata) -> u128 {
    md.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// The extended attribute holding a file's record.
pub const XATTR: &str = "user.keyftpd";

impl FileMeta {
    /// The attribute value.
    pub fn encode(&self) -> String {
        let key = self
            .key
            .map(|k| format!("{:08X}", k.0))
            .unwrap_or("-".into());
        let st = match self.state {
            KeyState::Partial => "p",
            KeyState::Complete => "c",
        };
        let i = self.ident.unwrap_or(Ident {
            dev: 0,
            ino: 0,
            ctime_ns: 0,
        });
        format!(
            "1 {key} {st} {:08X} {} {} {} {} {}",
            self.crc, self.len, self.mtime_ns, i.dev, i.ino, i.ctime_ns
        )
    }

    /// Parses an attribute value; None if it is not one of ours.
    pub fn decode(v: &[u8]) -> Option<FileMeta> {
        let s = std::str::from_utf8(v).ok()?;
        let f: Vec<&str> = s.split(' ').collect();
        if f.len() != 9 || f[0] != "1" {
            return None;
        }
        let key = match f[1] {
            "-" => None,
            h => Some(Key(u32::from_str_radix(h, 16).ok()?)),
        };
        let state = match f[2] {
            "p" => KeyState::Partial,
            "c" => KeyState::Complete,
            _ => return None,
        };
        let ident = Ident {
            dev: f[6].parse().ok()?,
            ino: f[7].parse().ok()?,
            ctime_ns: f[8].parse().ok()?,
        };
        Some(FileMeta {
            key,
            state,
            crc: u32::from_str_radix(f[3], 16).ok()?,
            len: f[4].parse().ok()?,
            mtime_ns: f[5].parse().ok()?,
            ident: (ident.ino != 0).then_some(ident),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::io;

    #[test]
    fn attribute_round_trip() {
        let m = FileMeta {
            key: Some(Key(0x5F2D3A26)),
            state: KeyState::Partial,
            crc: 1,
            len: 2,
            mtime_ns: 3,
            ident: Some(Ident {
                dev: 4,
                ino: 5,
                ctime_ns: -6,
            }),
        };
        assert_eq!(FileMeta::decode(m.encode().as_bytes()), Some(m));
        let none = FileMeta {
            key: None,
            state: KeyState::Complete,
            ident: None,
            ..m
        };
        assert_eq!(FileMeta::decode(none.encode().as_bytes()), Some(none));
        assert_eq!(FileMeta::decode(b"2 - c 0 0 0 0 0 0"), None);
        assert_eq!(FileMeta::decode(b"1 - x 0 0 0 0 0 0"), None);
        assert_eq!(FileMeta::decode(b"\xff"), None);
    }

    /// Same size, same mtime, new content: the ctime tells.
    #[test]
    fn rewrite_with_restored_mtime_is_not_trusted() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("f");
        std::fs::write(&p, b"abc")?;
        let md = std::fs::metadata(&p)?;
        let m = FileMeta::stamped(None, KeyState::Complete, 0x352441C2, 3, Some(&md));
        assert_eq!(m.trusted_crc(&md), Some(0x352441C2));
        std::fs::write(&p, b"xyz")?;
        let f = File::options().write(true).open(&p)?;
        f.set_modified(md.modified()?)?;
        let md2 = f.metadata()?;
        assert_eq!((md2.len(), mtime_ns(&md2)), (md.len(), mtime_ns(&md)));
        assert_eq!(m.trusted_crc(&md2), None);
        Ok(())
    }
}
