//! The gateway's hot path served without hyper's server: `POST /v1/*` requests over HTTP/1.1
//! with a `content-length` body are read into a buffer the connection keeps, handed to the
//! gateway (`routes::direct`), and their responses written straight to the socket, the head
//! together with the first piece of the body.
//!
//! hyper's server gives each request a body channel, a head buffer and a fresh 8 KiB read
//! buffer, and runs a dispatcher around it; here the request's head and body are slices of
//! the connection's one read buffer (reused once the request is done with them), and the
//! header map the request arrived in is the one its response leaves in, kept for the next.
//!
//! Everything else — other methods and paths, HTTP/1.0, chunked or `Expect`-other-than-
//! `100-continue` request bodies, upgrades, heads too large to parse here — goes to hyper with
//! the bytes read so far ([`Outcome::HandOff`]), and stays with hyper for the rest of the
//! connection. Behaviour kept from hyper's server: a client that closes its side while its
//! request is worked on cancels it (the response is dropped, and with it the upstream
//! connection); keep-alive unless the request says `connection: close` or the gateway is
//! shutting down; `100 Continue` sent only when the body is wanted; `date` on every response;
//! a body that fails mid-response ends the connection without its last chunk.

use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri, header};
use hyper::body::{Frame, SizeHint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use super::listen::{BodyTimeout, Limits, Watched};
use super::reply::Reply;
use super::view::View;
use super::{GatewayState, routes};
use crate::http_client::{has_token, parse_decimal};

/// The read buffer's first size; it grows for larger heads and bodies.
const INIT_READ: usize = 4096;
/// After a request, a buffer larger than this (a large body came) is not kept.
const KEEP_READ: usize = 64 * 1024;
/// A head not complete within this many bytes goes to hyper (which answers it).
const MAX_HEAD: usize = 64 * 1024;
/// Request headers at most (hyper's default); more go to hyper, which refuses them.
const MAX_HEADERS: usize = 100;
/// Bytes of the next requests read ahead while one is worked on, at most.
const MAX_AHEAD: usize = 64 * 1024;
/// The response head buffer keeps at most this much capacity between requests.
const KEEP_WRITE: usize = 16 * 1024;
/// After answering a request whose body was not read (too large, too slow), how long the rest
/// of it is read and dropped before the connection closes (closing with unread bytes would
/// reset the connection, and the client might lose the answer).
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1 << 20;

/// How [`serve`] ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The connection is done: close it.
    Closed,
    /// The next request is not one for this path: hyper serves the connection from here, the
    /// read buffer first.
    HandOff,
}

