//! HASH (draft-bryan-ftpext-hash) with CRC32, the one algorithm keyftpd
//! offers: the same CRC-32 as XCRC, in the form other servers use, so a
//! client that falls back from XCRC to HASH finds it here too.
//!
//! - `OPTS HASH` answers the selected algorithm, `OPTS HASH CRC32` selects
//!   it (`200 CRC32`); any other algorithm gets 501.
//! - `RANG start end` (end inclusive, as in the draft) applies to the next
//!   HASH only (`350`); keyftpd has no ranged RETR/STOR.
//! - `HASH path` answers `213 CRC32 start-end <hex> path` with `end`
//!   inclusive; the whole file of N bytes is `0-(N-1)` (`0-0` when empty).
//!   550 for a missing file or a directory, 501 for a range past the end.

use std::io;

use super::session::Session;
use super::store::ErrorKind;

/// The FEAT line.
pub(crate) const FEATURE: &str = "HASH CRC32*";

/// `OPTS HASH [algo]`.
pub(crate) fn opts(arg: &str) -> (u16, String) {
    let algo = arg.trim().get(4..).unwrap_or("").trim();
    if algo.is_empty() || algo.eq_ignore_ascii_case("CRC32") {
        (200, "CRC32".to_string())
    } else {
        (
            501,
            "Unknown algorithm, current selection not changed".to_string(),
        )
    }
}

/// Parses `RANG start end`: both decimal, `start <= end`.
fn parse_rang(arg: &str) -> Option<(u64, u64)> {
    let mut it = arg.split_whitespace();
    let start = it.next()?.parse().ok()?;
    let end = it.next()?.parse().ok()?;
    (it.next().is_none() && start <= end).then_some((start, end))
}

pub(crate) fn handle(s: &mut Session, verb: &str, arg: &str) -> io::Result<()> {
    match verb {
        "RANG" => match parse_rang(arg) {
            Some((start, end)) => {
                s.hash_range = Some((start, end));
                s.reply(
                    350,
                    &format!("Restarting at {start}. Ending byte at {end} (for the next HASH)"),
                )
            }
            None => {
                s.hash_range = None;
                s.reply(501, "RANG needs two numbers, start <= end")
            }
        },
        "HASH" => {
            let range = s.hash_range.take();
            let Some(v) = s.target(arg.trim(), None)? else {
                return Ok(());
            };
            // [start, end) for the store; the reply shows the end inclusive.
            let (start, end) = match range {
                Some((a, b)) => (a, b.saturating_add(1)),
                None => match s.shared.store.stat(&v) {
                    Ok(st) if st.is_file() => (0, st.len()),
                    Ok(_) => return s.reply(550, "HASH: not a regular file"),
                    Err(e) => return s.store_error("HASH", &e),
                },
            };
            // The store answers a whole file from the CRC recorded at
            // upload while the file is unchanged, as for XCRC.
            let crc = match s.shared.store.crc(&v, Some((start, end))) {
                Ok(c) => c,
                Err(e) if e.kind == ErrorKind::Conflict => {
                    return s.reply(501, &format!("HASH: {}", e.msg))
                }
                Err(e) => return s.store_error("HASH", &e),
            };
            let last = end.saturating_sub(1).max(start);
            s.reply(
                213,
                &format!("CRC32 {start}-{last} {crc:08X} {}", v.display()),
            )
        }
        _ => s.reply(502, "Command not implemented"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rang_arguments() {
        assert_eq!(parse_rang("0 99"), Some((0, 99)));
        assert_eq!(parse_rang(" 5 5 "), Some((5, 5)));
        for bad in ["", "1", "2 1", "a b", "1 2 3", "-1 2"] {
            assert_eq!(parse_rang(bad), None, "{bad:?}");
        }
    }
}
