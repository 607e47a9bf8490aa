//! Checks on both ends: the local CRC of a prefix of the spooled file (for
//! the resume decision), and the post-upload verification (size, and CRC
//! where the server offers XCRC/HASH) that must pass before the spooled
//! copy may be deleted. `finish()` returning Ok proves nothing by itself.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

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

/// Why a verification failed.
pub enum VerifyError {
    Mismatch(String),
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

/// Verifies the server copy: its size is `size`, and its CRC is `crc` where
/// the server can compute one.
pub fn verify_remote(s: &mut Session, path: &str, size: u64, crc: u32) -> Result<(), VerifyError> {
    let got = remote_size(s, path)?;
    if got != Some(size) {
        return Err(VerifyError::Mismatch(format!(
            "server size {got:?} after upload, expected {size}"
        )));
    }
    match s.remote_crc(path, None) {
        Ok(Some(c)) if c != crc => Err(VerifyError::Mismatch(format!(
            "server CRC {c:08X} after upload, expected {crc:08X}"
        ))),
        Ok(_) => Ok(()),
        Err(e) if matches!(e.code(), Some(500..=504)) => {
            log::warn!("{path}: server offers a checksum but refused it ({e}); size verified only");
            Ok(())
        }
        Err(e) => Err(e.into()),
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
}
