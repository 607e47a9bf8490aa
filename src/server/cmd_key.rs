//! The KEY extension and XCRC (see `man/keyftp.7` and `crate::key`).
//!
//! `KEY 0x..` binds a key to the session's next STOR/APPE; `KEY NULL`
//! answers the stored key of the file named in the last same-name prompt.
//! XCRC computes the CRC-32 of a file or of `[start, end)` through the
//! store, which reuses the recorded whole-file CRC while it is trusted.

use std::io;

use super::paths::VPath;
use super::session::Session;
use super::store::ErrorKind;
use crate::key::{self, KeyArg};

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
                    .and_then(|p| VPath::root().resolve(p).ok())
                    .and_then(|v| s.shared.store.meta(&v).ok().flatten())
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
            let Some(v) = s.target(path, None)? else {
                return Ok(());
            };
            match s.shared.store.crc(&v, range) {
                Ok(crc) => s.reply(250, &format!("{crc:08X}")),
                Err(e) if e.kind == ErrorKind::Conflict => {
                    s.reply(501, &format!("XCRC: {}", e.msg))
                }
                Err(e) => s.store_error("XCRC", &e),
            }
        }
        _ => s.reply(502, "Command not implemented"),
    }
}
