//! KEY, KEY NULL, SIZE, XCRC, HASH and MLST key facts: what the uploader
//! asks the server to decide between resuming and restarting, and to verify
//! an upload.

use crate::key::{self, Key, KeyArg};

use super::listing::{parse_key_entry, KeyFacts};
use super::{RemoteError, Session};

/// What `MLST path` said about a file's key facts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MlstKey {
    /// 550: no such file.
    Absent,
    /// The facts of the entry.
    Facts(KeyFacts),
    /// No MLST, refused (5xx other than 550), no entry line, more than one,
    /// or an entry about another name.
    Unavailable,
}

/// Reads the reply to `MLST abs` (code 250): exactly one entry line, whose
/// name is the path asked about. keyftpd echoes the absolute path it was
/// given (`/dir/a b.bin`); RFC 3659 servers may also give the path as sent
/// without the leading `/`, or only the last component. Anything else
/// (another file's facts, a second entry) is no evidence about this file.
pub fn mlst_entry_for(text: &str, abs: &str) -> MlstKey {
    let mut entries = text.lines().filter(|l| l.starts_with(' '));
    let (Some(line), None) = (entries.next(), entries.next()) else {
        return MlstKey::Unavailable;
    };
    let Some((facts, name)) = parse_key_entry(line) else {
        return MlstKey::Unavailable;
    };
    let base = abs.rsplit('/').next().unwrap_or(abs);
    let rel = abs.trim_start_matches('/');
    if name == abs || (!rel.is_empty() && name == rel) || (!base.is_empty() && name == base) {
        MlstKey::Facts(facts)
    } else {
        log::warn!("MLST {abs} answered about {name:?}: ignored");
        MlstKey::Unavailable
    }
}

impl Session {
    /// `KEY 0x<crc>`: binds the key to the next STOR/APPE of this session.
    pub fn key_set(&mut self, k: Key) -> Result<(), RemoteError> {
        self.command(&KeyArg::Set(k).to_command(), &[230, 200])
            .map(|_| ())
    }

    /// `KEY NULL`: the stored key of the file named in the last same-name
    /// prompt; `None` when the server holds none (`230 0x00`).
    pub fn key_null(&mut self) -> Result<Option<Key>, RemoteError> {
        let r = self.command(&KeyArg::Null.to_command(), &[230])?;
        key::parse_key_null_reply(&r.text).map_err(|e| RemoteError::Protocol(e.to_string()))
    }

    /// `SIZE path`; `None` when the file does not exist (550).
    pub fn size(&mut self, path: &str) -> Result<Option<u64>, RemoteError> {
        let abs = self.abs(path)?;
        let r = self.raw(&format!("SIZE {abs}"))?;
        match r.code {
            213 => {
                let (_, text) = key::reply_code(&r.text)
                    .ok_or_else(|| RemoteError::Protocol("malformed SIZE reply".into()))?;
                text.split_whitespace()
                    .next()
                    .and_then(|t| t.parse::<u64>().ok())
                    .map(Some)
                    .ok_or_else(|| RemoteError::Protocol(format!("malformed SIZE reply: {text}")))
            }
            550 => Ok(None),
            _ => Err(r
                .require(&[213])
                .err()
                .unwrap_or_else(|| RemoteError::Protocol("SIZE".into()))),
        }
    }

    /// `XCRC path [start end]`: the server's CRC-32 of the file or of `[start, end)`.
    pub fn xcrc(&mut self, path: &str, range: Option<(u64, u64)>) -> Result<u32, RemoteError> {
        let abs = self.abs(path)?;
        let line = match range {
            Some((s, e)) => format!("XCRC {abs} {s} {e}"),
            None => format!("XCRC {abs}"),
        };
        let r = self.with_slow_replies(|s| s.command(&line, &[250]))?;
        key::parse_xcrc_reply(&r.text).map_err(|e| RemoteError::Protocol(e.to_string()))
    }

