//! Test support for keyftpd's HTTP face: the real binary with `--http`
//! on 127.0.0.1:0, and a tiny raw HTTP/1.1 client (so tests control every
//! byte: cut bodies, huge headers, stalled bodies).
#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::keyftpd::{PASS, USER};

/// A running keyftpd with an HTTP face; killed (by PID) on drop.
pub struct HttpKeyftpd {
    child: Child,
    /// The FTP face, when started with one.
    pub ftp: Option<SocketAddr>,
    pub http: SocketAddr,
    /// The HTTPS face, when started with `--https`.
    pub https: Option<SocketAddr>,
    pub root: PathBuf,
    pub log: PathBuf,
}

impl HttpKeyftpd {
    /// keyftpd on `root` with `--user u`, HTTP on 127.0.0.1:0, FTP too
    /// when `ftp`, and `extra` args.
    pub fn start(root: &Path, ftp: bool, extra: &[&str]) -> HttpKeyftpd {
        static N: AtomicUsize = AtomicUsize::new(0);
        let log = std::env::temp_dir().join(format!(
            "keyftpd-http-test-{}-{}.log",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let log_file = std::fs::File::create(&log).expect("create log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_keyftpd"));
        cmd.arg("--root").arg(root);
        if ftp {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        let mut child = cmd
            .args([
                "--http",
                "127.0.0.1:0",
                "--user",
                USER,
                "--auth-delay-ms",
                "200",
            ])
            .args(extra)
            .env("KEYFTPD_PASSWORD", PASS)
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .spawn()
            .expect("spawn keyftpd");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let (mut ftp_addr, mut http, mut https) = (None, None, None);
        let want_https = extra.contains(&"--https");
        while http.is_none() || (want_https && https.is_none()) {
            let Ok(line) = rx.recv_timeout(Duration::from_secs(20)) else {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "keyftpd did not print its addresses; log: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            };
            let line = line.trim();
            if let Some(a) = line.strip_prefix("http listening on ") {
                http = a.parse().ok();
            } else if let Some(a) = line.strip_prefix("https listening on ") {
                https = a.parse().ok();
            } else if let Some(a) = line.strip_prefix("listening on ") {
                ftp_addr = a.parse().ok();
            }
        }
        HttpKeyftpd {
            child,
            ftp: ftp_addr,
            http: http.expect("http address"),
            https,
            root: root.to_path_buf(),
            log,
        }
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (bounded) until the log has `n` lines containing `needle`.
    pub fn wait_log_count(&self, needle: &str, n: usize) -> bool {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(20) {
            if self.log_text().matches(needle).count() >= n {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Kills the server hard and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A client logged in as the test account.
    pub fn client(&self) -> Client {
        Client {
            addr: self.http,
            auth: Some((USER.into(), PASS.into())),
        }
    }
}

impl Drop for HttpKeyftpd {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    /// A header's value (first match, name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A raw HTTP/1.1 client: one connection per request.
#[derive(Clone)]
pub struct Client {
    pub addr: SocketAddr,
    pub auth: Option<(String, String)>,
}

/// Base64 of `s` (for Basic credentials).
pub fn b64(s: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in s.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

impl Client {
    /// The same server without credentials.
    pub fn anonymous(&self) -> Client {
        Client {
            addr: self.addr,
            auth: None,
        }
    }

    /// The request head for `method path` with `headers`.
    pub fn head_bytes(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Vec<u8> {
        let mut h = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.addr
        );
        if let Some((u, p)) = &self.auth {
            h.push_str(&format!(
                "Authorization: Basic {}\r\n",
                b64(format!("{u}:{p}").as_bytes())
            ));
        }
        for (n, v) in headers {
            h.push_str(&format!("{n}: {v}\r\n"));
        }
        h.push_str("\r\n");
        h.into_bytes()
    }

    /// Opens a connection with a read timeout.
    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(10)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        s
    }

    /// Sends a request with `body` (Content-Length set) and reads the reply.
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        let len = body.len().to_string();
        let mut hs: Vec<(&str, &str)> = headers.to_vec();
        if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
            hs.push(("Content-Length", &len));
        }
        let mut s = self.connect();
        s.write_all(&self.head_bytes(method, path, &hs))
            .expect("write head");
        // A server may answer before reading the body (an error): ignore a
        // failed write and read what it said.
        let _ = s.write_all(body);
        read_response(&mut s, method == "HEAD").expect("read response")
    }

    /// GET `path`.
    pub fn get(&self, path: &str) -> Resp {
        self.request("GET", path, &[], b"")
    }

    /// `GET path?state` parsed as (size, key, complete).
    pub fn state(&self, path: &str) -> (u64, Option<String>, bool) {
        let r = self.get(&format!("{path}?state"));
        assert_eq!(r.status, 200, "state of {path}: {}", r.text());
        parse_state(&r.text())
    }

    /// The seed's POST: `offset`, `key` (omitted when None), `file`.
    pub fn post_file(&self, path: &str, offset: u64, key: Option<&str>, data: &[u8]) -> Resp {
        let (ct, body) = form(Some(offset), key, data);
        self.request("POST", path, &[("Content-Type", &ct)], &body)
    }

    /// Starts the seed's POST of `rest` (the file from `offset`) but sends
    /// only `send` bytes of it, the connection left open: the caller cuts
    /// it, or leaves it silent like a client whose link went away.
    pub fn post_partial(
        &self,
        path: &str,
        offset: u64,
        key: &str,
        rest: &[u8],
        send: usize,
    ) -> TcpStream {
        let (head, tail) = form_parts(Some(offset), Some(key));
        let ct = format!("multipart/form-data; boundary={BOUNDARY}");
        let len = (head.len() + rest.len() + tail.len()).to_string();
        let mut s = self.connect();
        let req = self.head_bytes(
            "POST",
            path,
            &[("Content-Type", &ct), ("Content-Length", &len)],
        );
        s.write_all(&req).expect("head");
        s.write_all(&head).expect("form head");
        s.write_all(&rest[..send]).expect("part of the file");
        s.flush().expect("flush");
        s
    }
}

/// Parses the state JSON `{"size": N, "key": "0x.." | null, "complete": b}`.
pub fn parse_state(s: &str) -> (u64, Option<String>, bool) {
    let field = |name: &str| -> String {
        let i = s
            .find(&format!("\"{name}\":"))
            .unwrap_or_else(|| panic!("no {name} in {s}"));
        let rest = s[i + name.len() + 3..].trim_start();
        rest.split([',', '}'])
            .next()
            .unwrap_or("")
            .trim()
            .to_string()
    };
    let size = field("size")
        .parse()
        .unwrap_or_else(|_| panic!("size in {s}"));
    let key = match field("key").as_str() {
        "null" => None,
        k => Some(k.trim_matches('"').to_string()),
    };
    let complete = match field("complete").as_str() {
        "true" => true,
        "false" => false,
        other => panic!("complete {other:?} in {s}"),
    };
    (size, key, complete)
}

/// The boundary every test form uses.
pub const BOUNDARY: &str = "keyfs-test-boundary-7MA4YWxkTrZu0gW";

/// A multipart form: (content type, body). Fields in the seed's order.
pub fn form(offset: Option<u64>, key: Option<&str>, data: &[u8]) -> (String, Vec<u8>) {
    let (head, tail) = form_parts(offset, key);
    let mut body = head;
    body.extend_from_slice(data);
    body.extend_from_slice(&tail);
    (format!("multipart/form-data; boundary={BOUNDARY}"), body)
}

/// The bytes before and after the file data of [`form`].
pub fn form_parts(offset: Option<u64>, key: Option<&str>) -> (Vec<u8>, Vec<u8>) {
    let mut h = String::new();
    if let Some(o) = offset {
        h.push_str(&format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"offset\"\r\n\r\n{o}\r\n"
        ));
    }
    if let Some(k) = key {
        h.push_str(&format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\n{k}\r\n"
        ));
    }
    h.push_str(&format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    ));
    (
        h.into_bytes(),
        format!("\r\n--{BOUNDARY}--\r\n").into_bytes(),
    )
}

/// Reads one response (Content-Length, chunked, or to EOF).
pub fn read_response<S: Read>(s: &mut S, head_only: bool) -> io::Result<Resp> {
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let mut l = String::new();
        if r.read_line(&mut l)? == 0 {
            break;
        }
        let l = l.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((n, v)) = l.split_once(':') {
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
    }
    let mut resp = Resp {
        status,
        headers,
        body: Vec::new(),
    };
    if head_only || status == 204 || status == 304 || (100..200).contains(&status) {
        return Ok(resp);
    }
    if let Some(n) = resp
        .header("content-length")
        .and_then(|n| n.parse::<usize>().ok())
    {
        resp.body = vec![0; n];
        r.read_exact(&mut resp.body)?;
    } else if resp
        .header("transfer-encoding")
        .is_some_and(|t| t.contains("chunked"))
    {
        loop {
            let mut l = String::new();
            r.read_line(&mut l)?;
            let n = usize::from_str_radix(l.trim(), 16).map_err(io::Error::other)?;
            if n == 0 {
                break;
            }
            let mut c = vec![0; n + 2];
            r.read_exact(&mut c)?;
            resp.body.extend_from_slice(&c[..n]);
        }
    } else {
        r.read_to_end(&mut resp.body)?;
    }
    Ok(resp)
}
