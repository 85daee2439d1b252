//! A small HTTP/1.1 client connection for the gateway's plain-HTTP upstreams (local providers,
//! `http://` upstreams), driven by the task that serves the request: no connection task, no
//! dispatch channel, no body channel, one read buffer per connection that is reused.
//!
//! hyper's client connection runs as its own task and hands every request and every chunk of
//! the answer across a channel to the task that proxies it: a wake-up of another task, often
//! on the other worker thread, per request and per streamed chunk, plus two 8 KiB buffers and a
//! 9 KiB channel block per connection. Here the proxying task writes the request and reads the
//! answer itself; body chunks are slices of the connection's read buffer.
//!
//! What it speaks: requests with a whole body (`content-length`); responses framed by
//! `content-length`, `transfer-encoding: chunked` (trailers skipped) or the end of the
//! connection; interim `1xx` responses skipped; keep-alive unless the response says
//! `connection: close` (HTTP/1.0: unless it says `keep-alive`). TLS upstreams go through
//! hyper's client (see `pool`).

use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// The read buffer's first size: a response head and a few streamed chunks. It doubles, up to
/// [`MAX_READ`], while reads fill it (large bodies).
const INIT_READ: usize = 4096;
const MAX_READ: usize = 64 * 1024;
/// A response head larger than this is refused.
const MAX_HEAD: usize = 64 * 1024;
/// Response headers at most (on the stack while parsing).
const MAX_HEADERS: usize = 100;
/// A chunk-size line or a trailer line longer than this is refused.
const MAX_LINE: usize = 4096;
/// Bodies up to this size are written with the head in one write.
const COALESCE_BODY: usize = 64 * 1024;
/// The write buffer keeps at most this much capacity between requests.
const KEEP_WRITE: usize = 16 * 1024;

/// Why an exchange on a [`Conn`] failed.
#[derive(Debug, thiserror::Error)]
pub enum H1Error {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The connection ended (or was reset) before a byte of the response arrived: on a reused
    /// connection, the upstream closed it while it was idle and never saw the request.
    #[error("the upstream closed the connection before answering")]
    ClosedBeforeResponse,
    #[error("the upstream closed the connection in the middle of its response")]
    ClosedMidResponse,
    #[error("the upstream sent a malformed response: {0}")]
    Malformed(&'static str),
    #[error("the upstream's response head is larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
}

impl H1Error {
    /// The request can go again on another connection: nothing of a response came back on a
    /// connection that was closed or reset under it.
    pub fn unanswered(&self) -> bool {
        match self {
            H1Error::ClosedBeforeResponse => true,
            H1Error::Io(e) => matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::ConnectionAborted
            ),
            _ => false,
        }
    }
}

/// One connection to an upstream.
#[derive(Debug)]
pub struct Conn {
    tcp: TcpStream,
    /// Bytes read and not yet handed out. Body chunks are split off it; once they are dropped
    /// the buffer is reused in place.
    rbuf: BytesMut,
    /// How much to make room for before the next read.
    read_size: usize,
    /// The request head (and a small body) being written.
    wbuf: Vec<u8>,
}

/// A response head as read: the rest of the message is read through [`Conn::poll_body`].
#[derive(Debug)]
pub struct Head {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub framing: Framing,
    /// The connection can carry another request once this response is read to its end.
    pub keep_alive: bool,
}

/// How a response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (`HEAD`, 204, 304) or `content-length: 0`.
    Empty,
    /// `content-length`: this many bytes left.
    Length(u64),
    Chunked(Chunked),
    /// Until the upstream closes the connection.
    Eof,
    /// Read to its end.
    Done,
}

/// Where a chunked body's decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunked {
    /// Before a chunk-size line.
    Size,
    /// Inside a chunk: this many bytes left.
    Data(u64),
    /// After a chunk's data: its CRLF.
    DataEnd,
    /// After the last (empty) chunk: trailer lines up to an empty one.
    Trailers,
}

impl Framing {
    pub fn is_end(self) -> bool {
        matches!(self, Framing::Empty | Framing::Done | Framing::Length(0))
    }
}

