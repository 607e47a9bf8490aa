//! Checks on both ends: the local CRC of a prefix of the spooled file (for
//! the resume decision), and the post-upload verification that must pass
//! before the spooled copy may be deleted. `finish()` returning Ok proves
//! nothing by itself.
//!
//! Against a server with KEY, one `MLST` suffices: `type=file`, our size,
//! `x.keystate=complete` and `x.key` equal to our key mean the server
//! computed the CRC of the bytes it wrote, while writing them, and found it
//! equal to our key (keyftp(7)). That is the CRC XCRC would compute, without
//! re-reading the whole file. The facts count only from a reply with one
//! entry, about the path asked (see [`crate::remote::checksum::mlst_entry_for`]),
//! and an `x.key` of exactly `0x` + 8 hex digits. When those facts are
//! missing we fall back to SIZE plus XCRC/HASH, as for stock servers.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use crate::remote::checksum::MlstKey;
use crate::remote::{RemoteError, Session};

/// CRC-32 of the first `n` bytes of `f`, read with a fixed buffer.
pub fn local_prefix_crc(f: &mut File, n: u64) -> std::io::Result<u32> {
    f.seek(SeekFrom::Start(0))?;
    let mut h = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = n;
    while left > 0 {
        let want = (buf.len() as u64).min(left) as usize;
        let got = f.read(&mut buf[..want])?;
        if got == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "spooled file shorter than its record",
            ));
        }
        h.update(&buf[..got]);
        left -= got as u64;
    }
    Ok(h.finalize())
}

/// Whether a spooled file still holds what its record says: `None` when
/// its size and CRC match, else what differs, for a one-line message.
pub fn spool_differs(f: &mut File, size: u64, crc: u32) -> std::io::Result<Option<String>> {
    let len = f.metadata()?.len();
    if len != size {
        return Ok(Some(format!("{len} bytes, its record says {size}")));
    }
    let c = local_prefix_crc(f, size)?;
    Ok((c != crc).then(|| format!("CRC {c:08X}, its record says {crc:08X}")))
}

/// Why a verification failed.
pub enum VerifyError {
    /// The server's size (or its recorded key) differs from ours.
    Mismatch(String),
    /// The server has no such file (MLST or SIZE answered 550).
    Gone(String),
    /// The server's CRC of the whole file differs from our key: either the
    /// bytes changed on the way or the spooled copy no longer matches its
    /// record (worth re-reading it).
    CrcMismatch(String),
    Remote(RemoteError),
}

impl From<RemoteError> for VerifyError {
    fn from(e: RemoteError) -> Self {
        VerifyError::Remote(e)
    }
}

/// The server's size of `path`, by SIZE, or by a listing where SIZE is missing.
pub fn remote_size(s: &mut Session, path: &str) -> Result<Option<u64>, RemoteError> {
    match s.size(path) {
        Err(e) if matches!(e.code(), Some(500 | 502 | 504)) => {
            Ok(s.stat(path)?.filter(|e| !e.is_dir).map(|e| e.size))
        }
        r => r,
    }
}

/// What the MLST key facts say about an upload of `size` bytes with key `crc`.
#[derive(Debug, PartialEq, Eq)]
pub enum FactsVerdict {
    /// Complete, our size, our key: verified.
    Verified,
    /// The server holds something else (complete with another size or key).
    Mismatch(String),
    /// The server has no such file.
    Gone(String),
    /// Not enough facts to tell: ask SIZE and XCRC/HASH.
    Unknown,
}

/// The verification rule on MLST key facts (pure; see keyftp(7)).
pub fn judge_facts(m: &MlstKey, size: u64, crc: u32) -> FactsVerdict {
    let f = match m {
        MlstKey::Absent => {
            return FactsVerdict::Gone(format!(
                "server has no file (MLST 550) after upload of {size} bytes"
            ))
        }
        MlstKey::Unavailable => return FactsVerdict::Unknown,
        MlstKey::Facts(f) => f,
    };
    if !f.is_file || f.keystate.as_deref() != Some("complete") {
        return FactsVerdict::Unknown;
    }
    match (f.size, f.key) {
        (Some(n), Some(k)) if n == size && k == crc => FactsVerdict::Verified,
        (Some(n), Some(k)) => FactsVerdict::Mismatch(format!(
            "server holds a complete file of {n} bytes with key {k:08X} after upload, \
             expected {size} bytes with key {crc:08X}"
        )),
        _ => FactsVerdict::Unknown,
    }
}