/// Serves requests on `io` while they are `POST /v1/*` ones it can take (see the module doc).
/// `buf` holds what was read and not yet used: on [`Outcome::HandOff`], the next request.
pub async fn serve(
    io: &mut Watched,
    buf: &mut BytesMut,
    state: &GatewayState,
    limits: &Limits,
    drain: &watch::Receiver<bool>,
) -> Outcome {
    let mut map = HeaderMap::new();
    let mut out = Vec::new();
    let mut view = View::new(state);
    let mut handler = None;
    loop {
        if buf.is_empty() && buf.capacity() > KEEP_READ {
            *buf = BytesMut::new();
        }
        let head = loop {
            if !buf.is_empty() {
                match parse(buf, &mut map) {
                    Parsed::Hot(head) => break head,
                    Parsed::Other => return Outcome::HandOff,
                    Parsed::Partial if buf.len() >= MAX_HEAD => return Outcome::HandOff,
                    Parsed::Partial => {}
                    Parsed::Bad(why) => {
                        let _ = reply_plain(io, &mut out, StatusCode::BAD_REQUEST, why).await;
                        return Outcome::Closed;
                    }
                }
            }
            if buf.capacity() - buf.len() < INIT_READ / 4 {
                buf.reserve(INIT_READ);
            }
            match io.read_buf(buf).await {
                Ok(0) | Err(_) => return Outcome::Closed,
                Ok(_) => {}
            }
        };
        let guard = io.activity.request_started();
        view.refresh(state);
        // A body left unread (too large, too slow) ends the connection: what follows it is not
        // a request.
        let mut unread = false;
        let body = match read_body(io, buf, &head, state.max_body_bytes, limits.body_timeout).await
        {
            Some(Ok(b)) => RequestBody::Ready(Some(b)),
            Some(Err(not_read)) => {
                unread = true;
                not_read
            }
            None => return Outcome::Closed,
        };
        let mut req = Request::new(body);
        *req.method_mut() = Method::POST;
        *req.uri_mut() = head.uri;
        *req.headers_mut() = std::mem::take(&mut map);
        // The handler's future is a few KiB: it lives in a box of its own (a connection's
        // future, and so an open stream, does not carry its room), the same box request after
        // request.
        let running = in_box(&mut handler, handle(state, view, req));
        let Some((resp, back)) = unless_closed(running, io, buf).await else {
            return Outcome::Closed;
        };
        view = back;
        let (mut parts, body) = resp.into_parts();
        let close = head.close || unread || draining(drain);
        let framing = encode_head(&mut out, &parts.status, &parts.headers, &body, close);
        if framing == Framing::Chunked {
            // A stream may stay open for minutes: it does not hold the memory the next request
            // would reuse (an empty read buffer, the header map, the handler's box).
            if buf.is_empty() {
                *buf = BytesMut::new();
            }
            handler = None;
            drop(parts);
        } else {
            map = std::mem::take(&mut parts.headers);
            map.clear();
        }
        let finished = write_body(io, buf, &out, framing, body).await;
        drop(guard);
        if out.capacity() > KEEP_WRITE {
            out = Vec::new();
        }
        match finished {
            // A drain that began after this response's head was written (a stream) closes the
            // connection now: the watchdog saw it while the request was in flight, and leaves
            // the rest to this loop.
            Finished::Whole if !close && !draining(drain) => {}
            Finished::Whole if unread => {
                linger(io).await;
                return Outcome::Closed;
            }
            Finished::Whole => {
                let _ = io.shutdown().await;
                return Outcome::Closed;
            }
            Finished::Cut => return Outcome::Closed,
        }
    }
}

/// The gateway's handler for `req`, `view` handed back with the answer: the future borrows
/// nothing of the connection's, so one box can hold each request's in turn.
async fn handle(state: &GatewayState, view: View, req: Request<RequestBody>) -> (Reply, View) {
    let resp = routes::direct(state, &view, req).await;
    (resp, view)
}

/// `fut` in `slot`'s box, the one there before (its future finished) reused.
fn in_box<F: Future>(slot: &mut Option<Pin<Box<F>>>, fut: F) -> Pin<&mut F> {
    match slot.take() {
        Some(mut b) => {
            b.as_mut().set(fut);
            slot.insert(b).as_mut()
        }
        None => slot.insert(Box::pin(fut)).as_mut(),
    }
}

/// Whether shutdown has begun (or the server is gone).
fn draining(drain: &watch::Receiver<bool>) -> bool {
    drain.has_changed().unwrap_or(true)
}

/// A request head this path takes.
struct Head {
    uri: Uri,
    length: u64,
    expect_continue: bool,
    close: bool,
}

