//! The KEY extension's wire forms, shared by keyftpd and the keyfs client.
//!
//! Pure parsing and formatting, no I/O. The protocol (see `man/keyftp.7`):
//!
//! ```text
//! KEY 0x5F2D3A26        -> 230 Key set             binds a key to the session's next STOR/APPE
//! STOR name             -> 350 Partial file exists, size N   (only after KEY, only for a partial)
//! KEY NULL              -> 230 0x5F2D3A26          stored key of the file named in the prompt
//!                       -> 230 0x00                none stored
//! REST N + STOR name    -> resume (the key stays bound across the 350 prompt)
//! DELE name + STOR name -> restart
//! XCRC name [start end] -> 250 5F2D3A26            CRC-32 of the file or of [start, end)
//! ```
//!
//! A stored key is always written with 8 hex digits, so a file whose CRC is
//! really zero answers `230 0x00000000`, and only the short `0x00` means "no
//! key". The patent leaves that case ambiguous; this is how we close it.

use std::fmt;

/// A CRC-32 (IEEE, as `crc32fast` computes it) of a whole file: the KEY.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(pub u32);

impl Key {
    /// CRC-32 of a byte slice.
    pub fn of(data: &[u8]) -> Key {
        Key(crc32fast::hash(data))
    }
}

impl fmt::Display for Key {
    /// The wire form: `0x` and 8 upper-case hex digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:08X}", self.0)
    }
}

/// Errors in a wire form. Servers answer these with 501, clients treat them
/// as a protocol error from the peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("expected 0x followed by 1 to 8 hex digits, or NULL")]
    BadKey,
    #[error("malformed reply: {0}")]
    BadReply(String),
    #[error("malformed range")]
    BadRange,
}

/// The argument of a `KEY` command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyArg {
    /// `KEY 0x<hex>`: bind this key to the next STOR/APPE.
    Set(Key),
    /// `KEY NULL`: ask for the stored key of the file named in the last prompt.
    Null,
}

/// Parses a hex key `0x<1-8 hex digits>` (either case of x).
pub fn parse_hex_key(s: &str) -> Result<Key, WireError> {
    let digits = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .ok_or(WireError::BadKey)?;
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(WireError::BadKey);
    }
    u32::from_str_radix(digits, 16)
        .map(Key)
        .map_err(|_| WireError::BadKey)
}

impl KeyArg {
    /// Parses the argument of `KEY` (surrounding blanks ignored).
    pub fn parse(arg: &str) -> Result<KeyArg, WireError> {
        let arg = arg.trim();
        if arg.eq_ignore_ascii_case("NULL") {
            return Ok(KeyArg::Null);
        }
        parse_hex_key(arg).map(KeyArg::Set)
    }

    /// The command line a client sends, without CRLF.
    pub fn to_command(self) -> String {
        match self {
            KeyArg::Set(k) => format!("KEY {k}"),
            KeyArg::Null => "KEY NULL".to_string(),
        }
    }
}

/// The text after `230 ` in the answer to `KEY NULL`.
pub fn format_stored_key(key: Option<Key>) -> String {
    match key {
        Some(k) => k.to_string(),
        None => "0x00".to_string(),
    }
}

/// Splits a reply into its code and the text of its last line.
/// Works on single- and multi-line replies (`250-...` lines then `250 ...`).
pub fn reply_code(reply: &str) -> Option<(u16, &str)> {
    let last = reply
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .rfind(|l| !l.trim().is_empty())?;
    let code = last.get(..3)?;
    if !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let rest = last.get(3..).unwrap_or("");
    if !(rest.is_empty() || rest.starts_with(' ')) {
        return None;
    }
    Some((code.parse().ok()?, rest.trim()))
}

/// Parses the reply to `KEY NULL`: `230 0x<hex>` gives the key, `230 0x00`
/// gives `None` (no key stored).
pub fn parse_key_null_reply(reply: &str) -> Result<Option<Key>, WireError> {
    let bad = || WireError::BadReply(reply.trim().chars().take(200).collect());
    match reply_code(reply) {
        Some((230, text)) => {
            let tok = text.split_whitespace().next().ok_or_else(bad)?;
            if tok == "0x00" || tok == "0X00" {
                return Ok(None);
            }
            parse_hex_key(tok).map(Some).map_err(|_| bad())
        }
        _ => Err(bad()),
    }
}