/// How far a successful verification went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verified {
    /// The server's CRC of the file (computed while writing, or read back)
    /// equals our key.
    Crc,
    /// Only the size could be checked (the server offers no CRC): the
    /// caller should make sure the spooled bytes matched their key.
    SizeOnly,
}

/// Verifies the server copy: its size is `size`, and its CRC is `crc` where
/// the server can compute one. Against KEY servers, by one MLST first.
pub fn verify_remote(
    s: &mut Session,
    path: &str,
    size: u64,
    crc: u32,
) -> Result<Verified, VerifyError> {
    if s.features().key {
        let m = s.mlst_key(path)?;
        match judge_facts(&m, size, crc) {
            FactsVerdict::Verified => {
                log::debug!("{path}: verified by MLST key facts");
                return Ok(Verified::Crc);
            }
            FactsVerdict::Mismatch(msg) => return Err(VerifyError::Mismatch(msg)),
            FactsVerdict::Gone(msg) => return Err(VerifyError::Gone(msg)),
            FactsVerdict::Unknown => {
                log::debug!("{path}: MLST key facts inconclusive ({m:?}); asking SIZE and CRC")
            }
        }
    }
    verify_by_size_and_crc(s, path, size, crc)
}

/// SIZE, then XCRC/HASH of the whole file where the server offers one.
pub fn verify_by_size_and_crc(
    s: &mut Session,
    path: &str,
    size: u64,
    crc: u32,
) -> Result<Verified, VerifyError> {
    let got = remote_size(s, path)?;
    if got.is_none() {
        return Err(VerifyError::Gone(format!(
            "server has no file (SIZE 550) after upload of {size} bytes"
        )));
    }
    if got != Some(size) {
        return Err(VerifyError::Mismatch(format!(
            "server size {got:?} after upload, expected {size}"
        )));
    }
    // A checksum command the server refuses falls back inside `remote_crc`
    // (XCRC, HASH, then none): what is left here is a passing error.
    match s.remote_crc(path, None)? {
        Some(c) if c != crc => Err(VerifyError::CrcMismatch(format!(
            "server CRC {c:08X} after upload, expected {crc:08X}"
        ))),
        Some(_) => Ok(Verified::Crc),
        None => Ok(Verified::SizeOnly),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn prefix_crc() {
        let mut t = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
        t.write_all(&data).unwrap();
        for n in [0usize, 1, 65_536, 65_537, 200_000] {
            assert_eq!(
                local_prefix_crc(&mut t, n as u64).unwrap(),
                crc32fast::hash(&data[..n])
            );
        }
        assert!(local_prefix_crc(&mut t, 200_001).is_err());
    }

    #[test]
    fn facts_rule() {
        use crate::remote::listing::KeyFacts;
        let f = |size, st: &str, key| {
            MlstKey::Facts(KeyFacts {
                is_file: true,
                size,
                keystate: Some(st.into()),
                key,
            })
        };
        let ok = f(Some(10), "complete", Some(7));
        assert_eq!(judge_facts(&ok, 10, 7), FactsVerdict::Verified);
        assert!(matches!(judge_facts(&ok, 11, 7), FactsVerdict::Mismatch(_)));
        assert!(matches!(judge_facts(&ok, 10, 8), FactsVerdict::Mismatch(_)));
        assert!(matches!(
            judge_facts(&MlstKey::Absent, 10, 7),
            FactsVerdict::Gone(_)
        ));
        for inconclusive in [
            f(Some(10), "partial", Some(7)),
            f(Some(10), "complete", None),
            f(None, "complete", Some(7)),
            MlstKey::Unavailable,
            MlstKey::Facts(KeyFacts::default()),
        ] {
            assert_eq!(
                judge_facts(&inconclusive, 10, 7),
                FactsVerdict::Unknown,
                "{inconclusive:?}"
            );
        }
    }
}
