//! Connecting and the namespace operations of a `Session`.
//!
//! Every socket gets a timeout (connect, control replies, data reads and
//! writes), so a dead or frozen server fails an operation instead of hanging
//! a thread forever. Binary mode is set at once: suppaftp starts in ASCII,
//! which would silently rewrite line endings of every upload.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use suppaftp::types::FileType;
use suppaftp::{FtpError, Mode, Status};

use super::errno::from_reply_body;
use super::ftps::{Connector, TlsData};
use super::join_root;
use super::listing::{parse_list_line, parse_mlsx_line};
use super::tls::{Tls, TlsClient};
use super::{Endpoint, Features, RemoteEntry, RemoteError, Session};

type FtpStream = suppaftp::ImplFtpStream<TlsData>;

/// Replies that need the server to read a whole file (XCRC, the 226 after
/// a large upload) may take longer than ordinary ones.
pub(crate) const SLOW_REPLY_MIN: Duration = Duration::from_secs(120);

/// The most bytes of one directory listing the client reads (about 300,000
/// entries); more is treated as a broken server.
pub const MAX_LISTING: u64 = 64 << 20;

/// A raw reply: its code and its whole text (all lines).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub text: String,
}

impl Reply {
    /// Turns a reply into an error unless its code is one of `ok`.
    pub fn require(self, ok: &[u16]) -> Result<Reply, RemoteError> {
        if ok.contains(&self.code) {
            Ok(self)
        } else {
            Err(from_reply_body(self.text.as_bytes()))
        }
    }
}

fn resolve(ep: &Endpoint) -> Result<Vec<SocketAddr>, RemoteError> {
    let addrs: Vec<SocketAddr> = (ep.host.as_str(), ep.port)
        .to_socket_addrs()
        .map_err(|e| {
            RemoteError::Io(std::io::Error::new(
                e.kind(),
                format!("cannot resolve {}: {e}", ep.host),
            ))
        })?
        .collect();
    if addrs.is_empty() {
        return Err(RemoteError::Io(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no address for {}", ep.host),
        )));
    }
    Ok(addrs)
}