/// The same-name prompt the server sends instead of opening a transfer.
pub fn format_same_name_prompt(size: u64) -> String {
    format!("350 Partial file exists, size {size}; send KEY NULL, then REST+STOR or DELE")
}

/// Reads the partial's size from a same-name prompt: the number after
/// `size`, or else the first number in the text.
pub fn parse_same_name_prompt(reply: &str) -> Option<u64> {
    let (code, text) = reply_code(reply)?;
    if code != 350 {
        return None;
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    let num = |w: &str| {
        w.trim_matches(|c: char| !c.is_ascii_digit())
            .parse::<u64>()
            .ok()
    };
    if let Some(i) = words.iter().position(|w| w.eq_ignore_ascii_case("size")) {
        if let Some(n) = words.get(i + 1).and_then(|w| num(w)) {
            return Some(n);
        }
    }
    words.iter().find_map(|w| num(w))
}

/// Parses an XCRC reply: the final line `250 <hex>`, possibly after
/// ProFTPD's `250-Computing...` lines. Returns the CRC.
pub fn parse_xcrc_reply(reply: &str) -> Result<u32, WireError> {
    let bad = || WireError::BadReply(reply.trim().chars().take(200).collect());
    match reply_code(reply) {
        Some((250, text)) => {
            let tok = text.split_whitespace().next().ok_or_else(bad)?;
            let tok = tok
                .strip_prefix("0x")
                .or_else(|| tok.strip_prefix("0X"))
                .unwrap_or(tok);
            if tok.is_empty() || tok.len() > 8 || !tok.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad());
            }
            u32::from_str_radix(tok, 16).map_err(|_| bad())
        }
        _ => Err(bad()),
    }
}

/// Parses a HASH reply (draft-bryan-ftpext-hash) for CRC32:
/// `213 CRC32 0-N <hex> name`. Returns (end, crc) where end is exclusive.
pub fn parse_hash_reply(reply: &str) -> Result<(u64, u32), WireError> {
    let bad = || WireError::BadReply(reply.trim().chars().take(200).collect());
    let (code, text) = reply_code(reply).ok_or_else(bad)?;
    if code != 213 {
        return Err(bad());
    }
    let mut it = text.split_whitespace();
    let algo = it.next().ok_or_else(bad)?;
    if !algo.eq_ignore_ascii_case("CRC32") {
        return Err(bad());
    }
    let range = it.next().ok_or_else(bad)?;
    let (start, end) = range.split_once('-').ok_or_else(bad)?;
    let start: u64 = start.parse().map_err(|_| bad())?;
    let end: u64 = end.parse().map_err(|_| bad())?;
    if start != 0 {
        return Err(bad());
    }
    let hex = it.next().ok_or_else(bad)?;
    if hex.is_empty() || hex.len() > 8 {
        return Err(bad());
    }
    let crc = u32::from_str_radix(hex, 16).map_err(|_| bad())?;
    Ok((end, crc))
}

/// A byte range `[start, end)`.
pub type ByteRange = (u64, u64);

/// The arguments of `XCRC path [start end]`, split from the right so that a
/// path with spaces still works. `end` is exclusive.
pub fn parse_xcrc_args(arg: &str) -> Result<(&str, Option<ByteRange>), WireError> {
    let arg = arg.trim();
    if arg.is_empty() {
        return Err(WireError::BadRange);
    }
    let mut parts = arg.rsplitn(3, ' ');
    let last = parts.next();
    let mid = parts.next();
    let first = parts.next();
    if let (Some(end), Some(start), Some(path)) = (last, mid, first) {
        if let (Ok(s), Ok(e)) = (start.parse::<u64>(), end.parse::<u64>()) {
            if s > e {
                return Err(WireError::BadRange);
            }
            return Ok((path, Some((s, e))));
        }
    }
    Ok((arg, None))
}

