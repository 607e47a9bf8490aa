//! A ranged GET over plain `http://` read straight from its socket.
//!
//! ureq 2 reads a body through an 8 KiB buffer, one `recv` per 8 KiB: a
//! 1 GiB sequential read through the mount took 1.7x as long as over FTP,
//! whose data connection is read with the caller's large buffer. Here the
//! request is written by hand on its own connection (`Connection: close`)
//! and the body is read with whatever buffer the caller gives. Only a
//! plain answer with a `Content-Length` is taken; anything else (chunked,
//! a redirect, no length) is left to ureq by asking again.
//!
//! The upload's requests (keyftpd's state query and its POST, or a PUT)
//! go the same way, one after the other on one kept-alive connection:
//! for a small file they are the whole exchange, and ureq spent a dozen
//! system calls around each request (a peek at the pooled socket, its
//! timeouts set and reset) where this needs a `send` and a `recv`.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Largest response head read.
const HEAD_MAX: usize = 64 << 10;
/// The socket's read buffer for the head; a body read at least this large
/// bypasses it.
const BUF: usize = 64 << 10;
/// How long a failed send waits for the server's early answer.
const EARLY_WAIT: Duration = Duration::from_millis(500);
/// The read buffer for a small answer (a state, an upload's verdict).
const REPLY_BUF: usize = 4 << 10;

/// What the server answered.
pub(super) enum Answer {
    /// 200 or 206 with a `Content-Length`: the body, positioned at its start.
    Body { status: u16, body: Body },
    /// Any other status with a final answer (the body is not read).
    Status(u16),
    /// Something this reader does not handle: ask through ureq instead.
    Unhandled,
}

/// A response body of known length.
pub struct Body {
    rd: BufReader<TcpStream>,
    left: u64,
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = (buf.len() as u64).min(self.left) as usize;
        let n = self.rd.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("GET body cut off with {} bytes to go", self.left),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// GET `path` (already encoded) from `authority` (`host:port`, a v6 host
/// in brackets) from byte `offset`.
pub(super) fn get(
    authority: &str,
    path: &str,
    auth: Option<&str>,
    offset: u64,
    timeout: Duration,
) -> io::Result<Answer> {
    let sock = reuse_or_connect(authority, timeout, None)?;
    let range = format!("bytes={offset}-");
    let mut extra = vec![("Connection", "close")];
    if offset > 0 {
        extra.push(("Range", &range));
    }
    let head = request_head("GET", authority, path, auth, &extra, None);
    (&sock).write_all(head.as_bytes())?;
    let mut rd = BufReader::with_capacity(BUF, sock);
    let h = read_head(&mut rd)?;
    let status = h.status;
    Ok(match (status, h.len) {
        (200 | 206, Some(len)) if h.plain => Answer::Body {
            status,
            body: Body { rd, left: len },
        },
        (200 | 206 | 100..=199 | 300..=399, _) => Answer::Unhandled,
        _ => Answer::Status(status),
    })
}

/// A PUT or POST whose body is written straight into its socket, by
/// `write` or by `sendfile` from the spooled file (as an FTP data
/// connection is). The body is framed by its `Content-Length`: a sender
/// dropped before the end is a cut for the server, never a whole body.
pub(super) struct Sender {
    sock: TcpStream,
    /// Body bytes still to send, `tail` included.
    left: u64,
    tail: Vec<u8>,
}

impl Sender {
    /// Connects (or takes `idle`, see [`reuse_or_connect`]) and sends the
    /// request head, then `head` (the body's first bytes). `len` is the
    /// whole body, `head` and `tail` included. The heads leave at once,
    /// in one segment (the server starts on the upload, creating the file,
    /// as soon as it can: an upload abandoned for a rename leaves its cut
    /// partial early, before the old name's clean-up); then the socket is
    /// corked until [`Sender::finish`], so a small body and its tail
    /// leave as one more segment.
    pub(super) fn start(
        authority: &str,
        request: &str,
        head: &[u8],
        tail: Vec<u8>,
        len: u64,
        timeout: Duration,
        idle: Option<TcpStream>,
    ) -> io::Result<Sender> {
        let sock = reuse_or_connect(authority, timeout, idle)?;
        let mut s = Sender {
            sock,
            left: len,
            tail,
        };
        let room = s.left.saturating_sub(s.tail.len() as u64);
        if head.len() as u64 > room {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "upload body longer than announced",
            ));
        }
        let mut first = Vec::with_capacity(request.len() + head.len());
        first.extend_from_slice(request.as_bytes());
        first.extend_from_slice(head);
        (&s.sock).write_all(&first)?;
        s.left -= head.len() as u64;
        cork(&s.sock, true);
        Ok(s)
    }

    /// The socket, for `sendfile`.
    pub(super) fn fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.sock.as_raw_fd()
    }

    /// Counts bytes that went out by `sendfile`.
    pub(super) fn sent(&mut self, n: usize) {
        self.left = self.left.saturating_sub(n as u64);
    }

    /// After a failed send: the answer the server gave before it stopped
    /// reading the body (a refusal such as 423 or 507 comes as soon as the
    /// form's fields are read, then the server closes and our next write
    /// fails). It is still in the socket's receive queue, a reset or not.
    pub(super) fn early_answer(&self, max: u64) -> Option<Reply> {
        let s = self.sock.try_clone().ok()?;
        s.set_read_timeout(Some(EARLY_WAIT)).ok()?;
        read_reply(s, max).ok()
    }

    /// Sends the tail and reads the answer (see [`Reply`]).
    pub(super) fn finish(mut self, max: u64) -> io::Result<Reply> {
        let tail = std::mem::take(&mut self.tail);
        if self.left != tail.len() as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "upload body short by {} bytes",
                    self.left - tail.len() as u64
                ),
            ));
        }
        self.write_all(&tail)?;
        cork(&self.sock, false);
        read_reply(self.sock, max)
    }
}

