//! Accounts and password checks.
//!
//! One account given on the command line (password from the environment,
//! hashed at start), or a users file of `name:hash` lines where hash is
//! SHA-512 crypt (`$6$`, as `openssl passwd -6` writes it; also `$5$`).
//! SHA-crypt with 5000 rounds costs a few ms per check, so reconnecting
//! clients are not slowed down; guessing is slowed down by
//! [`super::gate::LoginGate`] instead.
//!
//! Every check costs one hash verification, whether the name exists or not:
//! an unknown name is verified against the first account's hash (and then
//! refused), and names are compared without an early exit, so the time of
//! a reply does not tell which names exist.

use std::io::{self, Read};
use std::path::Path;

use sha_crypt::{PasswordHasher, PasswordVerifier, ShaCrypt};

/// The accounts allowed to log in: names and SHA-crypt hashes.
#[derive(Clone, Default)]
pub struct Accounts {
    users: Vec<(String, String)>,
    anonymous: bool,
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.users.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Accounts")
            .field("users", &names)
            .field("anonymous", &self.anonymous)
            .finish()
    }
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Accounts {
    /// One account with a plain-text password (e.g. from `KEYFTPD_PASSWORD`),
    /// hashed here so that its check costs what any other check costs.
    pub fn single(name: &str, password: &str) -> Accounts {
        Accounts {
            users: vec![(name.to_string(), hash_password_infallible(password))],
            anonymous: false,
        }
    }

    /// Parses a users file: `name:hash` per line; blank lines and `#` comments skipped.
    pub fn parse_users(text: &str) -> Result<Accounts, String> {
        let mut users = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, hash) = line
                .split_once(':')
                .ok_or_else(|| format!("line {}: expected name:hash", i + 1))?;
            if name.is_empty() || !(hash.starts_with("$6$") || hash.starts_with("$5$")) {
                return Err(format!(
                    "line {}: expected name:$6$... (run `keyftpd hash-password`)",
                    i + 1
                ));
            }
            users.push((name.to_string(), hash.to_string()));
        }
        if users.is_empty() {
            return Err("no accounts in users file".into());
        }
        Ok(Accounts {
            users,
            anonymous: false,
        })
    }

    /// Reads a users file.
    pub fn from_file(path: &Path) -> Result<Accounts, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Accounts::parse_users(&text)
    }

    /// Also allow `anonymous`/`ftp` with any password.
    pub fn with_anonymous(mut self, yes: bool) -> Accounts {
        self.anonymous = yes;
        self
    }

    /// True when `name` is an anonymous login that is allowed.
    pub fn is_anonymous(&self, name: &str) -> bool {
        self.anonymous && (name == "anonymous" || name == "ftp")
    }

    /// True when `name` is one of the accounts (or an allowed anonymous name).
    pub fn has_user(&self, name: &str) -> bool {
        self.is_anonymous(name) || self.users.iter().any(|(n, _)| n == name)
    }

    /// Checks a login: one hash verification for a known and an unknown name alike.
    pub fn check(&self, name: &str, password: &str) -> bool {
        if self.is_anonymous(name) {
            return true;
        }
        // Look at every name, without an early exit.
        let mut found: Option<&str> = None;
        for (n, h) in &self.users {
            if ct_eq(n.as_bytes(), name.as_bytes()) {
                found = Some(h);
            }
        }
        match (found, self.users.first()) {
            (Some(h), _) => verify(password, h),
            (None, Some((_, first))) => {
                // An unknown name: spend what a known one costs, then refuse.
                let _ = verify(password, first);
                false
            }
            (None, None) => {
                let _ = verify(password, DUMMY_HASH);
                false
            }
        }
    }
}

/// Used only when there are no accounts at all (anonymous-only servers).
const DUMMY_HASH: &str = "$6$keyftpdkeyftpd$oxCUKNWfPIDrjzypFD/aQ1JjASz/l3krenQgBFDVeSglTIL2I3csXoC6jCoYyctFwbjGEbC.R8D0TG5TcXQKE0";

