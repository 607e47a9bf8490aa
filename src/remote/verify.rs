//! The post-upload verification over FTP, which must pass before the
//! spooled copy may be deleted. `finish_store()` returning Ok proves
//! nothing by itself.
//!
//! Against a server with KEY, one `MLST` suffices: `type=file`, our size,
//! `x.keystate=complete` and `x.key` equal to our key mean the server
//! computed the CRC of the bytes it wrote, while writing them, and found it
//! equal to our key (keyftp(7)). That is the CRC XCRC would compute, without
//! re-reading the whole file. The facts count only from a reply with one
//! entry, about the path asked (see [`super::checksum::mlst_entry_for`]),
//! and an `x.key` of exactly `0x` + 8 hex digits. When those facts are
//! missing we fall back to SIZE plus XCRC/HASH, as for stock servers.

use super::checksum::MlstKey;
use super::{RemoteError, Session};
use crate::transport::{Verified, VerifyError};

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
    /// Our size and our key, recorded partial: the server's CRC of the
    /// bytes it wrote is not the key (keyftpd records the state by CRC
    /// before its 226), so they are not the bytes we hold.
    CrcMismatch(String),
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
    if f.is_file
        && f.keystate.as_deref() == Some("partial")
        && (f.size, f.key) == (Some(size), Some(crc))
    {
        return FactsVerdict::CrcMismatch(format!(
            "server holds {size} bytes with our key {crc:08X} but recorded partial: \
             their CRC is not the key"
        ));
    }
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
            FactsVerdict::CrcMismatch(msg) => return Err(VerifyError::CrcMismatch(msg)),
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
        // Our size and key, recorded partial: the bytes are not ours.
        assert!(matches!(
            judge_facts(&f(Some(10), "partial", Some(7)), 10, 7),
            FactsVerdict::CrcMismatch(_)
        ));
        for inconclusive in [
            f(Some(9), "partial", Some(7)),
            f(Some(10), "partial", Some(8)),
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
