//! A bounded line reader for the control connection.
//!
//! FTP commands are short; a client that sends a megabyte without a newline
//! must not make the server allocate a megabyte. The reader owns one fixed
//! buffer; a line that does not fit is reported once as [`LineEvent::TooLong`]
//! and the rest of it, up to its newline, is discarded.

use std::io::{self, Read};

/// The longest command line accepted, CRLF included.
pub const MAX_LINE: usize = 4096;

/// What the next read produced.
#[derive(Debug, PartialEq, Eq)]
pub enum LineEvent {
    /// A complete line, without its CR LF.
    Line(String),
    /// The line overflowed the buffer; its remainder will be discarded.
    TooLong,
    /// The read timed out (socket read timeout); call again.
    Timeout,
    /// The peer closed the connection.
    Eof,
}

/// Reads lines from `R` into a fixed buffer of [`MAX_LINE`] bytes.
pub struct LineReader<R> {
    inner: R,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    discarding: bool,
}

impl<R: Read> LineReader<R> {
    /// Wraps a reader.
    pub fn new(inner: R) -> Self {
        LineReader {
            inner,
            buf: vec![0u8; MAX_LINE].into_boxed_slice(),
            start: 0,
            end: 0,
            discarding: false,
        }
    }

    /// Wraps a reader, with `pending` bytes already read from it (at most
    /// [`MAX_LINE`] are kept).
    pub fn with_pending(inner: R, pending: &[u8]) -> Self {
        let mut r = LineReader::new(inner);
        let n = pending.len().min(MAX_LINE);
        r.buf[..n].copy_from_slice(&pending[..n]);
        r.end = n;
        r
    }

    /// The next event: a line, an overflow, a timeout or EOF.
    pub fn next_event(&mut self) -> io::Result<LineEvent> {
        loop {
            if let Some(i) = self.buf[self.start..self.end]
                .iter()
                .position(|&b| b == b'\n')
            {
                let line_end = self.start + i;
                let mut line = &self.buf[self.start..line_end];
                self.start = line_end + 1;
                if self.discarding {
                    self.discarding = false;
                    continue;
                }
                if line.last() == Some(&b'\r') {
                    line = &line[..line.len() - 1];
                }
                return Ok(LineEvent::Line(String::from_utf8_lossy(line).into_owned()));
            }
            if self.discarding {
                self.start = 0;
                self.end = 0;
            } else if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.end == self.buf.len() {
                self.start = 0;
                self.end = 0;
                self.discarding = true;
                return Ok(LineEvent::TooLong);
            }
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(0) => return Ok(LineEvent::Eof),
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut =>
                {
                    return Ok(LineEvent::Timeout)
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl LineReader<super::tls::Ctrl> {
    /// True, consuming the line, when the next complete command line is
    /// ABOR (Telnet IP/Synch bytes before it are ignored). Reads what has
    /// already arrived without waiting. Used during and right after a
    /// transfer, when the control connection is otherwise not read.
    pub fn take_abort(&mut self) -> bool {
        let ready = self.inner.has_buffered()
            || super::data::poll_readable(self.inner.raw_fd(), 0).unwrap_or(false);
        if ready && !self.discarding && self.end < self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            // Readable, so this does not block; EOF (0) is seen again later.
            if let Ok(n) = self.inner.read(&mut self.buf[self.end..]) {
                self.end += n;
            }
        }
        let window = &self.buf[self.start..self.end];
        let Some(i) = window.iter().position(|&b| b == b'\n') else {
            return false;
        };
        let line: Vec<u8> = window[..i]
            .iter()
            .copied()
            .skip_while(|b| !b.is_ascii_alphanumeric())
            .collect();
        let is_abor = String::from_utf8_lossy(&line)
            .trim()
            .eq_ignore_ascii_case("ABOR");
        if is_abor {
            self.start += i + 1;
        }
        is_abor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_overflow() {
        let mut data = b"USER a\r\nPASS b\n".to_vec();
        data.extend(std::iter::repeat_n(b'x', 10_000));
        data.extend(b"\r\nNOOP\r\n");
        let mut r = LineReader::new(&data[..]);
        assert_eq!(r.next_event().ok(), Some(LineEvent::Line("USER a".into())));
        assert_eq!(r.next_event().ok(), Some(LineEvent::Line("PASS b".into())));
        assert_eq!(r.next_event().ok(), Some(LineEvent::TooLong));
        assert_eq!(r.next_event().ok(), Some(LineEvent::Line("NOOP".into())));
        assert_eq!(r.next_event().ok(), Some(LineEvent::Eof));
    }
}