    /// `HASH` (draft-bryan-ftpext-hash) CRC32 of `[0, end)` or of the whole
    /// file. Selects CRC32 with `OPTS HASH CRC32` and, for a prefix, `RANG`
    /// (whose end point is inclusive). Servers differ on whether the range in
    /// the reply is inclusive, so both readings are accepted: a wrong reading
    /// can only make the CRCs differ, which leads to a (safe) restart.
    pub fn hash_crc32(&mut self, path: &str, end: Option<u64>) -> Result<u32, RemoteError> {
        let abs = self.abs(path)?;
        self.command("OPTS HASH CRC32", &[200])?;
        if let Some(e) = end {
            if e == 0 {
                return Ok(0);
            }
            self.command(&format!("RANG 0 {}", e - 1), &[350])?;
        }
        let r = self.with_slow_replies(|s| s.command(&format!("HASH {abs}"), &[213]))?;
        let (got_end, crc) =
            key::parse_hash_reply(&r.text).map_err(|e| RemoteError::Protocol(e.to_string()))?;
        if let Some(e) = end {
            // Inclusive or exclusive end; a hostile `u64::MAX` must not overflow.
            if got_end != e && got_end.checked_add(1) != Some(e) {
                return Err(RemoteError::Protocol(format!(
                    "HASH answered range 0-{got_end}, asked 0-{e}"
                )));
            }
        }
        Ok(crc)
    }

    /// `MLST path`, read for the facts that verify an upload (`size`,
    /// `x.keystate`, `x.key`). One round trip; the server reads no file data.
    pub fn mlst_key(&mut self, path: &str) -> Result<MlstKey, RemoteError> {
        if !self.features().mlsd {
            return Ok(MlstKey::Unavailable);
        }
        let abs = self.abs(path)?;
        let r = self.raw(&format!("MLST {abs}"))?;
        Ok(match r.code {
            250 => mlst_entry_for(&r.text, &abs),
            550 => MlstKey::Absent,
            _ => MlstKey::Unavailable,
        })
    }

    /// The checksum command this session uses: XCRC where offered and not
    /// refused, else HASH with CRC32, else none (size only).
    pub fn crc_method(&self) -> Option<CrcMethod> {
        let f = self.features();
        if f.xcrc {
            Some(CrcMethod::Xcrc)
        } else if f.hash_crc32 {
            Some(CrcMethod::HashCrc32)
        } else {
            None
        }
    }

    /// Stops using `m` on this session (the server refused it, here or on
    /// another session of the same mount).
    pub fn drop_crc_method(&mut self, m: CrcMethod) {
        match m {
            CrcMethod::Xcrc => self.features.xcrc = false,
            CrcMethod::HashCrc32 => self.features.hash_crc32 = false,
            CrcMethod::HttpCrc => {}
        }
    }

    /// The refusals seen on this session since the last call.
    pub fn take_refused(&mut self) -> Vec<(CrcMethod, String)> {
        std::mem::take(&mut self.refused)
    }