/// The first address of `addrs` that accepts a connection within `timeout`.
fn connect_tcp(
    ep: &Endpoint,
    addrs: &[SocketAddr],
    timeout: Duration,
) -> Result<TcpStream, RemoteError> {
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect_timeout(addr, timeout) {
            Ok(s) => {
                set_timeouts(&s, timeout)?;
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    let e = last.unwrap_or_else(|| std::io::ErrorKind::NotConnected.into());
    Err(RemoteError::Io(std::io::Error::new(
        e.kind(),
        format!("cannot connect to {}:{}: {e}", ep.host, ep.port),
    )))
}

/// Names the server in a TLS setup failure that does not already.
fn tls_context(ep: &Endpoint, e: FtpError) -> RemoteError {
    match e {
        FtpError::SecureError(s) => FtpError::SecureError(s).into(),
        FtpError::ConnectionError(io) => RemoteError::Io(std::io::Error::new(
            io.kind(),
            format!("TLS with {}:{}: {io}", ep.host, ep.port),
        )),
        other => other.into(),
    }
}

fn set_timeouts(s: &TcpStream, t: Duration) -> std::io::Result<()> {
    s.set_read_timeout(Some(t))?;
    s.set_write_timeout(Some(t))?;
    s.set_nodelay(true)
}

impl Session {
    /// Connects, logs in, sets binary mode, reads FEAT, changes to the root.
    pub fn connect(ep: &Endpoint, timeout: Duration) -> Result<Session, RemoteError> {
        let addrs = resolve(ep)?;
        let builder = move |addr| {
            let s =
                TcpStream::connect_timeout(&addr, timeout).map_err(FtpError::ConnectionError)?;
            set_timeouts(&s, timeout).map_err(FtpError::ConnectionError)?;
            Ok(s)
        };
        // One connector per control connection, with its own session store.
        let connector = |c: &TlsClient| Connector {
            client: c.for_session(),
            timeout,
        };
        let mut ftp = match &ep.tls {
            // suppaftp connects this one itself (without a connect timeout);
            // the handshake and every reply after it have the timeout.
            Tls::Implicit(c) => {
                FtpStream::connect_secure_implicit(&addrs[..], connector(c), &ep.host)
                    .map_err(|e| tls_context(ep, e))?
            }
            _ => FtpStream::connect_with_stream(connect_tcp(ep, &addrs, timeout)?)?,
        }
        .passive_stream_builder(builder);
        // Use the control connection's address with the port from PASV, so a
        // server behind NAT (or one announcing 0.0.0.0) still works.
        ftp.set_mode(Mode::Passive);
        ftp.set_passive_nat_workaround(true);
        if let Tls::Implicit(_) = &ep.tls {
            // suppaftp encrypts data connections already; the server must
            // be told so (RFC 4217), or it would expect them in the clear.
            for cmd in ["PBSZ 0", "PROT P"] {
                match ftp.custom_command(cmd, &[Status::CommandOk]) {
                    Ok(_) => {}
                    Err(e) => return Err(tls_context(ep, e)),
                }
            }
        }
        if let Tls::Explicit(c) = &ep.tls {
            // AUTH TLS, then PBSZ 0 and PROT P: the password and every
            // byte of data are encrypted.
            ftp = ftp
                .into_secure(connector(c), &ep.host)
                .map_err(|e| tls_context(ep, e))?;
        }
        ftp.login(ep.user.as_str(), ep.password.as_str())?;
        ftp.transfer_type(FileType::Binary)?;
        let root = ep.root.trim_end_matches('/').to_string();
        if !root.is_empty() && !root.starts_with('/') {
            return Err(RemoteError::Protocol(format!(
                "root directory {:?} is not absolute",
                ep.root
            )));
        }
        let mut s = Session {
            ftp,
            features: Features::default(),
            root,
            timeout,
            slow_timeout: timeout.max(SLOW_REPLY_MIN),
            refused: Vec::new(),
            no_site_chmod: false,
        };
        s.features = s.read_features()?;
        let root_abs = join_root(&s.root, "")?;
        s.ftp.cwd(root_abs)?;
        Ok(s)
    }

    pub fn features(&self) -> Features {
        self.features
    }

    /// The absolute server path of `rel`.
    pub fn abs(&self, rel: &str) -> Result<String, RemoteError> {
        join_root(&self.root, rel)
    }

    fn read_features(&mut self) -> Result<Features, RemoteError> {
        let r = self.raw("FEAT")?;
        if r.code != 211 {
            return Ok(Features::default());
        }
        let names = crate::key::parse_feat(&r.text);
        let has = |n: &str| names.iter().any(|x| x == n);
        let hash_crc32 = r.text.lines().any(|l| {
            let l = l.trim().to_ascii_uppercase();
            l.starts_with("HASH") && l.contains("CRC32")
        });
        Ok(Features {
            key: has("KEY"),
            xcrc: has("XCRC"),
            hash_crc32,
            mlsd: has("MLST") || has("MLSD"),
            mfmt: has("MFMT"),
        })
    }

    /// Sends one command line and returns the reply, whatever its code.
    pub fn raw(&mut self, line: &str) -> Result<Reply, RemoteError> {
        // An empty expected list makes suppaftp hand back every reply as
        // `UnexpectedResponse`; the code is then read from the text.
        match self.ftp.custom_command(line, &[]) {
            Ok(resp) | Err(FtpError::UnexpectedResponse(resp)) => {
                let text = String::from_utf8_lossy(&resp.body).into_owned();
                match crate::key::reply_code(&text) {
                    Some((code, _)) => Ok(Reply { code, text }),
                    None => Err(RemoteError::Protocol(format!(
                        "malformed reply to {}: {}",
                        line.split_whitespace().next().unwrap_or(""),
                        text.trim().chars().take(200).collect::<String>()
                    ))),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Sends a command and fails unless the reply code is one of `ok`.
    pub fn command(&mut self, line: &str, ok: &[u16]) -> Result<Reply, RemoteError> {
        self.raw(line)?.require(ok)
    }

    /// Sets the timeout for replies that need the server to read a whole
    /// file (XCRC, HASH, the reply after an upload); default
    /// max(timeout, 120 s).
    pub fn set_slow_timeout(&mut self, d: Duration) {
        self.slow_timeout = d.max(self.timeout);
    }

    /// Runs `f` with a longer control-reply timeout (XCRC of a large file,
    /// the reply after a large upload).
    pub(crate) fn with_slow_replies<T>(
        &mut self,
        f: impl FnOnce(&mut Session) -> Result<T, RemoteError>,
    ) -> Result<T, RemoteError> {
        let slow = self.slow_timeout;
        self.ftp.get_ref().set_read_timeout(Some(slow))?;
        let r = f(self);
        let _ = self.ftp.get_ref().set_read_timeout(Some(self.timeout));
        r
    }

    /// Lists a directory (MLSD, falling back to LIST).
    pub fn list(&mut self, dir: &str) -> Result<Vec<RemoteEntry>, RemoteError> {
        let path = self.abs(dir)?;
        if self.features.mlsd {
            match self.listing_lines(&format!("MLSD {path}")) {
                Ok(lines) => return Ok(lines.iter().filter_map(|l| parse_mlsx_line(l)).collect()),
                Err(e) => {
                    if !matches!(e.code(), Some(500 | 502 | 504)) {
                        return Err(e);
                    }
                    self.features.mlsd = false;
                }
            }
        }
        let lines = self.listing_lines(&format!("LIST {path}"))?;
        Ok(lines.iter().filter_map(|l| parse_list_line(l)).collect())
    }

    /// Runs a listing command (MLSD/LIST) and reads its non-empty lines,
    /// at most [`MAX_LISTING`] bytes: a server streaming an endless listing
    /// gets an error instead of all of our memory.
    fn listing_lines(&mut self, cmd: &str) -> Result<Vec<String>, RemoteError> {
        let (_, stream) = self
            .ftp
            .custom_data_command(cmd, &[Status::AboutToSend, Status::AlreadyOpen])?;
        let mut r = BufReader::new(stream.take(MAX_LISTING + 1));
        let mut lines = Vec::new();
        let mut total = 0u64;
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let n = r.read_until(b'\n', &mut buf)?;
            if n == 0 {
                break;
            }
            total += n as u64;
            let l = buf.strip_suffix(b"\n").unwrap_or(&buf);
            let l = l.strip_suffix(b"\r").unwrap_or(l);
            if !l.is_empty() {
                lines.push(String::from_utf8_lossy(l).into_owned());
            }
        }
        // Closes the data connection and reads the transfer reply, which
        // keeps the control connection in step even when we stop early.
        let finished = r.into_inner().into_inner().finish();
        if total > MAX_LISTING {
            return Err(RemoteError::Protocol(format!(
                "{} listing larger than {} MiB",
                cmd.split(' ').next().unwrap_or(""),
                MAX_LISTING >> 20
            )));
        }
        finished?;
        Ok(lines)
    }

    /// One entry (MLST, or SIZE/MDTM, or a listing of the parent); `None` if absent.
    pub fn stat(&mut self, path: &str) -> Result<Option<RemoteEntry>, RemoteError> {
        let abs = self.abs(path)?;
        let name = abs.rsplit('/').next().unwrap_or("").to_string();
        if name.is_empty() {
            return Ok(Some(RemoteEntry {
                name: String::new(),
                is_dir: true,
                size: 0,
                mtime: None,
                mode: None,
            }));
        }
        if self.features.mlsd {
            let r = self.raw(&format!("MLST {abs}"))?;
            match r.code {
                250 => {
                    let entry = r
                        .text
                        .lines()
                        .filter(|l| l.starts_with(' '))
                        .find_map(parse_mlsx_line);
                    if let Some(mut e) = entry {
                        e.name = name;
                        return Ok(Some(e));
                    }
                }
                550 => return Ok(None),
                _ => {}
            }
        }
        // Fall back to a listing of the parent directory.
        let parent = match path.trim_end_matches('/').rsplit_once('/') {
            Some((p, _)) => p.to_string(),
            None => String::new(),
        };
        match self.list(&parent) {
            Ok(entries) => Ok(entries.into_iter().find(|e| e.name == name)),
            Err(e) if e.code() == Some(550) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn mkdir(&mut self, path: &str) -> Result<(), RemoteError> {
        let abs = self.abs(path)?;
        self.command(&format!("MKD {abs}"), &[257, 250]).map(|_| ())
    }

    pub fn rmdir(&mut self, path: &str) -> Result<(), RemoteError> {
        let abs = self.abs(path)?;
        self.command(&format!("RMD {abs}"), &[250, 200]).map(|_| ())
    }

    pub fn delete(&mut self, path: &str) -> Result<(), RemoteError> {
        let abs = self.abs(path)?;
        self.command(&format!("DELE {abs}"), &[250, 200])
            .map(|_| ())
    }

    pub fn rename(&mut self, from: &str, to: &str) -> Result<(), RemoteError> {
        let from = self.abs(from)?;
        let to = self.abs(to)?;
        self.command(&format!("RNFR {from}"), &[350])?;
        self.command(&format!("RNTO {to}"), &[250, 200]).map(|_| ())
    }

    /// NOOP, to check a pooled connection is alive.
    pub fn noop(&mut self) -> Result<(), RemoteError> {
        self.command("NOOP", &[200]).map(|_| ())
    }

    /// Says goodbye (QUIT); errors are ignored, the connection is closed anyway.
    pub fn quit(mut self) {
        let _ = self.ftp.quit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins() {
        assert_eq!(join_root("", "").unwrap(), "/");
        assert_eq!(join_root("", "a/b").unwrap(), "/a/b");
        assert_eq!(join_root("/in", "a//b/").unwrap(), "/in/a/b");
        assert_eq!(join_root("/in", "").unwrap(), "/in");
        assert!(join_root("", "../etc").is_err());
        assert!(join_root("", "a/./b").is_err());
        assert!(join_root("", "a\r\nDELE x").is_err());
    }
}
