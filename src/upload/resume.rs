//! The resume decision: one pure function, from what the spool knows about
//! the local file and what the server said about a same-name file, to what
//! the uploader does next. See `../shared/DESIGN.md` and the README.
//!
//! The patent (CN102420875A) compares only keys. We add a prefix check where
//! the server can compute one (its checksum of a prefix): it also catches a
//! partial whose bytes were damaged, and it lets a stock server that keeps
//! no keys resume safely.

use crate::key::Key;

/// What we know about the spooled file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Local {
    pub size: u64,
    pub crc: Key,
}

/// The server's stored key for the same-name file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoredKey {
    /// The server has no KEY command (a stock server).
    Unsupported,
    /// `230 0x00`: the server holds no key for this file (a plain client
    /// uploaded it). Judged as on a stock server: by the prefix CRC.
    None,
    Some(Key),
}

/// The server's CRC of `[0, N)` and ours, when the server offers one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrefixCheck {
    pub server: u32,
    pub local: u32,
}

/// What the server said about a file of the same name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Remote {
    Absent,
    Present {
        size: u64,
        key: StoredKey,
        /// `None` when the server offers no prefix checksum.
        prefix: Option<PrefixCheck>,
    },
}

/// How far a stock server without KEY or a checksum command is trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Policy {
    /// Restart from zero unless a checksum proves the prefix (the default).
    #[default]
    Safe,
    /// `--resume=trust-size`: on a stock server without checksums, resume at
    /// the server's size. Blind, as lftp and curl -c are.
    TrustSize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Upload from `offset` (0: a fresh upload; N: continue the server's
    /// partial at byte N).
    /// `offset == size` means the whole file is there: only verify it.
    Resume { offset: u64 },
    /// The same-name file is another file or damaged: replace it, upload
    /// from 0.
    Restart,
}

impl Decision {
    pub fn offset(self) -> u64 {
        match self {
            Decision::Resume { offset } => offset,
            Decision::Restart => 0,
        }
    }
}

/// Decides how to upload `local` given what is on the server.
pub fn decide(local: Local, remote: Remote, policy: Policy) -> Decision {
    let (size, key, prefix) = match remote {
        Remote::Absent => return Decision::Resume { offset: 0 },
        Remote::Present { size, key, prefix } => (size, key, prefix),
    };
    if size > local.size {
        return Decision::Restart;
    }
    let prefix_ok = prefix.map(|p| p.server == p.local);
    let resume = Decision::Resume { offset: size };
    match key {
        StoredKey::Some(k) if k == local.crc => match prefix_ok {
            Some(false) => Decision::Restart,
            _ => resume,
        },
        // A different key: another file.
        StoredKey::Some(_) => Decision::Restart,
        // No key at all (a stock server, or a file a plain client put on a
        // KEY server): only the prefix CRC, or the user's trust, can tell.
        StoredKey::Unsupported | StoredKey::None => match (prefix_ok, policy) {
            (Some(true), _) => resume,
            (Some(false), _) => Decision::Restart,
            (None, Policy::TrustSize) => resume,
            (None, Policy::Safe) => Decision::Restart,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const C: Key = Key(0xC0FFEE);
    const L: Local = Local { size: 100, crc: C };

    fn present(size: u64, key: StoredKey, prefix: Option<(u32, u32)>) -> Remote {
        Remote::Present {
            size,
            key,
            prefix: prefix.map(|(server, local)| PrefixCheck { server, local }),
        }
    }

    #[test]
    fn table() {
        use Decision::*;
        use StoredKey as K;
        let safe = Policy::Safe;
        let cases: &[(Remote, Policy, Decision)] = &[
            (Remote::Absent, safe, Resume { offset: 0 }),
            (present(40, K::Some(C), None), safe, Resume { offset: 40 }),
            (
                present(40, K::Some(C), Some((7, 7))),
                safe,
                Resume { offset: 40 },
            ),
            (present(40, K::Some(C), Some((7, 8))), safe, Restart),
            (present(100, K::Some(C), None), safe, Resume { offset: 100 }),
            (present(101, K::Some(C), None), safe, Restart),
            (present(40, K::Some(Key(1)), None), safe, Restart),
            (present(40, K::Some(Key(1)), Some((7, 7))), safe, Restart),
            // A keyless same-name file on a KEY server (a plain client's
            // partial): resumed when the prefix CRC matches, as on a stock server.
            (
                present(40, K::None, Some((7, 7))),
                safe,
                Resume { offset: 40 },
            ),
            (present(40, K::None, Some((7, 8))), safe, Restart),
            (present(40, K::None, None), safe, Restart),
            (present(101, K::None, Some((7, 7))), safe, Restart),
            (
                present(40, K::None, None),
                Policy::TrustSize,
                Resume { offset: 40 },
            ),
            (
                present(40, K::Unsupported, Some((7, 7))),
                safe,
                Resume { offset: 40 },
            ),
            (present(40, K::Unsupported, Some((7, 8))), safe, Restart),
            (present(40, K::Unsupported, None), safe, Restart),
            (
                present(40, K::Unsupported, None),
                Policy::TrustSize,
                Resume { offset: 40 },
            ),
            (
                present(400, K::Unsupported, None),
                Policy::TrustSize,
                Restart,
            ),
            (
                present(40, K::Unsupported, Some((7, 8))),
                Policy::TrustSize,
                Restart,
            ),
            (present(0, K::Some(C), None), safe, Resume { offset: 0 }),
        ];
        for (i, (remote, policy, want)) in cases.iter().enumerate() {
            assert_eq!(decide(L, *remote, *policy), *want, "case {i}: {remote:?}");
        }
    }

    fn any_key() -> impl Strategy<Value = StoredKey> {
        prop_oneof![
            Just(StoredKey::Unsupported),
            Just(StoredKey::None),
            any::<u32>().prop_map(|k| StoredKey::Some(Key(k))),
            Just(StoredKey::Some(C)),
        ]
    }

    proptest! {
        /// Resuming is only ever at the server's size, never past the local
        /// end, and only when some evidence (key or prefix CRC, or the user's
        /// explicit trust) says the prefix is ours.
        #[test]
        fn never_mixes_files(size in 0u64..300, key in any_key(),
                             prefix in proptest::option::of((0u32..3, 0u32..3)),
                             trust in any::<bool>()) {
            let policy = if trust { Policy::TrustSize } else { Policy::Safe };
            let remote = present(size, key, prefix);
            let d = decide(L, remote, policy);
            if let Decision::Resume { offset } = d {
                prop_assert_eq!(offset, size);
                prop_assert!(offset <= L.size);
                let prefix_bad = matches!(prefix, Some((s, l)) if s != l);
                prop_assert!(!prefix_bad);
                let key_ok = key == StoredKey::Some(C);
                let prefix_good = matches!(prefix, Some((s, l)) if s == l);
                let keyless = matches!(key, StoredKey::Unsupported | StoredKey::None);
                prop_assert!(key_ok || (keyless && (prefix_good || trust)));
            }
        }
    }
}