impl Conn {
    pub fn new(tcp: TcpStream) -> Self {
        Conn {
            tcp,
            rbuf: BytesMut::new(),
            read_size: INIT_READ,
            wbuf: Vec::new(),
        }
    }

    /// Whether an idle connection can take a request: the upstream has not closed it and sent
    /// nothing unasked. Looks at the readiness the runtime already has (no system call unless
    /// the socket turned readable while idle).
    pub fn is_reusable(&mut self) -> bool {
        if !self.rbuf.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(Waker::noop());
        match self.tcp.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            // Readable: the end of the connection, bytes nobody asked for, or readiness left
            // from the last response's final read.
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                matches!(self.tcp.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            }
        }
    }

    /// Writes a request: `path` is origin-form (`/v1/...`), `headers` carry `host`; the body's
    /// length is sent as `content-length`.
    pub async fn write_request(
        &mut self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Result<(), H1Error> {
        self.wbuf.clear();
        encode_head(&mut self.wbuf, method, path, headers, body.len());
        if body.len() <= COALESCE_BODY {
            self.wbuf.extend_from_slice(body);
            self.tcp.write_all(&self.wbuf).await?;
        } else {
            self.tcp.write_all(&self.wbuf).await?;
            self.tcp.write_all(body).await?;
        }
        if self.wbuf.capacity() > KEEP_WRITE {
            self.wbuf = Vec::new();
        }
        Ok(())
    }

    /// Reads the response head (interim 1xx responses skipped). Its headers go into `headers`
    /// (cleared first, once the head is complete): the request's map, reused.
    pub async fn read_head(
        &mut self,
        method: &Method,
        headers: &mut HeaderMap,
    ) -> Result<Head, H1Error> {
        let mut received = false;
        loop {
            if !self.rbuf.is_empty() {
                received = true;
                match parse_head(&mut self.rbuf, method, headers)? {
                    Some(head) => return Ok(head),
                    None if self.rbuf.len() > MAX_HEAD => return Err(H1Error::HeadTooLarge),
                    None => {}
                }
            }
            let n = std::future::poll_fn(|cx| self.poll_read(cx)).await?;
            if n == 0 {
                return Err(if received {
                    H1Error::ClosedMidResponse
                } else {
                    H1Error::ClosedBeforeResponse
                });
            }
        }
    }

    /// Reads more into the buffer; `Ok(0)` at the end of the connection.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        let spare = self.rbuf.capacity() - self.rbuf.len();
        if spare < self.read_size / 2 {
            self.rbuf.reserve(self.read_size);
        }
        let room = self.rbuf.capacity() - self.rbuf.len();
        let r = tokio_util::io::poll_read_buf(Pin::new(&mut self.tcp), cx, &mut self.rbuf);
        if let Poll::Ready(Ok(n)) = r
            && n == room
            && self.read_size < MAX_READ
        {
            // The read filled all the room there was: a large body, read in larger pieces.
            self.read_size *= 2;
        }
        r
    }

    /// The next piece of the body framed by `framing` (which it advances): `None` at its end.
    pub fn poll_body(
        &mut self,
        framing: &mut Framing,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, H1Error>>> {
        loop {
            match decode(framing, &mut self.rbuf) {
                Err(e) => return Poll::Ready(Some(Err(e))),
                Ok(Step::Data(b)) => return Poll::Ready(Some(Ok(b))),
                Ok(Step::End) => return Poll::Ready(None),
                Ok(Step::NeedMore) => {}
            }
            match self.poll_read(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                Poll::Ready(Ok(0)) => {
                    if *framing == Framing::Eof {
                        *framing = Framing::Done;
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Err(H1Error::ClosedMidResponse)));
                }
                Poll::Ready(Ok(_)) => {}
            }
        }
    }
}

