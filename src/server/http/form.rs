//! A streaming `multipart/form-data` reader for the seed's POST.
//!
//! A part's data is handed out as slices of the chunks the body arrives
//! in, not copied into a parser buffer first (a general parser's copy and
//! its rescans cost about a tenth of a 1 GiB upload's server CPU). Bytes
//! are held back only while they may be the start of the part delimiter
//! (`CRLF--boundary`): at most its length, so a body cut off mid-part has
//! handed over every byte but those.

use std::fmt;
use std::io;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use memchr::memmem::Finder;

/// Largest preamble, transport padding or block of part headers.
const HEAD_MAX: usize = 16 << 10;

/// Why a form could not be read.
#[derive(Debug)]
pub(crate) enum FormError {
    /// The body itself failed (cut, timeout).
    Body(io::Error),
    /// Not a well-formed form.
    Malformed(&'static str),
    /// A field longer than its limit.
    TooLong(u64),
}

impl fmt::Display for FormError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormError::Body(e) => write!(f, "{e}"),
            FormError::Malformed(why) => f.write_str(why),
            FormError::TooLong(n) => write!(f, "a field is longer than {n} bytes"),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum At {
    /// Before the first delimiter.
    Preamble,
    /// Right after a delimiter's boundary.
    Delimiter,
    /// In a part's data.
    Data,
    /// Past the closing delimiter.
    End,
}

/// A form read from a body of chunks.
pub(crate) struct Form<S> {
    body: S,
    /// Received and not handed out yet.
    cur: Bytes,
    eof: bool,
    /// `CRLF--boundary`.
    delim: Vec<u8>,
    finder: Finder<'static>,
    at: At,
    /// The current part's `filename`, if its headers give one.
    filename: Option<String>,
}

impl<S> Form<S>
where
    S: Stream<Item = io::Result<Bytes>> + Unpin,
{
    pub fn new(body: S, boundary: &str) -> Form<S> {
        let delim = format!("\r\n--{boundary}").into_bytes();
        Form {
            body,
            cur: Bytes::new(),
            eof: false,
            finder: Finder::new(&delim).into_owned(),
            delim,
            at: At::Preamble,
            filename: None,
        }
    }

    /// Appends the body's next chunk to `cur`; false at its end.
    async fn fill(&mut self) -> Result<bool, FormError> {
        if self.eof {
            return Ok(false);
        }
        match self.body.next().await {
            None => {
                self.eof = true;
                Ok(false)
            }
            Some(Err(e)) => Err(FormError::Body(e)),
            Some(Ok(b)) if self.cur.is_empty() => {
                self.cur = b;
                Ok(true)
            }
            Some(Ok(b)) => {
                // Only a delimiter's possible start or a header is left
                // over here: rare, or small next to a chunk.
                let mut m = BytesMut::with_capacity(self.cur.len() + b.len());
                m.extend_from_slice(&self.cur);
                m.extend_from_slice(&b);
                self.cur = m.freeze();
                Ok(true)
            }
        }
    }

    /// Fills until `cur` holds `n` bytes; false when the body ends first.
    async fn want(&mut self, n: usize) -> Result<bool, FormError> {
        while self.cur.len() < n {
            if !self.fill().await? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The next part's field name (None when its headers name none);
    /// `Ok(None)` past the closing delimiter. The rest of the current
    /// part is skipped.
    pub async fn next_part(&mut self) -> Result<Option<Option<String>>, FormError> {
        loop {
            match self.at {
                At::End => return Ok(None),
                At::Data => while self.chunk().await?.is_some() {},
                At::Preamble => self.preamble().await?,
                At::Delimiter => return self.part_head().await,
            }
        }
    }

    /// Skips to past the first `--boundary` (it may open the body, without
    /// the CRLF before it).
    async fn preamble(&mut self) -> Result<(), FormError> {
        let first = Finder::new(&self.delim[2..]).into_owned();
        let mut seen = 0usize;
        loop {
            if let Some(i) = first.find(&self.cur) {
                self.cur.advance(i + first.needle().len());
                self.at = At::Delimiter;
                return Ok(());
            }
            let keep = self.cur.len().min(first.needle().len() - 1);
            seen += self.cur.len() - keep;
            self.cur.advance(self.cur.len() - keep);
            if seen > HEAD_MAX {
                return Err(FormError::Malformed("no multipart boundary at the start"));
            }
            if !self.fill().await? {
                return Err(FormError::Malformed("no multipart boundary in the body"));
            }
        }
    }

    /// After a boundary: the closing `--`, or padding, CRLF and a part's
    /// headers up to the empty line.
    async fn part_head(&mut self) -> Result<Option<Option<String>>, FormError> {
        if !self.want(2).await? {
            return Err(FormError::Malformed("the body ended after a boundary"));
        }
        if self.cur.starts_with(b"--") {
            self.at = At::End;
            return Ok(None);
        }
        let end = loop {
            if let Some(i) = memchr::memmem::find(&self.cur, b"\r\n\r\n") {
                break i;
            }
            if self.cur.len() > HEAD_MAX {
                return Err(FormError::Malformed("part headers too long"));
            }
            if !self.fill().await? {
                return Err(FormError::Malformed("the body ended in part headers"));
            }
        };
        let head = self.cur.split_to(end + 4);
        // The delimiter line: transport padding, then CRLF.
        let line_end = memchr::memmem::find(&head, b"\r\n").unwrap_or(0);
        if !head[..line_end].iter().all(|&b| b == b' ' || b == b'\t') {
            return Err(FormError::Malformed("junk after a boundary"));
        }
        let headers = &head[line_end + 2..end + 2];
        let disposition = headers.split(|&b| b == b'\n').find_map(|l| {
            let l = l.strip_suffix(b"\r").unwrap_or(l);
            let (k, v) = l.split_at(memchr::memchr(b':', l)?);
            k.trim_ascii()
                .eq_ignore_ascii_case(b"content-disposition")
                .then(|| &v[1..])
        });
        let name = disposition.and_then(|d| param(d, b"name"));
        self.filename = disposition.and_then(|d| param(d, b"filename"));
        self.at = At::Data;
        Ok(Some(name))
    }

    /// The current part's `filename` parameter (a browser's file input
    /// sends the file's base name).
    pub fn filename(&self) -> Option<&str> {
        self.filename.as_deref()
    }

    /// The current part's next data; `Ok(None)` at its end. Handed out as
    /// slices of the received chunks.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, FormError> {
        if self.at != At::Data {
            return Ok(None);
        }
        loop {
            if let Some(i) = self.finder.find(&self.cur) {
                if i > 0 {
                    return Ok(Some(self.cur.split_to(i)));
                }
                self.cur.advance(self.delim.len());
                self.at = At::Delimiter;
                return Ok(None);
            }
            let hold = delim_start(&self.cur, &self.delim);
            if self.cur.len() > hold {
                return Ok(Some(self.cur.split_to(self.cur.len() - hold)));
            }
            if !self.fill().await? {
                return Err(FormError::Malformed("the body ended inside a part"));
            }
        }
    }

    /// The current part's data as text of at most `max` bytes.
    pub async fn text(&mut self, max: u64) -> Result<String, FormError> {
        let mut t = Vec::new();
        while let Some(b) = self.chunk().await? {
            if (t.len() + b.len()) as u64 > max {
                return Err(FormError::TooLong(max));
            }
            t.extend_from_slice(&b);
        }
        String::from_utf8(t).map_err(|_| FormError::Malformed("a field is not UTF-8"))
    }

    /// Skips the current part, which may be at most `max` bytes.
    pub async fn skip(&mut self, max: u64) -> Result<(), FormError> {
        let mut n = 0u64;
        while let Some(b) = self.chunk().await? {
            n += b.len() as u64;
            if n > max {
                return Err(FormError::TooLong(max));
            }
        }
        Ok(())
    }
}

/// The length of the longest end of `b` that is a proper start of `delim`
/// (bytes that may begin a delimiter the next chunk completes).
fn delim_start(b: &[u8], delim: &[u8]) -> usize {
    let from = b.len().saturating_sub(delim.len() - 1);
    memchr::memchr_iter(delim[0], &b[from..])
        .map(|i| from + i)
        .find(|&i| delim.starts_with(&b[i..]))
        .map_or(0, |i| b.len() - i)
}

/// The value of parameter `key` of a header value like `form-data;
/// name="file"; filename="f.bin"` (quoted with `\"` escapes, or a bare
/// token).
fn param(v: &[u8], key: &[u8]) -> Option<String> {
    let mut rest = v;
    // Past the disposition type.
    rest = &rest[memchr::memchr(b';', rest)? + 1..];
    loop {
        rest = rest.trim_ascii_start();
        let eq = memchr::memchr(b'=', rest)?;
        let k = rest[..eq].trim_ascii();
        let mut after = rest[eq + 1..].trim_ascii_start();
        let value;
        if let Some(q) = after.strip_prefix(b"\"") {
            let mut out = Vec::new();
            let mut i = 0;
            loop {
                match q.get(i)? {
                    b'\\' if i + 1 < q.len() => {
                        out.push(q[i + 1]);
                        i += 2;
                    }
                    b'"' => break,
                    &c => {
                        out.push(c);
                        i += 1;
                    }
                }
            }
            value = out;
            after = &q[i + 1..];
            after = match memchr::memchr(b';', after) {
                Some(j) => &after[j + 1..],
                None => &[],
            };
        } else {
            let j = memchr::memchr(b';', after).unwrap_or(after.len());
            value = after[..j].trim_ascii().to_vec();
            after = after.get(j + 1..).unwrap_or(&[]);
        }
        if k.eq_ignore_ascii_case(key) {
            return String::from_utf8(value).ok();
        }
        if after.is_empty() {
            return None;
        }
        rest = after;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: &str = "XyZ-bound";

    fn form_of(chunks: Vec<Vec<u8>>) -> Form<impl Stream<Item = io::Result<Bytes>> + Unpin> {
        let s = futures_util::stream::iter(chunks.into_iter().map(|c| Ok(Bytes::from(c))));
        Form::new(s, B)
    }

    fn body(data: &[u8]) -> Vec<u8> {
        let mut b = format!(
            "preamble\r\n--{B}\r\nContent-Disposition: form-data; name=\"offset\"\r\n\r\n12\r\n\
             --{B}  \r\ncontent-disposition: form-data; filename=\"a;name=x\"; name=file\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .into_bytes();
        b.extend_from_slice(data);
        b.extend_from_slice(format!("\r\n--{B}--\r\n").as_bytes());
        b
    }

    async fn read_all(chunks: Vec<Vec<u8>>) -> Result<(String, Vec<u8>), FormError> {
        let mut f = form_of(chunks);
        assert_eq!(f.next_part().await?, Some(Some("offset".into())));
        let off = f.text(100).await?;
        assert_eq!(f.next_part().await?, Some(Some("file".into())));
        let mut data = Vec::new();
        while let Some(b) = f.chunk().await? {
            data.extend_from_slice(&b);
        }
        assert_eq!(f.next_part().await?, None);
        Ok((off, data))
    }

    fn run<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn every_split_of_a_tricky_body() {
        // Data with delimiter look-alikes, split at every point.
        let data = b"a\r\n--XyZ-boun\r\n\r\n--XyZ\r\r\n-\r\n--XyZ-boun".to_vec();
        let whole = body(&data);
        for cut in 0..whole.len() {
            for step in [1, 3, 7, whole.len()] {
                let mut chunks = vec![whole[..cut].to_vec()];
                chunks.extend(whole[cut..].chunks(step).map(|c| c.to_vec()));
                let (off, got) = run(read_all(chunks)).expect("parsed");
                assert_eq!(off, "12");
                assert_eq!(got, data, "cut {cut} step {step}");
            }
        }
    }

    #[test]
    fn a_cut_keeps_all_but_a_delimiter_start() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        let whole = body(&data);
        let start = whole.len() - data.len() - format!("\r\n--{B}--\r\n").len();
        let mut chunks: Vec<Vec<u8>> = whole[..start + 3000]
            .chunks(1000)
            .map(|c| c.to_vec())
            .collect();
        chunks.push(b"\r\n--XyZ".to_vec());
        let mut f = form_of(chunks);
        run(async {
            f.next_part().await.expect("offset");
            f.text(10).await.expect("text");
            f.next_part().await.expect("file");
            let mut got = Vec::new();
            let e = loop {
                match f.chunk().await {
                    Ok(Some(b)) => got.extend_from_slice(&b),
                    Ok(None) => panic!("no end"),
                    Err(e) => break e,
                }
            };
            assert!(matches!(e, FormError::Malformed(_)));
            assert_eq!(got, &data[..3000]);
        });
    }

    #[test]
    fn malformed_forms() {
        let bad = |b: &[u8]| -> Result<(), FormError> {
            run(async {
                let mut f = form_of(vec![b.to_vec()]);
                while f.next_part().await?.is_some() {
                    f.skip(10).await?;
                }
                Ok(())
            })
        };
        assert!(bad(b"garbage without parts").is_err());
        assert!(
            bad(format!("--{B}\r\nContent-Disposition: form-data; name=\"f\"\r\n").as_bytes())
                .is_err()
        );
        assert!(bad(format!("--{B}x\r\n\r\nabc\r\n--{B}--").as_bytes()).is_err());
        assert!(bad(format!("--{B}\r\n\r\n0123456789ab\r\n--{B}--").as_bytes()).is_err());
        assert!(bad(format!("--{B}\r\n\r\nabc\r\n--{B}--").as_bytes()).is_ok());
    }

    #[test]
    fn disposition_params() {
        assert_eq!(
            param(b" form-data; name=\"file\"", b"name").as_deref(),
            Some("file")
        );
        assert_eq!(
            param(b"form-data; filename=\"x\\\"; name=y\"; name=k", b"name").as_deref(),
            Some("k")
        );
        assert_eq!(
            param(b"form-data;name = v ;x=1", b"name").as_deref(),
            Some("v")
        );
        assert_eq!(param(b"form-data; filename=a", b"name"), None);
        assert_eq!(param(b"form-data", b"name"), None);
    }
}
