//! Accepting gRPC clients whatever `:authority` they send on our unix socket.
//!
//! The HTTP/2 server under tonic (h2) refuses a request whose `:authority` is not a valid URI
//! authority with RST_STREAM PROTOCOL_ERROR, and gRPC C-core clients (Python's grpcio, Ruby,
//! PHP, grpc-java with a domain socket, ...) dialing `unix:PATH` send the socket path, or its
//! %-encoding, as `:authority`. The kubelet sends `localhost`. The authority means nothing on
//! a unix socket, so each connection is relayed through [`relay`], which decodes every header
//! block the client sends (HPACK, with the client's dynamic table), replaces an `:authority`
//! that is not a valid authority by `localhost`, and encodes the block again as literals
//! (never indexed, so the server's dynamic table stays empty and in step). Every other frame,
//! and everything the server sends, passes through unchanged.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The HTTP/2 client connection preface.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Frame types and flags we look at (RFC 9113 section 6).
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The smallest SETTINGS_MAX_FRAME_SIZE a server may announce: frames we write stay within it.
const MAX_FRAME: usize = 16_384;
/// Bound on one header block, HEADERS plus CONTINUATIONs (the kubelet sends a few hundred
/// bytes).
const MAX_BLOCK: usize = 1 << 20;
/// Bound on the client's HPACK dynamic table (the server announces 4096).
const MAX_TABLE: usize = 1 << 16;
/// What an unusable `:authority` becomes: what the kubelet sends.
pub const REPLACEMENT: &str = "localhost";

#[derive(Debug, thiserror::Error)]
pub enum AuthorityError {
    #[error("the client did not open with the HTTP/2 preface")]
    NoPreface,
    #[error("a header block of more than {MAX_BLOCK} bytes")]
    BlockTooLarge,
    #[error("a {0:#x} frame inside a header block")]
    InterleavedFrame(u8),
    #[error("a malformed HEADERS frame (padding or priority beyond its payload)")]
    MalformedHeaders,
    #[error("the client's header block cannot be decoded: {0}")]
    Hpack(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Whether `value` is an authority h2 accepts as is.
fn valid_authority(value: &[u8]) -> bool {
    http::uri::Authority::try_from(value).is_ok()
}

/// Appends an HPACK integer with an `n`-bit prefix; `first` holds the bits above the prefix.
fn put_int(out: &mut Vec<u8>, first: u8, n: u32, value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    let mut rest = value - max;
    while rest >= 0x80 {
        out.push((rest & 0x7f) as u8 | 0x80);
        rest >>= 7;
    }
    out.push(rest as u8);
}

/// Appends a string literal without Huffman coding.
fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    put_int(out, 0, 7, s.len());
    out.extend_from_slice(s);
}

/// Re-encodes a decoded header list as "literal never indexed, new name" fields, with an
/// unusable `:authority` replaced.
fn encode(headers: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in headers {
        let value: &[u8] = if name == b":authority" && !valid_authority(value) {
            REPLACEMENT.as_bytes()
        } else {
            value
        };
        out.push(0x10);
        put_str(&mut out, name);
        put_str(&mut out, value);
    }
    out
}

/// One client→server header block being collected from HEADERS + CONTINUATION frames.
struct Block {
    stream: u32,
    /// END_STREAM and PRIORITY from the HEADERS frame.
    flags: u8,
    /// The 5 priority bytes, when PRIORITY is set.
    priority: Vec<u8>,
    fragment: Vec<u8>,
}

/// The client→server half: frames are parsed, header blocks re-encoded.
struct Rewriter {
    decoder: loona_hpack::Decoder<'static>,
    block: Option<Block>,
}

impl Rewriter {
    fn new() -> Self {
        let mut decoder = loona_hpack::Decoder::new();
        decoder.set_max_allowed_table_size(MAX_TABLE);
        Rewriter {
            decoder,
            block: None,
        }
    }

