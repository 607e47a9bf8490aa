//! keyftpd's resumable upload over HTTP (CN101174954A, keyftp(7) "HTTP"):
//! `GET /PATH?state` answers the size, the stored key and whether the file
//! is complete; `POST /PATH` with a multipart form (`offset`, `key`, then
//! the `file` part) writes from the offset. The server takes the form only
//! when the offset is its size and the key its key (else 409), and records
//! the file complete when the CRC of the whole file equals the key.

use serde::Deserialize;

use crate::key::Key;
use crate::transport::RemoteError;

/// The state JSON.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct State {
    pub size: u64,
    pub key: Option<String>,
    pub complete: bool,
}

impl State {
    /// The stored key; `None` when there is none (or it is unreadable).
    pub fn key(&self) -> Option<Key> {
        let k = self.key.as_deref()?;
        let hex = k.strip_prefix("0x").or_else(|| k.strip_prefix("0X"))?;
        u32::from_str_radix(hex, 16).ok().map(Key)
    }

    /// No file at all (the server's answer for a name it does not hold).
    pub fn is_nothing(&self) -> bool {
        self.size == 0 && self.key.is_none() && !self.complete
    }
}

/// The answer to `GET /PATH?crc=N` (keyftpd): `{"end": N, "crc": "0x.."}`.
#[derive(Deserialize)]
struct CrcAnswer {
    crc: String,
}

pub fn parse_crc(body: &str) -> Result<u32, RemoteError> {
    let a: CrcAnswer = serde_json::from_str(body.trim())
        .map_err(|e| RemoteError::Protocol(format!("crc answer: {e}")))?;
    let hex = a
        .crc
        .strip_prefix("0x")
        .or_else(|| a.crc.strip_prefix("0X"));
    hex.and_then(|h| u32::from_str_radix(h, 16).ok())
        .ok_or_else(|| RemoteError::Protocol(format!("crc answer: {:?} is no CRC", a.crc)))
}

pub fn parse_state(body: &str) -> Result<State, RemoteError> {
    serde_json::from_str(body.trim())
        .map_err(|e| RemoteError::Protocol(format!("state answer: {e}")))
}

/// The multipart form around the file's bytes: what goes before them and
/// what after, for a body of known length.
pub fn form(boundary: &str, offset: u64, key: Option<Key>) -> (String, String) {
    let mut head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"offset\"\r\n\r\n{offset}\r\n"
    );
    if let Some(k) = key {
        head.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\n0x{:08X}\r\n",
            k.0
        ));
    }
    head.push_str(&format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    ));
    (head, format!("\r\n--{boundary}--\r\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states() {
        let s = parse_state(r#"{"size": 5, "key": "0x1A2B3C4D", "complete": false}"#).unwrap();
        assert_eq!(s.key(), Some(Key(0x1A2B_3C4D)));
        assert!(!s.is_nothing());
        let n = parse_state("{\"size\":0,\"key\":null,\"complete\":false}\n").unwrap();
        assert!(n.is_nothing());
        assert!(parse_state("<html>").is_err());
    }

    #[test]
    fn crcs() {
        assert_eq!(
            parse_crc(r#"{"end": 7, "crc": "0x0000ABCD"}"#).unwrap(),
            0xABCD
        );
        assert_eq!(
            parse_crc("{\"end\": null, \"crc\": \"0xFFFFFFFF\"}\n").unwrap(),
            u32::MAX
        );
        assert!(parse_crc(r#"{"crc": "ABCD"}"#).is_err());
        assert!(parse_crc("<html>").is_err());
    }

    #[test]
    fn form_has_fields_in_order() {
        let (h, t) = form("b", 7, Some(Key(0xAB)));
        let o = h.find("name=\"offset\"").unwrap();
        let k = h.find("name=\"key\"").unwrap();
        let f = h.find("name=\"file\"").unwrap();
        assert!(o < k && k < f);
        assert!(h.contains("\r\n\r\n7\r\n") && h.contains("0x000000AB"));
        assert!(h.ends_with("\r\n\r\n") && t == "\r\n--b--\r\n");
    }
}