/// A final answer read whole (up to a bound).
pub(super) struct Reply {
    pub status: u16,
    /// Its `Content-Type`, lower-cased, without parameters.
    pub content_type: String,
    /// Up to the asked bound of its body.
    pub body: Vec<u8>,
    /// The connection, when the server keeps it open and the answer was
    /// read whole: for the next request.
    pub keep: Option<TcpStream>,
}

/// A request without a body (`request`, a whole head) on `idle` or a new
/// connection; reads up to `max` bytes of the answer's body. A kept-alive
/// connection the server closed just as it was taken fails before any
/// answer: the request is then sent once more on a new connection.
pub(super) fn call(
    authority: &str,
    request: &str,
    max: u64,
    timeout: Duration,
    idle: Option<TcpStream>,
) -> io::Result<Reply> {
    let reused = idle.is_some();
    let once = |idle| -> io::Result<Reply> {
        let sock = reuse_or_connect(authority, timeout, idle)?;
        (&sock).write_all(request.as_bytes())?;
        read_reply(sock, max)
    };
    match once(idle) {
        Err(e) if reused && stale(&e) => once(None),
        r => r,
    }
}

/// The failures of a kept-alive connection the server had closed.
fn stale(e: &io::Error) -> bool {
    use io::ErrorKind as K;
    matches!(
        e.kind(),
        K::BrokenPipe | K::ConnectionReset | K::ConnectionAborted | K::UnexpectedEof
    )
}

/// Reads an answer's head and up to `max` bytes of its body.
fn read_reply(sock: TcpStream, max: u64) -> io::Result<Reply> {
    let mut rd = BufReader::with_capacity(REPLY_BUF, sock);
    let h = read_head(&mut rd)?;
    let mut body = Vec::new();
    let want = match (h.len, h.plain) {
        (Some(n), true) => n.min(max),
        _ => 0,
    };
    (&mut rd).take(want).read_to_end(&mut body)?;
    let whole = h.plain && h.len == Some(body.len() as u64) && rd.buffer().is_empty();
    let keep = (whole && !h.close).then(|| rd.into_inner());
    Ok(Reply {
        status: h.status,
        content_type: h.content_type,
        body,
        keep,
    })
}

impl Write for Sender {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = self.left.saturating_sub(self.tail.len() as u64);
        if buf.len() as u64 > room {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "upload body longer than announced",
            ));
        }
        let n = (&self.sock).write(buf)?;
        self.left -= n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A request head: the request line, `Host`, the login, `extra` headers