enum Parsed {
    Partial,
    /// Not for this path: hyper takes it (nothing was consumed).
    Other,
    /// Taken: its head was consumed, its headers are in the map.
    Hot(Head),
    /// A request this path took but cannot represent (consumed): answered 400.
    Bad(&'static str),
}

/// Parses the request head at the front of `buf`. A `POST /v1/*` HTTP/1.1 request with a
/// `content-length` (or no body) is consumed, its headers put into `map` as slices of the
/// head's bytes; anything else is left for hyper.
fn parse(buf: &mut BytesMut, map: &mut HeaderMap) -> Parsed {
    let mut slots =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Other,
    };
    let (Some("POST"), Some(1), Some(path)) = (req.method, req.version, req.path) else {
        return Parsed::Other;
    };
    if len > usize::from(u16::MAX)
        || !routes::is_v1_post_path(path.split('?').next().unwrap_or(path))
    {
        return Parsed::Other;
    }
    let mut length = None;
    let mut expect_continue = false;
    let mut close = false;
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            let Some(n) = parse_decimal(h.value.trim_ascii()) else {
                return Parsed::Other;
            };
            if length.is_some_and(|l| l != n) {
                return Parsed::Other;
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding")
            || name.eq_ignore_ascii_case(b"upgrade")
        {
            return Parsed::Other;
        } else if name.eq_ignore_ascii_case(b"expect") {
            if !h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue") {
                return Parsed::Other;
            }
            expect_continue = true;
        } else if name.eq_ignore_ascii_case(b"connection") {
            close |= has_token(h.value, b"close");
        }
    }
    // Where each name, value and the path are in the head (which is under 64 KiB), before it
    // is split off the buffer.
    let base = buf.as_ptr() as usize;
    let span = |s: &[u8]| {
        let start = s.as_ptr() as usize - base;
        (start as u16, (start + s.len()) as u16)
    };
    let count = req.headers.len();
    let mut spans = [(0u16, 0u16, 0u16, 0u16); MAX_HEADERS];
    for (slot, h) in spans.iter_mut().zip(req.headers.iter()) {
        let (n0, n1) = span(h.name.as_bytes());
        let (v0, v1) = span(h.value);
        *slot = (n0, n1, v0, v1);
    }
    let (p0, p1) = span(path.as_bytes());
    let head = buf.split_to(len).freeze();
    let range = |a: u16, b: u16| usize::from(a)..usize::from(b);
    map.clear();
    map.reserve(count);
    for &(n0, n1, v0, v1) in &spans[..count] {
        let Ok(name) = HeaderName::from_bytes(&head[range(n0, n1)]) else {
            return Parsed::Bad("a header name is not valid");
        };
        let Ok(value) = HeaderValue::from_maybe_shared(head.slice(range(v0, v1))) else {
            return Parsed::Bad("a header value is not valid");
        };
        map.append(name, value);
    }
    let Ok(uri) = Uri::from_maybe_shared(head.slice(range(p0, p1))) else {
        return Parsed::Bad("the request target is not a valid path");
    };
    Parsed::Hot(Head {
        uri,
        length: length.unwrap_or(0),
        expect_continue,
        close,
    })
}

/// Reads the body `head` announces: `Some(Ok)` the body, `Some(Err)` the request's body as the
/// gateway should see it when it was not read (larger than `max`: refused unread; not all
/// there within `timeout`), `None` when the client went away.
async fn read_body(
    io: &mut Watched,
    buf: &mut BytesMut,
    head: &Head,
    max: usize,
    timeout: Duration,
) -> Option<Result<Bytes, RequestBody>> {
    if head.length > max as u64 {
        return Some(Err(RequestBody::TooLarge(head.length)));
    }
    let n = head.length as usize;
    if buf.len() < n {
        if head.expect_continue {
            io.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.ok()?;
        }
        buf.reserve(n - buf.len());
        let fill = async {
            while buf.len() < n {
                match io.read_buf(buf).await {
                    Ok(0) | Err(_) => return false,
                    Ok(_) => {}
                }
            }
            true
        };
        match tokio::time::timeout(timeout, fill).await {
            Ok(true) => {}
            Ok(false) => return None,
            Err(_) => return Some(Err(RequestBody::Failed(Some(BodyTimeout(timeout))))),
        }
    }
    Some(Ok(buf.split_to(n).freeze()))
}

/// A request body as the gateway reads it: whole, or why it is not there.
pub enum RequestBody {
    Ready(Option<Bytes>),
    /// Larger than `server.max_body` (its length): not read.
    TooLarge(u64),
    /// Did not arrive in time.
    Failed(Option<BodyTimeout>),
}