/// `METHOD path HTTP/1.1`, the headers, `content-length`, the blank line.
fn encode_head(out: &mut Vec<u8>, method: &Method, path: &str, headers: &HeaderMap, len: usize) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        if name == CONTENT_LENGTH || name == TRANSFER_ENCODING {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    // As hyper does: a length for any body, and for methods that carry one even when empty.
    if len > 0 || !matches!(*method, Method::GET | Method::HEAD | Method::DELETE) {
        use std::io::Write;
        // Writing into a Vec cannot fail.
        let _ = write!(out, "content-length: {len}\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Parses a complete response head off the front of `buf`; `None` while it is incomplete.
/// Interim (1xx) responses are consumed and skipped. The headers are read into `headers`
/// (cleared first; its memory reused), which the returned head then owns.
fn parse_head(
    buf: &mut BytesMut,
    method: &Method,
    headers: &mut HeaderMap,
) -> Result<Option<Head>, H1Error> {
    loop {
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut slots);
        let len = match resp.parse(buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(H1Error::HeadTooLarge),
            Err(_) => return Err(H1Error::Malformed("its status line or headers")),
        };
        let code = resp.code.unwrap_or(0);
        let status =
            StatusCode::from_u16(code).map_err(|_| H1Error::Malformed("its status code"))?;
        if status.is_informational() {
            // 100 Continue and the like; 101 would switch protocols, which nobody asked for.
            if code == 101 {
                return Err(H1Error::Malformed("a protocol switch nobody asked for"));
            }
            buf.advance(len);
            continue;
        }
        let version = if resp.version == Some(0) {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        };
        // The head's bytes become shared: header values are slices of them, not copies.
        let count = resp.headers.len();
        let mut spans = [(0u32, 0u32, 0u32, 0u32); MAX_HEADERS];
        let base = buf.as_ptr() as usize;
        for (i, h) in resp.headers.iter().enumerate() {
            let n0 = h.name.as_ptr() as usize - base;
            let v0 = h.value.as_ptr() as usize - base;
            spans[i] = (
                n0 as u32,
                (n0 + h.name.len()) as u32,
                v0 as u32,
                (v0 + h.value.len()) as u32,
            );
        }
        let head = buf.split_to(len).freeze();
        headers.clear();
        headers.reserve(count);
        for &(n0, n1, v0, v1) in &spans[..count] {
            let name = HeaderName::from_bytes(&head[n0 as usize..n1 as usize])
                .map_err(|_| H1Error::Malformed("a header name"))?;
            let value = HeaderValue::from_maybe_shared(head.slice(v0 as usize..v1 as usize))
                .map_err(|_| H1Error::Malformed("a header value"))?;
            headers.append(name, value);
        }
        let framing = framing(status, method, headers)?;
        let keep_alive = keep_alive(version, headers) && framing != Framing::Eof;
        return Ok(Some(Head {
            status,
            version,
            headers: std::mem::take(headers),
            framing,
            keep_alive,
        }));
    }
}

/// How the body of a response is delimited (RFC 9112 §6.3).
fn framing(status: StatusCode, method: &Method, headers: &HeaderMap) -> Result<Framing, H1Error> {
    if *method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok(Framing::Empty);
    }
    if let Some(last) = headers.get_all(TRANSFER_ENCODING).iter().next_back() {
        let last_coding = last.as_bytes().rsplit(|&b| b == b',').next().unwrap_or(b"");
        return Ok(
            if last_coding.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                Framing::Chunked(Chunked::Size)
            } else {
                Framing::Eof
            },
        );
    }
    let mut length = None;
    for v in headers.get_all(CONTENT_LENGTH) {
        for part in v.as_bytes().split(|&b| b == b',') {
            let n =
                parse_decimal(part.trim_ascii()).ok_or(H1Error::Malformed("its content-length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(H1Error::Malformed("two different content-lengths"));
            }
            length = Some(n);
        }
    }
    Ok(match length {
        Some(0) => Framing::Empty,
        Some(n) => Framing::Length(n),
        None => Framing::Eof,
    })
}

/// A decimal length (`content-length`, digits only, at most 19 of them).
pub fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 {
        return None;
    }
    s.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
    })
}