/// and, with a body, its `Content-Length`.
pub(super) fn request_head(
    method: &str,
    authority: &str,
    target: &str,
    auth: Option<&str>,
    extra: &[(&str, &str)],
    len: Option<u64>,
) -> String {
    let mut h = format!("{method} {target} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: keyfs\r\n");
    if let Some(a) = auth {
        h.push_str(&format!("Authorization: {a}\r\n"));
    }
    for (k, v) in extra {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(n) = len {
        h.push_str(&format!("Content-Length: {n}\r\n"));
    }
    h.push_str("\r\n");
    h
}

/// False when the server closed a kept-alive connection (or sent
/// something unasked): it is readable, or hung up.
fn still_open(s: &TcpStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut p = libc::pollfd {
        fd: s.as_raw_fd(),
        events: libc::POLLIN | libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd on the stack, count 1, no wait.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n == 0
}

fn connect(authority: &str, timeout: Duration) -> io::Result<TcpStream> {
    let mut last = None;
    for a in authority.to_socket_addrs()? {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other(format!("{authority}: no address"))))
}

/// `idle`, the kept-alive connection of an earlier request (set up as
/// here), unless the server closed it; else a new connection, with
/// timeouts and without Nagle.
fn reuse_or_connect(
    authority: &str,
    timeout: Duration,
    idle: Option<TcpStream>,
) -> io::Result<TcpStream> {
    if let Some(s) = idle.filter(still_open) {
        return Ok(s);
    }
    let sock = connect(authority, timeout)?;
    sock.set_read_timeout(Some(timeout))?;
    sock.set_write_timeout(Some(timeout))?;
    let _ = sock.set_nodelay(true);
    Ok(sock)
}

/// Holds back (or lets go of) partial segments: best effort, as only the
/// number of packets changes.
fn cork(s: &TcpStream, on: bool) {
    use std::os::fd::AsRawFd;
    let v: libc::c_int = on.into();
    // SAFETY: a valid socket and a pointer to an int of the given size.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_CORK,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// What a response head says.
#[derive(Debug, PartialEq, Eq)]
struct Head {
    status: u16,
    len: Option<u64>,
    /// No `Transfer-Encoding`.
    plain: bool,
    /// The server closes the connection after it (`Connection: close`,
    /// HTTP/1.0).
    close: bool,
    content_type: String,
}

/// Reads the status line and headers.
fn read_head(rd: &mut impl BufRead) -> io::Result<Head> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("GET: {what}"));
    let mut line = Vec::new();
    let mut used = 0;
    let mut next = |line: &mut Vec<u8>| -> io::Result<()> {
        line.clear();
        let n = rd.take((HEAD_MAX - used) as u64).read_until(b'\n', line)?;
        if n == 0 && used == 0 {
            // Nothing at all: the server closed the connection (a stale
            // kept-alive one, for one).
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before an answer",
            ));
        }
        used += n;
        if n == 0 || !line.ends_with(b"\n") {
            return Err(bad("response head cut off or too large"));
        }
        Ok(())
    };
    next(&mut line)?;
    let status_line = String::from_utf8_lossy(&line);
    let mut parts = status_line.split_ascii_whitespace();
    let (status, mut close) = match (parts.next(), parts.next()) {
        (Some(v), Some(code)) if v.starts_with("HTTP/1.") => (
            code.parse::<u16>()
                .map_err(|_| bad("malformed status line"))?,
            v == "HTTP/1.0",
        ),
        _ => return Err(bad("malformed status line")),
    };
    let (mut len, mut plain, mut content_type) = (None, true, String::new());
    loop {
        next(&mut line)?;
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end();
        if text.is_empty() {
            break;
        }
        let Some((name, value)) = text.split_once(':') else {
            return Err(bad("malformed header"));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n = value
                .parse::<u64>()
                .map_err(|_| bad("malformed Content-Length"))?;
            if len.is_some_and(|l| l != n) {
                return Err(bad("conflicting Content-Length"));
            }
            len = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            plain = false;
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        } else if name.eq_ignore_ascii_case("content-type") {
            let t = value.split(';').next().unwrap_or("");
            content_type = t.trim().to_ascii_lowercase();
        }
    }
    Ok(Head {
        status,
        len,
        plain,
        close,
        content_type,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads() {
        let head = |h: &[u8]| {
            read_head(&mut &h[..])
                .ok()
                .map(|h| (h.status, h.len, h.plain, h.close, h.content_type))
        };
        let json = "application/json".to_string();
        assert_eq!(
            head(b"HTTP/1.1 206 Partial Content\r\nContent-Length: 42\r\nContent-type: Application/JSON; charset=utf-8\r\n\r\nbody"),
            Some((206, Some(42), true, false, json))
        );
        let h = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(head(h), Some((200, None, false, false, String::new())));
        let h = b"HTTP/1.0 404 Not Found\n\n";
        assert_eq!(head(h), Some((404, None, true, true, String::new())));
        let h = b"HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(head(h), Some((200, Some(0), true, true, String::new())));
        let e = read_head(&mut &b""[..]).expect_err("nothing");
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert!(read_head(&mut &b"HTTP/1.1 200 OK\r\nContent-Length: 4"[..]).is_err());
        assert!(read_head(&mut &b"SSH-2.0\r\n\r\n"[..]).is_err());
        let h = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\ncontent-length: 2\r\n\r\n";
        assert!(read_head(&mut &h[..]).is_err());
    }

    /// A one-connection server on 127.0.0.1: returns its address and a
    /// handle giving the request bytes it read (`until` bytes, or with 0
    /// a whole head, or until the client closed) after it wrote `answer`.
    fn serve(answer: &'static [u8], until: usize) -> (String, std::thread::JoinHandle<Vec<u8>>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr").to_string();
        let h = std::thread::spawn(move || {
            let (mut c, _) = l.accept().expect("accept");
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while got.len() < until || (until == 0 && !got.ends_with(b"\r\n\r\n")) {
                match c.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            let _ = c.write_all(answer);
            got
        });
        (addr, h)
    }

    const T: Duration = Duration::from_secs(10);

    #[test]
    fn ranged_get_reads_the_body_and_notices_a_cut() {
        let (a, h) = serve(b"HTTP/1.1 206 Partial\r\nContent-Length: 5\r\n\r\nhello", 0);
        let Ok(Answer::Body { status, mut body }) = get(&a, "/f", Some("Basic x"), 7, T) else {
            panic!("no body")
        };
        let mut s = String::new();
        body.read_to_string(&mut s).expect("read");
        assert_eq!((status, s.as_str()), (206, "hello"));
        let req = String::from_utf8(h.join().expect("server")).expect("utf8");
        assert!(req.starts_with("GET /f HTTP/1.1\r\n"), "{req}");
        assert!(req.contains("\r\nRange: bytes=7-\r\n"), "{req}");
        assert!(req.contains("\r\nAuthorization: Basic x\r\n"), "{req}");

        let (a, _h) = serve(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nhello", 0);
        let Ok(Answer::Body { mut body, .. }) = get(&a, "/f", None, 0, T) else {
            panic!("no body")
        };
        let e = body.read_to_end(&mut Vec::new()).expect_err("a cut body");
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);

        let (a, _h) = serve(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", 0);
        assert!(matches!(get(&a, "/f", None, 0, T), Ok(Answer::Status(404))));
        let (a, _h) = serve(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 0);
        assert!(matches!(get(&a, "/f", None, 0, T), Ok(Answer::Unhandled)));
    }

    #[test]
    fn sender_frames_the_body_and_reads_the_answer() {
        let head = request_head("POST", "h", "/p", None, &[("Content-Type", "x")], Some(8));
        let want = format!("{head}<abcdef>");
        let (a, h) = serve(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
            want.len(),
        );
        let mut s = Sender::start(&a, &head, b"<", b">".to_vec(), 8, T, None).expect("start");
        s.write_all(b"abc").expect("write");
        assert!(s.write_all(b"defg").is_err(), "more than announced");
        s.write_all(b"def").expect("write");
        let r = s.finish(100).expect("answer");
        assert_eq!((r.status, r.body), (200, b"{}".to_vec()));
        assert_eq!(
            String::from_utf8(h.join().expect("server")).expect("utf8"),
            want
        );
        // The server thread has ended and closed its side: not reused.
        let kept = r.keep.expect("an answer read whole keeps its connection");
        std::thread::sleep(Duration::from_millis(50));
        assert!(!still_open(&kept));

        // Dropped before its end: the server sees fewer bytes than announced.
        let (a, h) = serve(b"", usize::MAX);
        let mut s = Sender::start(&a, &head, b"<", b">".to_vec(), 8, T, None).expect("start");
        s.write_all(b"ab").expect("write");
        drop(s);
        let got = h.join().expect("server");
        assert_eq!(got.len(), head.len() + 3);
    }

    #[test]
    fn a_call_reads_a_small_answer_and_leaves_a_closed_connection() {
        let answer =
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
        let (a, h) = serve(answer, 0);
        let req = request_head("GET", &a, "/f?state", None, &[], None);
        let r = call(&a, &req, 100, T, None).expect("answer");
        assert_eq!(
            (r.status, r.content_type.as_str(), r.body.as_slice()),
            (200, "application/json", &b"{}"[..])
        );
        assert_eq!(
            String::from_utf8(h.join().expect("server")).expect("utf8"),
            req
        );
        // The server closed the kept connection: the next call connects anew.
        let kept = r.keep.expect("kept");
        std::thread::sleep(Duration::from_millis(50));
        let (a2, h2) = serve(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", 0);
        let r = call(&a2, &req, 100, T, Some(kept)).expect("answer");
        assert_eq!(r.status, 404);
        h2.join().expect("server");
        // A server that closes without answering: an error, not an answer.
        let (a3, _h3) = serve(b"", 0);
        let e = call(&a3, &req, 100, T, None).err().expect("no answer");
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }
}