#[cfg(test)]
thread_local! {
    /// Hash verifications done by this thread (tests count them).
    static VERIFIED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

fn verify(password: &str, hash: &str) -> bool {
    #[cfg(test)]
    VERIFIED.with(|v| v.set(v.get() + 1));
    ShaCrypt::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

/// [`hash_password`], with a salt from the clock and PID should
/// `/dev/urandom` be unreadable.
fn hash_password_infallible(password: &str) -> String {
    if let Ok(h) = hash_password(password) {
        return h;
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let salt = format!("{:012x}", t ^ u128::from(std::process::id()) << 64);
    ShaCrypt::default()
        .hash_password_with_salt(password.as_bytes(), &salt.as_bytes()[..12])
        .map(|h| h.as_str().to_string())
        .unwrap_or_else(|_| DUMMY_HASH.to_string())
}

/// Hashes a password as SHA-512 crypt with a random 16-character salt.
pub fn hash_password(password: &str) -> io::Result<String> {
    let mut salt = [0u8; 12];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut salt)?;
    ShaCrypt::default()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map(|h| h.as_str().to_string())
        .map_err(|e| io::Error::other(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_roundtrip_and_openssl_format() -> io::Result<()> {
        let h = hash_password("s3cret")?;
        assert!(h.starts_with("$6$"), "{h}");
        let acc = Accounts::parse_users(&format!("alice:{h}\n")).map_err(io::Error::other)?;
        assert!(acc.check("alice", "s3cret"));
        assert!(!acc.check("alice", "wrong"));
        assert!(!acc.check("bob", "s3cret"));
        // `openssl passwd -6 -salt saltsalt secret`
        let o = "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1";
        let acc = Accounts::parse_users(&format!("u:{o}")).map_err(io::Error::other)?;
        assert!(acc.check("u", "secret"));
        Ok(())
    }

    fn verified() -> u64 {
        VERIFIED.with(|v| v.get())
    }

    #[test]
    fn unknown_names_cost_one_verification_like_known_ones() -> io::Result<()> {
        let h = hash_password("pw")?;
        let file = Accounts::parse_users(&format!("a:{h}\nb:{h}\n")).map_err(io::Error::other)?;
        for acc in [Accounts::single("alice", "pw"), file] {
            for name in ["alice", "a", "b", "nosuchuser", ""] {
                let before = verified();
                let _ = acc.check(name, "guess");
                assert_eq!(verified() - before, 1, "{name}");
            }
        }
        // No accounts at all: still one verification.
        let before = verified();
        assert!(!Accounts::default().check("x", "y"));
        assert_eq!(verified() - before, 1);
        Ok(())
    }

    /// Statistical and loose (a factor of 3 between medians) so a busy
    /// machine does not make it flaky: the difference it guards against
    /// (a plain compare against a hash) is a factor of ten or more.
    #[test]
    fn unknown_and_known_names_take_about_the_same_time() {
        let acc = Accounts::single("alice", "pw");
        // Interleaved, so a burst of load elsewhere hits both alike.
        let time = |name: &str| {
            let t0 = std::time::Instant::now();
            let _ = acc.check(name, "guess");
            t0.elapsed()
        };
        let (mut k, mut u) = (Vec::new(), Vec::new());
        for _ in 0..21 {
            k.push(time("alice"));
            u.push(time("nosuchuser"));
        }
        k.sort();
        u.sort();
        let (known, unknown) = (k[k.len() / 2], u[u.len() / 2]);
        assert!(
            known < unknown * 3 && unknown < known * 3,
            "known {known:?} unknown {unknown:?}"
        );
    }

    #[test]
    fn single_and_anonymous() {
        let a = Accounts::single("u", "p");
        assert!(a.check("u", "p"));
        assert!(!a.check("u", "q"));
        assert!(!a.check("anonymous", ""));
        assert!(a.with_anonymous(true).check("anonymous", "x"));
        assert!(Accounts::parse_users("u:plain").is_err());
    }
}