    /// The server's CRC of `[0, end)` by XCRC or HASH, whichever it offers;
    /// `None` when it offers neither. `end == None`: the whole file.
    ///
    /// Only call it for a file the server just said exists (by SIZE or a
    /// same-name prompt): a refusal (see [`is_refusal`]) then means the
    /// command is denied, not that the file is missing, so the method is
    /// dropped for this session (and reported by [`Session::take_refused`])
    /// and the next one is tried: XCRC, then HASH, then `None` (size only).
    /// A server that lists XCRC but denies it (ProFTPD with
    /// `<Limit XCRC> DenyAll`) would otherwise fail every verification.
    pub fn remote_crc(&mut self, path: &str, end: Option<u64>) -> Result<Option<u32>, RemoteError> {
        while let Some(m) = self.crc_method() {
            let r = match m {
                CrcMethod::Xcrc => self.xcrc(path, end.map(|e| (0, e))),
                CrcMethod::HashCrc32 => self.hash_crc32(path, end),
                // Never offered over FTP (see `crc_method`).
                CrcMethod::HttpCrc => return Ok(None),
            };
            match r {
                Ok(c) => return Ok(Some(c)),
                Err(e) if is_refusal(&e) => {
                    let why = e.to_string();
                    log::warn!(
                        "{path}: the server refused {} ({why}); not using it any more",
                        m.name()
                    );
                    self.drop_crc_method(m);
                    self.refused.push((m, why));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }
}

/// A checksum command a server may offer for a file or a prefix of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CrcMethod {
    /// `XCRC path [start end]` (ProFTPD mod_digest, keyftpd).
    Xcrc,
    /// `HASH` with `OPTS HASH CRC32` (draft-bryan-ftpext-hash).
    HashCrc32,
    /// `GET /PATH?crc=N` on keyftpd's HTTP face (the HTTP transport's).
    HttpCrc,
}

impl CrcMethod {
    pub fn name(self) -> &'static str {
        match self {
            CrcMethod::Xcrc => "XCRC",
            CrcMethod::HashCrc32 => "HASH CRC32",
            CrcMethod::HttpCrc => "GET ?crc",
        }
    }
}

/// Whether an error to a checksum command about an existing file means the
/// command will never work here: a 5xx reply (denied, not implemented,
/// arguments not understood; 530 excepted, a login matter), or a reply we
/// cannot read. A 4xx is passing, a network error is retried.
pub fn is_refusal(e: &RemoteError) -> bool {
    match e {
        RemoteError::Reply { code, .. } => (500..600).contains(code) && *code != 530,
        RemoteError::Protocol(_) => true,
        RemoteError::Io(_) | RemoteError::Status { .. } => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(entry: &str) -> String {
        format!("250-Listing\r\n {entry}\r\n250 End\r\n")
    }

    const GOOD: &str = "type=file;size=3;x.keystate=complete;x.key=0x352441C2;";

    #[test]
    fn the_entry_must_name_the_file_asked_about() {
        let want = MlstKey::Facts(KeyFacts {
            is_file: true,
            size: Some(3),
            keystate: Some("complete".into()),
            key: Some(0x352441C2),
        });
        let abs = "/in/a b; x.key=0x00000000.bin";
        for name in [
            abs,
            "in/a b; x.key=0x00000000.bin",
            "a b; x.key=0x00000000.bin",
        ] {
            let r = reply(&format!("{GOOD} {name}"));
            assert_eq!(mlst_entry_for(&r, abs), want, "{name}");
        }
        for name in [
            "/in/other.bin",
            "other.bin",
            "/elsewhere/a b; x.key=0x00000000.bin",
            "/in/a b",
            "",
            "/in/a b; x.key=0x00000000.bin ",
        ] {
            let r = reply(&format!("{GOOD} {name}"));
            assert_eq!(mlst_entry_for(&r, abs), MlstKey::Unavailable, "{name:?}");
        }
    }

    #[test]
    fn hostile_replies_are_no_evidence() {
        let abs = "/f";
        let u = MlstKey::Unavailable;
        // No entry, two entries (even both about `f`), no facts at all.
        assert_eq!(mlst_entry_for("250 End\r\n", abs), u);
        let two = format!("250-x\r\n {GOOD} /f\r\n {GOOD} /f\r\n250 End\r\n");
        assert_eq!(mlst_entry_for(&two, abs), u);
        assert_eq!(mlst_entry_for(&reply("nospace"), abs), u);
        // A fact named twice: which one?
        for dup in [
            "type=file;size=3;size=4;x.keystate=complete;x.key=0x352441C2; /f",
            "type=file;size=3;x.keystate=complete;x.key=0x352441C2;X.Key=0x00000000; /f",
            "type=dir;type=file;size=3;x.keystate=complete;x.key=0x352441C2; /f",
        ] {
            assert_eq!(mlst_entry_for(&reply(dup), abs), u, "{dup}");
        }
        // A malformed x.key is no key (the facts then cannot verify).
        for bad in [
            "0x00",
            "0x0",
            "0x352441C",
            "0x352441C20",
            "0X352441C2",
            "352441C2",
            "0x-52441C2",
            "0x+352441C",
            "0x352441G2",
            "",
        ] {
            let r = reply(&format!(
                "type=file;size=3;x.keystate=complete;x.key={bad}; /f"
            ));
            match mlst_entry_for(&r, abs) {
                MlstKey::Facts(f) => assert_eq!(f.key, None, "{bad:?}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }
}