    /// Handles one frame from the client; appends what the server gets to `out`.
    fn frame(
        &mut self,
        kind: u8,
        flags: u8,
        stream: u32,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), AuthorityError> {
        match (&mut self.block, kind) {
            (None, HEADERS) => {
                let mut body = payload;
                let mut pad = 0usize;
                if flags & PADDED != 0 {
                    let (&n, rest) = body.split_first().ok_or(AuthorityError::MalformedHeaders)?;
                    pad = usize::from(n);
                    body = rest;
                }
                let mut priority = Vec::new();
                if flags & PRIORITY != 0 {
                    if body.len() < 5 {
                        return Err(AuthorityError::MalformedHeaders);
                    }
                    priority = body[..5].to_vec();
                    body = &body[5..];
                }
                if pad > body.len() {
                    return Err(AuthorityError::MalformedHeaders);
                }
                let block = Block {
                    stream,
                    flags: flags & (END_STREAM | PRIORITY),
                    priority,
                    fragment: body[..body.len() - pad].to_vec(),
                };
                self.block = Some(block);
            }
            (Some(block), CONTINUATION) if block.stream == stream => {
                if block.fragment.len() + payload.len() > MAX_BLOCK {
                    return Err(AuthorityError::BlockTooLarge);
                }
                block.fragment.extend_from_slice(payload);
            }
            (Some(_), other) => return Err(AuthorityError::InterleavedFrame(other)),
            (None, _) => {
                put_frame_header(out, payload.len(), kind, flags, stream);
                out.extend_from_slice(payload);
                return Ok(());
            }
        }
        if flags & END_HEADERS != 0
            && let Some(block) = self.block.take()
        {
            self.finish(block, out)?;
        }
        Ok(())
    }

    fn finish(&mut self, block: Block, out: &mut Vec<u8>) -> Result<(), AuthorityError> {
        let headers = self
            .decoder
            .decode(&block.fragment)
            .map_err(|e| AuthorityError::Hpack(format!("{e:?}")))?;
        if let Some((_, value)) = headers
            .iter()
            .find(|(n, v)| n == b":authority" && !valid_authority(v))
        {
            tracing::debug!(
                authority = %String::from_utf8_lossy(value),
                "a client sent an :authority that is not an authority; serving it as {REPLACEMENT}"
            );
        }
        let mut encoded = block.priority;
        encoded.extend_from_slice(&encode(&headers));
        let mut chunks = encoded.chunks(MAX_FRAME).peekable();
        let mut first = true;
        // An empty block still needs its HEADERS frame.
        let empty: &[u8] = &[];
        let mut next = chunks.next().or(Some(empty));
        while let Some(chunk) = next {
            next = chunks.next();
            let last = if next.is_none() { END_HEADERS } else { 0 };
            if first {
                put_frame_header(out, chunk.len(), HEADERS, block.flags | last, block.stream);
                first = false;
            } else {
                put_frame_header(out, chunk.len(), CONTINUATION, last, block.stream);
            }
            out.extend_from_slice(chunk);
        }
        Ok(())
    }
}

fn put_frame_header(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: u32) {
    let len = u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes();
    out.extend_from_slice(&len[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
}

/// Copies the client's bytes to the server, re-encoding its header blocks.
async fn client_to_server<R, W>(mut client: R, mut server: W) -> Result<(), AuthorityError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut preface = [0u8; PREFACE.len()];
    match client.read_exact(&mut preface).await {
        Ok(_) => {}
        // A client that connects and leaves is no error.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    if preface != PREFACE {
        return Err(AuthorityError::NoPreface);
    }
    server.write_all(PREFACE).await?;
    let mut rewriter = Rewriter::new();
    let mut out = Vec::new();
    let mut payload = Vec::new();
    loop {
        let mut header = [0u8; 9];
        match client.read_exact(&mut header).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
        let stream = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff;
        payload.resize(len, 0);
        client.read_exact(&mut payload).await?;
        out.clear();
        rewriter.frame(header[3], header[4], stream, &payload, &mut out)?;
        if !out.is_empty() {
            server.write_all(&out).await?;
        }
    }
}

/// Relays one client connection to the gRPC server's end of it until either side is done.
pub async fn relay<C, S>(client: C, server: S)
where
    C: AsyncRead + AsyncWrite + Send + 'static,
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (client_read, mut client_write) = tokio::io::split(client);
    let (mut server_read, mut server_write) = tokio::io::split(server);
    let upstream = async {
        let result = client_to_server(client_read, &mut server_write).await;
        // The client is done (or broke the protocol): the server sees the end of its input.
        let _ = server_write.shutdown().await;
        result
    };
    let downstream = async {
        let result = tokio::io::copy(&mut server_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
        result
    };
    tokio::pin!(upstream, downstream);
    tokio::select! {
        result = &mut upstream => {
            if let Err(e) = result {
                tracing::warn!(error = %e, "closing a gRPC connection");
            }
            // Let the server finish answering what it has, then close.
            let _ = downstream.await;
        }
        // The server closed the connection: nothing more to relay either way.
        _ = &mut downstream => {}
    }
}

#[cfg(test)]
#[path = "authority_tests.rs"]
mod tests;
