//! Which checksum method the uploader asks the server for, across all
//! its workers and reconnections: what the server offers (as the
//! transport found out), minus what it refused. A refusal seen by one
//! connection (see
//! [`Conn::prefix_crc`]) is remembered here for the mount's lifetime,
//! so no later session asks again, and `keyfs status` can say which
//! method verifies uploads and why.

use std::sync::Mutex;

use crate::transport::{Conn, CrcMethod};

#[derive(Default)]
struct Inner {
    /// What the server offers (known after the first connection).
    offered: Option<Vec<CrcMethod>>,
    /// The server keeps keys: uploads are verified against its stored key
    /// (how, as the transport names it), the checksum method serves
    /// partials (and keys that are missing).
    key: Option<&'static str>,
    refused: Vec<(CrcMethod, String)>,
}

#[derive(Default)]
pub(crate) struct Checksums {
    inner: Mutex<Inner>,
}

impl Checksums {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Before a session is used: notes what it offers, and drops from it
    /// what the server refused before.
    pub fn apply(&self, s: &mut Conn) {
        let mut g = self.lock();
        if g.offered.is_none() {
            g.offered = Some(s.crc_offered());
            g.key = s.key_verification();
        }
        for (m, _) in &g.refused {
            s.drop_crc_method(*m);
        }
    }

    /// After a session was used: remembers what it saw refused.
    pub fn learn(&self, s: &mut Conn) {
        let new = s.take_refused();
        if new.is_empty() {
            return;
        }
        let mut g = self.lock();
        for (m, why) in new {
            if !g.refused.iter().any(|(r, _)| *r == m) {
                g.refused.push((m, why));
            }
        }
        let next = g
            .offered
            .iter()
            .flatten()
            .find(|m| !g.refused.iter().any(|(r, _)| r == *m))
            .map(|m| m.name())
            .unwrap_or("size only");
        log::warn!(
            "uploads are verified by {next} from now on ({})",
            refusals(&g)
        );
    }

    /// One line for `keyfs status`: the method in use and any fallback;
    /// `None` before the first session.
    pub fn note(&self) -> Option<String> {
        let g = self.lock();
        let offered = g.offered.as_ref()?;
        let usable = offered
            .iter()
            .find(|m| !g.refused.iter().any(|(r, _)| r == *m));
        let mut method = match (usable, offered.is_empty()) {
            (Some(m), _) => m.name().to_string(),
            (None, true) => "size only (the server offers no checksum)".to_string(),
            (None, false) => "size only".to_string(),
        };
        if let Some(how) = g.key {
            method = format!("KEY ({how}); for partials {method}");
        }
        if g.refused.is_empty() {
            Some(format!("checksum: {method}"))
        } else {
            Some(format!("checksum: {method} (fallback: {})", refusals(&g)))
        }
    }
}

fn refusals(g: &Inner) -> String {
    g.refused
        .iter()
        .map(|(m, why)| format!("{} refused: {why}", m.name()))
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(offered: Option<Vec<CrcMethod>>, key: bool, refused: &[CrcMethod]) -> Checksums {
        let key = key.then_some("the stored key");
        Checksums {
            inner: Mutex::new(Inner {
                offered,
                key,
                refused: refused
                    .iter()
                    .map(|m| (*m, "refused".to_string()))
                    .collect(),
            }),
        }
    }

    #[test]
    fn notes() {
        use CrcMethod::*;
        let note = |c: Checksums| c.note();
        assert_eq!(note(with(None, false, &[])), None);
        assert_eq!(
            note(with(Some(vec![Xcrc, HashCrc32]), false, &[])).as_deref(),
            Some("checksum: XCRC")
        );
        assert_eq!(
            note(with(Some(vec![Xcrc, HashCrc32]), false, &[Xcrc])).as_deref(),
            Some("checksum: HASH CRC32 (fallback: XCRC refused: refused)")
        );
        assert_eq!(
            note(with(Some(vec![Xcrc]), false, &[Xcrc])).as_deref(),
            Some("checksum: size only (fallback: XCRC refused: refused)")
        );
        assert_eq!(
            note(with(Some(vec![]), false, &[])).as_deref(),
            Some("checksum: size only (the server offers no checksum)")
        );
        assert_eq!(
            note(with(Some(vec![Xcrc, HashCrc32]), true, &[])).as_deref(),
            Some("checksum: KEY (the stored key); for partials XCRC")
        );
    }
}
