//! The KEY extension and XCRC (see `man/keyftp.7` and `crate::key`).
//!
//! `KEY 0x..` binds a key to the session's next STOR/APPE; `KEY NULL`
//! answers the stored key of the file named in the last same-name prompt.
//! XCRC computes the CRC-32 of a file or of `[start, end)`, reusing the
//! cached whole-file CRC when the file is unchanged since it was recorded.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

use super::data::XFER_BUF;
use super::session::Session;
use crate::key::{self, KeyArg};

/// CRC-32 of `[start, end)` of `file`. `end` must not pass EOF.
pub(crate) fn crc_range(file: &mut File, start: u64, end: u64) -> io::Result<u32> {
    let mut h = crc32fast::Hasher::new();
    file.seek(SeekFrom::Start(start))?;
    let mut left = end.saturating_sub(start);
    let mut buf = vec![0u8; XFER_BUF.min(left.max(1) as usize)];
    while left > 0 {
        let want = buf.len().min(left as usize);
        let n = file.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while computing CRC",
            ));
        }
        h.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(h.finalize())
}

pub(crate) fn handle(s: &mut Session, verb: &str, arg: &str) -> io::Result<()> {
    match verb {
        "KEY" => match KeyArg::parse(arg) {
            Ok(KeyArg::Set(k)) => {
                s.key = Some(k);
                s.reply(230, &format!("Key {k} set for the next STOR/APPE"))
            }
            Ok(KeyArg::Null) => {
                let stored = s
                    .last_prompt
                    .as_deref()
                    .and_then(|p| s.shared.store.get(p))
                    .and_then(|m| m.key);
                s.reply(230, &key::format_stored_key(stored))
            }
            Err(e) => s.reply(501, &format!("KEY: {e}")),
        },
        "XCRC" => {
            let (path, range) = match key::parse_xcrc_args(arg) {
                Ok(x) => x,
                Err(e) => return s.reply(501, &format!("XCRC: {e}")),
            };
            let Some((v, real)) = s.target(path, true, None)? else {
                return Ok(());
            };
            let mut f = match File::open(&real) {
                Ok(f) => f,
                Err(e) => return s.io_error("XCRC", &e),
            };
            let md = match f.metadata() {
                Ok(md) if md.is_file() => md,
                Ok(_) => return s.reply(550, "XCRC: not a regular file"),
                Err(e) => return s.io_error("XCRC", &e),
            };
            let (start, end) = range.unwrap_or((0, md.len()));
            if start > end || end > md.len() {
                return s.reply(
                    501,
                    &format!(
                        "XCRC: range {start}-{end} outside file of {} bytes",
                        md.len()
                    ),
                );
            }
            let cached = if start == 0 && end == md.len() {
                s.shared
                    .store
                    .get(&v.rel())
                    .and_then(|m| m.trusted_crc(&md))
            } else {
                None
            };
            let crc = match cached {
                Some(c) => c,
                None => match crc_range(&mut f, start, end) {
                    Ok(c) => c,
                    Err(e) => return s.io_error("XCRC", &e),
                },
            };
            s.reply(250, &format!("{crc:08X}"))
        }
        _ => s.reply(502, "Command not implemented"),
    }
}