/// HTTP/1.1 keeps the connection unless told `close`; HTTP/1.0 closes it unless told
/// `keep-alive`.
fn keep_alive(version: Version, headers: &HeaderMap) -> bool {
    let says = |token: &[u8]| {
        headers
            .get_all(CONNECTION)
            .iter()
            .any(|v| has_token(v.as_bytes(), token))
    };
    if version == Version::HTTP_10 {
        says(b"keep-alive")
    } else {
        !says(b"close")
    }
}

/// Whether a comma-separated header value (`connection: keep-alive, close`) lists `token`,
/// in any case.
pub fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// What the decoder got out of the buffer.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    Data(Bytes),
    NeedMore,
    End,
}

/// Takes the next piece of the body out of `buf`, advancing `framing`.
fn decode(framing: &mut Framing, buf: &mut BytesMut) -> Result<Step, H1Error> {
    loop {
        match *framing {
            Framing::Empty | Framing::Done | Framing::Length(0) => {
                *framing = Framing::Done;
                return Ok(Step::End);
            }
            Framing::Length(left) => {
                if buf.is_empty() {
                    return Ok(Step::NeedMore);
                }
                let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                *framing = Framing::Length(left - n as u64);
                return Ok(Step::Data(buf.split_to(n).freeze()));
            }
            Framing::Eof => {
                if buf.is_empty() {
                    return Ok(Step::NeedMore);
                }
                return Ok(Step::Data(buf.split().freeze()));
            }
            Framing::Chunked(Chunked::Data(left)) => {
                if buf.is_empty() {
                    return Ok(Step::NeedMore);
                }
                let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                let left = left - n as u64;
                *framing = Framing::Chunked(if left == 0 {
                    Chunked::DataEnd
                } else {
                    Chunked::Data(left)
                });
                return Ok(Step::Data(buf.split_to(n).freeze()));
            }
            Framing::Chunked(Chunked::DataEnd) => {
                if buf.len() < 2 {
                    return Ok(Step::NeedMore);
                }
                if &buf[..2] != b"\r\n" {
                    return Err(H1Error::Malformed("a chunk not followed by CRLF"));
                }
                buf.advance(2);
                *framing = Framing::Chunked(Chunked::Size);
            }
            Framing::Chunked(Chunked::Size) => {
                let Some(line) = take_line(buf)? else {
                    return Ok(Step::NeedMore);
                };
                let size = chunk_size(&line)?;
                *framing = Framing::Chunked(if size == 0 {
                    Chunked::Trailers
                } else {
                    Chunked::Data(size)
                });
            }
            Framing::Chunked(Chunked::Trailers) => {
                let Some(line) = take_line(buf)? else {
                    return Ok(Step::NeedMore);
                };
                if line.is_empty() {
                    *framing = Framing::Done;
                    return Ok(Step::End);
                }
            }
        }
    }
}

/// A line ending in CRLF (or LF) off the front of `buf`, without its ending.
fn take_line(buf: &mut BytesMut) -> Result<Option<BytesMut>, H1Error> {
    match buf.iter().position(|&b| b == b'\n') {
        Some(i) => {
            let mut line = buf.split_to(i + 1);
            line.truncate(i);
            if line.last() == Some(&b'\r') {
                line.truncate(i - 1);
            }
            Ok(Some(line))
        }
        None if buf.len() > MAX_LINE => {
            Err(H1Error::Malformed("an overlong chunk or trailer line"))
        }
        None => Ok(None),
    }
}

/// The hex size of a chunk-size line (extensions after `;` ignored).
fn chunk_size(line: &[u8]) -> Result<u64, H1Error> {
    let digits = line
        .split(|&b| b == b';')
        .next()
        .unwrap_or(b"")
        .trim_ascii();
    if digits.is_empty() || digits.len() > 15 {
        return Err(H1Error::Malformed("a chunk size"));
    }
    digits.iter().try_fold(0u64, |n, &b| {
        let d = (b as char)
            .to_digit(16)
            .ok_or(H1Error::Malformed("a chunk size"))?;
        Ok(n * 16 + u64::from(d))
    })
}

#[cfg(test)]
#[path = "h1_tests.rs"]
mod tests;
