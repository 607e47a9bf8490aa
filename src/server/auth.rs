//! Accounts and password checks.
//!
//! One account given on the command line (password from the environment,
//! kept in memory and compared in constant time), or a users file of
//! `name:hash` lines where hash is SHA-512 crypt (`$6$`, as `openssl passwd
//! -6` writes it; also `$5$`). SHA-crypt with 5000 rounds costs a few ms per
//! check, so reconnecting clients are not slowed down; wrong passwords are
//! slowed down by the session's failure delay instead.

use std::io::{self, Read};
use std::path::Path;

use sha_crypt::{PasswordHasher, PasswordVerifier, ShaCrypt};

/// How a password is checked.
#[derive(Clone)]
enum Secret {
    Plain(String),
    Hash(String),
}

/// The accounts allowed to log in.
#[derive(Clone, Default)]
pub struct Accounts {
    users: Vec<(String, Secret)>,
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
    /// One account with a plain-text password (e.g. from `KEYFTPD_PASSWORD`).
    pub fn single(name: &str, password: &str) -> Accounts {
        Accounts {
            users: vec![(name.to_string(), Secret::Plain(password.to_string()))],
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
            users.push((name.to_string(), Secret::Hash(hash.to_string())));
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

    /// Checks a login.
    pub fn check(&self, name: &str, password: &str) -> bool {
        if self.is_anonymous(name) {
            return true;
        }
        let Some((_, secret)) = self.users.iter().find(|(n, _)| n == name) else {
            // Spend about the same time as a real check.
            let _ = ShaCrypt::default().verify_password(password.as_bytes(), DUMMY_HASH);
            return false;
        };
        match secret {
            Secret::Plain(p) => ct_eq(p.as_bytes(), password.as_bytes()),
            Secret::Hash(h) => ShaCrypt::default()
                .verify_password(password.as_bytes(), h.as_str())
                .is_ok(),
        }
    }
}

const DUMMY_HASH: &str = "$6$keyftpdkeyftpd$oxCUKNWfPIDrjzypFD/aQ1JjASz/l3krenQgBFDVeSglTIL2I3csXoC6jCoYyctFwbjGEbC.R8D0TG5TcXQKE0";

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
