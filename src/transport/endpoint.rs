//! Where a mount connects, whatever the protocol: the parsed URL with its
//! password, and paths relative to its root.

use super::tls;
use super::RemoteError;

/// Where to connect: parsed from `ftp://[user@]host[:port][/dir]` plus the password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The protocol; FTP unless the URL says `http://`.
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    /// Absolute directory on the server, e.g. `/` or `/incoming`.
    pub root: String,
    /// Plain FTP or FTPS (explicit or implicit), and what is trusted.
    pub tls: tls::Tls,
}

/// The protocol behind an [`Endpoint`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scheme {
    #[default]
    Ftp,
    /// WebDAV, with keyftpd's resumable uploads where the server has them.
    Http,
}

impl Scheme {
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Ftp => 21,
            Scheme::Http => 80,
        }
    }
}

/// Turns a path relative to the mount root into the absolute server path.
/// Refuses `.`/`..` components, NUL, CR and LF.
pub fn join_root(root: &str, rel: &str) -> Result<String, RemoteError> {
    if rel.bytes().any(|b| b == 0 || b == b'\r' || b == b'\n') {
        return Err(RemoteError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "control character in path",
        )));
    }
    let mut out = root.to_string();
    for comp in rel.split('/').filter(|c| !c.is_empty()) {
        if comp == "." || comp == ".." {
            return Err(RemoteError::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("path component {comp:?} not allowed"),
            )));
        }
        out.push('/');
        out.push_str(comp);
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}
