//! Where the password comes from: `KEYFS_PASSWORD`, else ~/.netrc, else
//! `--password-file`. Never the command line (it would show in `ps`).

use std::path::Path;

use super::netrc;
use super::url::FtpUrl;

/// The user and password to log in with.
pub fn resolve(
    url: &FtpUrl,
    env_password: Option<String>,
    netrc_text: Option<&str>,
    password_file: Option<&Path>,
) -> Result<(String, String), String> {
    let entry = netrc_text.and_then(|t| netrc::lookup(t, &url.host, url.user.as_deref()));
    let user = url
        .user
        .clone()
        .or_else(|| entry.as_ref().and_then(|e| e.login.clone()))
        .unwrap_or_else(|| "anonymous".to_string());
    if let Some(p) = env_password {
        return Ok((user, p));
    }
    if let Some(p) = entry.and_then(|e| e.password) {
        return Ok((user, p));
    }
    if let Some(f) = password_file {
        let text = std::fs::read_to_string(f)
            .map_err(|e| format!("cannot read password file {}: {e}", f.display()))?;
        let p = text.lines().next().unwrap_or("").to_string();
        return Ok((user, p));
    }
    if user == "anonymous" || user == "ftp" {
        return Ok((user, "keyfs@".to_string()));
    }
    Err(format!(
        "no password for {user}@{}: set KEYFS_PASSWORD, add it to ~/.netrc, or use --password-file",
        url.host
    ))
}

/// The text of ~/.netrc, if there is one.
pub fn read_netrc() -> Option<String> {
    let home = std::env::var_os("HOME")?;
    std::fs::read_to_string(Path::new(&home).join(".netrc")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::url::parse;

    #[test]
    fn order_env_netrc_file() {
        let u = parse("ftp://bob@h/").unwrap();
        let netrc = "machine h login bob password fromnetrc";
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "fromfile\n").unwrap();
        let r = |env: Option<&str>, n: Option<&str>, file: Option<&Path>| {
            resolve(&u, env.map(String::from), n, file)
        };
        assert_eq!(r(Some("e"), Some(netrc), Some(&f)).unwrap().1, "e");
        assert_eq!(r(None, Some(netrc), Some(&f)).unwrap().1, "fromnetrc");
        assert_eq!(r(None, None, Some(&f)).unwrap().1, "fromfile");
        let e = r(None, None, None).unwrap_err();
        assert!(e.contains("KEYFS_PASSWORD") && !e.contains('\n'));
        assert!(r(None, None, Some(&dir.path().join("missing"))).is_err());
    }

    #[test]
    fn user_from_netrc_or_anonymous() {
        let u = parse("ftp://h/").unwrap();
        let (user, pw) = resolve(&u, None, Some("machine h login carol password c"), None).unwrap();
        assert_eq!((user.as_str(), pw.as_str()), ("carol", "c"));
        let (user, _) = resolve(&u, None, None, None).unwrap();
        assert_eq!(user, "anonymous");
    }
}