/// The features named in a FEAT reply, upper-cased first words
/// (`KEY`, `XCRC`, `HASH`, `REST`, `MLST`, ...).
pub fn parse_feat(reply: &str) -> Vec<String> {
    reply
        .lines()
        .filter(|l| l.starts_with(' '))
        .filter_map(|l| l.split_whitespace().next())
        .map(|w| w.to_ascii_uppercase())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn key_args() {
        assert_eq!(
            KeyArg::parse("0x5F2D3A26"),
            Ok(KeyArg::Set(Key(0x5F2D3A26)))
        );
        assert_eq!(KeyArg::parse("0Xab"), Ok(KeyArg::Set(Key(0xab))));
        assert_eq!(KeyArg::parse("null"), Ok(KeyArg::Null));
        assert_eq!(KeyArg::parse(" NULL "), Ok(KeyArg::Null));
        for bad in ["", "0x", "5F2D3A26", "0x123456789", "0xZZ", "0x-1", "NUL"] {
            assert_eq!(KeyArg::parse(bad), Err(WireError::BadKey), "{bad:?}");
        }
    }

    #[test]
    fn stored_key_none_vs_zero() {
        assert_eq!(format_stored_key(None), "0x00");
        assert_eq!(format_stored_key(Some(Key(0))), "0x00000000");
        assert_eq!(parse_key_null_reply("230 0x00\r\n"), Ok(None));
        assert_eq!(parse_key_null_reply("230 0x00000000"), Ok(Some(Key(0))));
        assert_eq!(
            parse_key_null_reply("230 0x5F2D3A26"),
            Ok(Some(Key(0x5F2D3A26)))
        );
        assert!(parse_key_null_reply("500 what").is_err());
        assert!(parse_key_null_reply("230 hello").is_err());
        assert!(parse_key_null_reply("").is_err());
    }

    #[test]
    fn prompt_roundtrip() {
        let p = format_same_name_prompt(123456);
        assert_eq!(parse_same_name_prompt(&p), Some(123456));
        assert_eq!(parse_same_name_prompt("350 exists (77 bytes)"), Some(77));
        assert_eq!(parse_same_name_prompt("150 ok 12"), None);
    }

    #[test]
    fn xcrc_replies() {
        assert_eq!(parse_xcrc_reply("250 5F2D3A26\r\n"), Ok(0x5F2D3A26));
        assert_eq!(
            parse_xcrc_reply("250-Computing CRC32 digest\r\n250 0000abcd\r\n"),
            Ok(0xabcd)
        );
        assert!(parse_xcrc_reply("501 bad").is_err());
        assert!(parse_xcrc_reply("250 XYZ").is_err());
        assert!(parse_xcrc_reply("250 123456789").is_err());
    }

    #[test]
    fn hash_reply() {
        assert_eq!(
            parse_hash_reply("213 CRC32 0-1000 0000abcd a file.bin"),
            Ok((1000, 0xabcd))
        );
        assert!(parse_hash_reply("213 SHA-256 0-1 ab x").is_err());
        assert!(parse_hash_reply("213 CRC32 5-10 ab x").is_err());
    }

    #[test]
    fn xcrc_args() {
        assert_eq!(parse_xcrc_args("a b.bin"), Ok(("a b.bin", None)));
        assert_eq!(
            parse_xcrc_args("a b.bin 0 10"),
            Ok(("a b.bin", Some((0, 10))))
        );
        assert_eq!(parse_xcrc_args("f 10 0"), Err(WireError::BadRange));
        assert_eq!(parse_xcrc_args(""), Err(WireError::BadRange));
    }

    #[test]
    fn reply_codes() {
        assert_eq!(reply_code("250 ok"), Some((250, "ok")));
        assert_eq!(
            reply_code("211-Features\r\n KEY\r\n211 End\r\n"),
            Some((211, "End"))
        );
        assert_eq!(reply_code("2x0 ok"), None);
        assert_eq!(reply_code("250"), Some((250, "")));
    }

    #[test]
    fn feat() {
        let f = parse_feat("211-Features:\r\n KEY\r\n XCRC\r\n REST STREAM\r\n211 End\r\n");
        assert_eq!(f, vec!["KEY", "XCRC", "REST"]);
    }

    proptest! {
        #[test]
        fn key_roundtrip(v: u32) {
            let k = Key(v);
            prop_assert_eq!(KeyArg::parse(&k.to_string()), Ok(KeyArg::Set(k)));
            prop_assert_eq!(parse_key_null_reply(&format!("230 {}", format_stored_key(Some(k)))), Ok(Some(k)));
            prop_assert_eq!(parse_xcrc_reply(&format!("250 {:08X}", v)), Ok(v));
        }

        #[test]
        fn parsers_never_panic(s in ".{0,200}") {
            let _ = KeyArg::parse(&s);
            let _ = parse_key_null_reply(&s);
            let _ = parse_same_name_prompt(&s);
            let _ = parse_xcrc_reply(&s);
            let _ = parse_hash_reply(&s);
            let _ = parse_xcrc_args(&s);
            let _ = reply_code(&s);
        }
    }
}