impl hyper::body::Body for RequestBody {
    type Data = Bytes;
    type Error = BodyTimeout;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyTimeout>>> {
        Poll::Ready(match &mut *self {
            RequestBody::Ready(b) => b.take().map(|b| Ok(Frame::data(b))),
            RequestBody::TooLarge(_) => None,
            RequestBody::Failed(e) => e.take().map(Err),
        })
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, RequestBody::Ready(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Ready(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            RequestBody::TooLarge(n) => SizeHint::with_exact(*n),
            RequestBody::Failed(_) => SizeHint::default(),
        }
    }
}

/// Runs `fut` to its end, unless the client closes the connection first (`None`): a request
/// whose client has gone is dropped, which cancels it upstream. Bytes the client sends
/// meanwhile (its next requests) are kept in `buf`.
async fn unless_closed<F: Future + Unpin>(
    mut fut: F,
    io: &mut Watched,
    buf: &mut BytesMut,
) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = Pin::new(&mut fut).poll(cx) {
            return Poll::Ready(Some(v));
        }
        // With MAX_AHEAD read ahead, the client is not listened to until this request is done.
        while buf.len() < MAX_AHEAD {
            match io.inner.poll_read_ready(cx) {
                Poll::Pending => break,
                Poll::Ready(Err(_)) => return Poll::Ready(None),
                Poll::Ready(Ok(())) => {
                    if buf.capacity() - buf.len() < INIT_READ / 4 {
                        buf.reserve(INIT_READ);
                    }
                    match io.inner.try_read_buf(buf) {
                        Ok(0) => return Poll::Ready(None),
                        Ok(n) => io.activity.read(n),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(_) => return Poll::Ready(None),
                    }
                }
            }
        }
        Poll::Pending
    })
    .await
}

/// How a response body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body (204, 304).
    None,
    Length(u64),
    Chunked,
}

/// Writes the response head into `out` (cleared first) and says how its body is framed:
/// the response's own `content-length`, else the body's exact size, else chunked.
fn encode_head(
    out: &mut Vec<u8>,
    status: &StatusCode,
    headers: &HeaderMap,
    body: &impl hyper::body::Body,
    close: bool,
) -> Framing {
    use std::io::Write;
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let no_body = *status == StatusCode::NO_CONTENT
        || *status == StatusCode::NOT_MODIFIED
        || status.is_informational();
    let mut length = None;
    let mut has_date = false;
    for (name, value) in headers {
        if *name == header::CONNECTION
            || *name == header::TRANSFER_ENCODING
            || name.as_str() == "keep-alive"
        {
            continue;
        }
        if *name == header::CONTENT_LENGTH {
            match parse_decimal(value.as_bytes()) {
                Some(n) if length.is_none() => length = Some(n),
                _ => continue,
            }
        }
        has_date |= *name == header::DATE;
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let framing = if no_body {
        Framing::None
    } else if let Some(n) = length {
        Framing::Length(n)
    } else if let Some(n) = hyper::body::Body::size_hint(body).exact() {
        // Writing into a Vec cannot fail.
        let _ = write!(out, "content-length: {n}\r\n");
        Framing::Length(n)
    } else {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
        Framing::Chunked
    };
    if !has_date {
        out.extend_from_slice(b"date: ");
        date::write(out);
        out.extend_from_slice(b"\r\n");
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    framing
}

/// How the response went out.
enum Finished {
    /// All of it: the connection can serve the next request.
    Whole,
    /// Cut short (the body failed, the client left, or the body did not match its length).
    Cut,
}

/// Writes the head in `out` and the body, each piece as it comes (the head with the first
/// one when that is ready at once); a chunked body's last chunk goes with its last piece.
async fn write_body(
    io: &mut Watched,
    buf: &mut BytesMut,
    out: &[u8],
    framing: Framing,
    mut body: impl hyper::body::Body<Data = Bytes> + Unpin,
) -> Finished {
    if framing == Framing::None || (framing == Framing::Length(0)) {
        return match write_all(io, &mut [IoSlice::new(out)]).await {
            Ok(()) => Finished::Whole,
            Err(_) => Finished::Cut,
        };
    }
    let mut head = Some(out);
    let mut sent: u64 = 0;
    loop {
        let frame = match head {
            Some(h) => {
                // The first piece, if it is there already, goes with the head.
                let first = {
                    let mut cx = Context::from_waker(std::task::Waker::noop());
                    Pin::new(&mut body).poll_frame(&mut cx)
                };
                match first {
                    Poll::Ready(f) => f,
                    Poll::Pending => {
                        if write_all(io, &mut [IoSlice::new(h)]).await.is_err() {
                            return Finished::Cut;
                        }
                        head = None;
                        continue;
                    }
                }
            }
            None => {
                let next = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx));
                match unless_closed(next, io, buf).await {
                    Some(f) => f,
                    None => return Finished::Cut,
                }
            }
        };
        let data = match frame {
            None => Bytes::new(),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if data.is_empty() => continue,
                Ok(data) => data,
                // Trailers are not sent.
                Err(_) => continue,
            },
            Some(Err(_)) => return Finished::Cut,
        };
        let ended = data.is_empty() || body.is_end_stream();
        let mut size = [0u8; 20];
        let (pieces, whole) = match framing {
            Framing::Chunked => {
                let prefix = chunk_size(&mut size, data.len());
                let tail: &[u8] = match (data.is_empty(), ended) {
                    (true, _) => b"0\r\n\r\n",
                    (false, true) => b"\r\n0\r\n\r\n",
                    (false, false) => b"\r\n",
                };
                let prefix: &[u8] = if data.is_empty() { b"" } else { prefix };
                ([prefix, &data[..], tail], true)
            }
            Framing::Length(n) => {
                let room = n.saturating_sub(sent);
                let take = data.len().min(usize::try_from(room).unwrap_or(usize::MAX));
                sent += take as u64;
                // More than announced, or less at the end: the connection cannot go on.
                let whole = take == data.len() && (!ended || sent == n);
                ([&b""[..], &data[..take], &b""[..]], whole)
            }
            Framing::None => return Finished::Whole,
        };
        let mut slices = [
            IoSlice::new(head.take().unwrap_or(&[])),
            IoSlice::new(pieces[0]),
            IoSlice::new(pieces[1]),
            IoSlice::new(pieces[2]),
        ];
        if write_all(io, &mut slices).await.is_err() || !whole {
            return Finished::Cut;
        }
        if ended || framing == Framing::Length(sent) {
            return Finished::Whole;
        }
    }
}

