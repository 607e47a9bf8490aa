//! The local end of the checks: the CRC of a prefix of the spooled file
//! (for the resume decision) and whether a spooled copy still holds what
//! its record says. The server end is the transport's
//! ([`crate::transport::Conn::verify`]).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

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