/// `len` in hex with its CRLF, written into `out`.
fn chunk_size(out: &mut [u8; 20], len: usize) -> &[u8] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut i = out.len() - 2;
    out[i] = b'\r';
    out[i + 1] = b'\n';
    let mut n = len;
    loop {
        i -= 1;
        out[i] = HEX[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    &out[i..]
}

async fn write_all(io: &mut Watched, mut slices: &mut [IoSlice<'_>]) -> std::io::Result<()> {
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        let n = io.write_vectored(slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, n);
    }
    Ok(())
}

/// Answers a request this path cannot serve with a plain-text error, closing the connection.
async fn reply_plain(
    io: &mut Watched,
    out: &mut Vec<u8>,
    status: StatusCode,
    why: &str,
) -> std::io::Result<()> {
    use std::io::Write;
    out.clear();
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\ndate: ",
        status.as_str(),
        status.canonical_reason().unwrap_or(""),
        why.len()
    );
    date::write(out);
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(why.as_bytes());
    io.write_all(out).await?;
    linger(io).await;
    Ok(())
}

/// Closes the sending side and reads what the client still sends, for a short while, so that
/// the close does not reset the connection under the answer just written.
async fn linger(io: &mut Watched) {
    if io.shutdown().await.is_err() {
        return;
    }
    let drain = async {
        // On the heap: a connection's future does not carry it.
        let mut scratch = vec![0u8; 4096];
        let mut read = 0;
        while read < LINGER_BYTES {
            match io.read(&mut scratch).await {
                Ok(0) | Err(_) => return,
                Ok(n) => read += n,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// The `date` header's value, formatted once a second per thread.
mod date {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};

    thread_local! {
        static CACHED: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }

    pub fn write(out: &mut Vec<u8>) {
        let now = SystemTime::now();
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        CACHED.with(|c| {
            let mut c = c.borrow_mut();
            if c.0 != secs {
                *c = (secs, httpdate::fmt_http_date(now));
            }
            out.extend_from_slice(c.1.as_bytes());
        });
    }
}

#[cfg(test)]
#[path = "front_tests.rs"]
mod tests;
