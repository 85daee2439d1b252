use super::*;

fn head_of(raw: &str, method: &Method) -> Result<Option<Head>, H1Error> {
    let mut buf = BytesMut::from(raw);
    parse_head(&mut buf, method, &mut HeaderMap::new())
}

fn head(raw: &str) -> Head {
    head_of(raw, &Method::POST)
        .expect("a valid head")
        .expect("a complete head")
}

/// Decodes `body` fed to the decoder in pieces of `step` bytes; the data and whether it ended.
fn decode_in_pieces(mut framing: Framing, body: &[u8], step: usize) -> (Vec<u8>, bool) {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in body.chunks(step.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match decode(&mut framing, &mut buf).expect("a valid body") {
                Step::Data(d) => out.extend_from_slice(&d),
                Step::NeedMore => break,
                Step::End => return (out, true),
            }
        }
    }
    (out, false)
}

#[test]
fn framing_follows_rfc_9112() {
    let h = head("HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n");
    assert_eq!(h.framing, Framing::Length(12));
    assert!(h.keep_alive);
    let h = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\ncontent-length: 5\r\n\r\n");
    assert_eq!(h.framing, Framing::Chunked(Chunked::Size), "chunked wins");
    let h = head("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n");
    assert_eq!(h.framing, Framing::Eof, "not chunked last: until the end");
    assert!(
        !h.keep_alive,
        "a body delimited by the end cannot keep the connection"
    );
    let h = head("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n");
    assert_eq!(h.framing, Framing::Chunked(Chunked::Size));
    let h = head("HTTP/1.1 204 No Content\r\ncontent-length: 7\r\n\r\n");
    assert_eq!(h.framing, Framing::Empty);
    let h = head("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
    assert_eq!(h.framing, Framing::Empty);
    let h = head("HTTP/1.1 200 OK\r\n\r\n");
    assert_eq!(h.framing, Framing::Eof);
    let h = head_of(
        "HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n",
        &Method::HEAD,
    )
    .unwrap()
    .unwrap();
    assert_eq!(h.framing, Framing::Empty);
    let h = head("HTTP/1.1 200 OK\r\ncontent-length: 4, 4\r\n\r\n");
    assert_eq!(h.framing, Framing::Length(4));
    assert!(matches!(
        head_of(
            "HTTP/1.1 200 OK\r\ncontent-length: 4, 5\r\n\r\n",
            &Method::POST
        ),
        Err(H1Error::Malformed(_))
    ));
    assert!(matches!(
        head_of(
            "HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
            &Method::POST
        ),
        Err(H1Error::Malformed(_))
    ));
}

#[test]
fn keep_alive_follows_the_version_and_connection_header() {
    assert!(!head("HTTP/1.1 200 OK\r\nconnection: Close\r\ncontent-length: 0\r\n\r\n").keep_alive);
    assert!(!head("HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n").keep_alive);
    assert!(
        head("HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 0\r\n\r\n").keep_alive
    );
    assert_eq!(
        head("HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n").version,
        Version::HTTP_10
    );
}

#[test]
fn a_head_is_parsed_once_complete_and_interim_responses_are_skipped() {
    let raw = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nx-a: 1\r\nX-A: 2\r\ncontent-type: text/event-stream\r\ncontent-length: 3\r\n\r\nabc";
    for cut in 0..raw.len() - 3 {
        let mut buf = BytesMut::from(&raw[..cut]);
        let r = parse_head(&mut buf, &Method::POST, &mut HeaderMap::new()).expect("valid so far");
        assert!(r.is_none(), "complete at {cut} of {}?", raw.len());
    }
    let mut buf = BytesMut::from(raw);
    let h = parse_head(&mut buf, &Method::POST, &mut HeaderMap::new())
        .unwrap()
        .unwrap();
    assert_eq!(h.status, StatusCode::CREATED);
    let values: Vec<_> = h.headers.get_all("x-a").iter().collect();
    assert_eq!(values, ["1", "2"], "repeated headers are kept in order");
    assert_eq!(h.headers["content-type"], "text/event-stream");
    assert_eq!(&buf[..], b"abc", "the body stays in the buffer");
}

#[test]
fn bad_heads_are_refused() {
    assert!(matches!(
        head_of("HTTP/1.1 OK\r\n\r\n", &Method::POST),
        Err(H1Error::Malformed(_))
    ));
    assert!(matches!(
        head_of("HTTP/1.1 101 Switching\r\n\r\n", &Method::POST),
        Err(H1Error::Malformed(_))
    ));
    let many: String = (0..MAX_HEADERS + 1)
        .map(|i| format!("x-{i}: v\r\n"))
        .collect();
    assert!(matches!(
        head_of(&format!("HTTP/1.1 200 OK\r\n{many}\r\n"), &Method::POST),
        Err(H1Error::HeadTooLarge)
    ));
}

#[test]
fn chunked_bodies_decode_whatever_the_pieces() {
    let body = b"5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\ntrailer: x\r\n\r\n";
    for step in 1..=body.len() {
        let (data, ended) = decode_in_pieces(Framing::Chunked(Chunked::Size), body, step);
        assert!(ended, "step {step}");
        assert_eq!(data, b"helloabcdefghijklmnopqrstuvwxyz", "step {step}");
    }
    // Bare LF line endings are read too.
    let (data, ended) = decode_in_pieces(Framing::Chunked(Chunked::Size), b"3\nabc\r\n0\n\n", 2);
    assert!(ended);
    assert_eq!(data, b"abc");
}

#[test]
fn bad_chunked_bodies_are_errors() {
    for bad in [&b"zz\r\n"[..], b"3\r\nabcX\r\n", b"1234567890123456\r\n"] {
        let mut framing = Framing::Chunked(Chunked::Size);
        let mut buf = BytesMut::from(bad);
        let r = (0..4).try_for_each(|_| decode(&mut framing, &mut buf).map(|_| ()));
        assert!(
            matches!(r, Err(H1Error::Malformed(_))),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    let mut framing = Framing::Chunked(Chunked::Size);
    let mut buf = BytesMut::from(&vec![b'1'; MAX_LINE + 1][..]);
    assert!(matches!(
        decode(&mut framing, &mut buf),
        Err(H1Error::Malformed(_))
    ));
}

#[test]
fn length_bodies_stop_at_their_length() {
    let (data, ended) = decode_in_pieces(Framing::Length(5), b"hello", 2);
    assert!(ended || data.len() == 5);
    assert_eq!(data, b"hello");
    let mut framing = Framing::Length(3);
    let mut buf = BytesMut::from(&b"abcHTTP/1.1"[..]);
    assert_eq!(
        decode(&mut framing, &mut buf).unwrap(),
        Step::Data(Bytes::from_static(b"abc"))
    );
    assert!(framing.is_end());
    assert_eq!(&buf[..], b"HTTP/1.1", "the rest is not the body's");
}

#[test]
fn the_request_head_names_the_length_once() {
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("127.0.0.1:9"));
    headers.insert("content-length", HeaderValue::from_static("999"));
    headers.append("x-b", HeaderValue::from_static("1"));
    headers.append("x-b", HeaderValue::from_static("2"));
    let mut out = Vec::new();
    encode_head(
        &mut out,
        &Method::POST,
        "/v1/chat/completions?a=1",
        &headers,
        11,
    );
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "POST /v1/chat/completions?a=1 HTTP/1.1\r\nhost: 127.0.0.1:9\r\nx-b: 1\r\nx-b: 2\r\ncontent-length: 11\r\n\r\n"
    );
    let mut out = Vec::new();
    encode_head(&mut out, &Method::GET, "/v1/models", &HeaderMap::new(), 0);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "GET /v1/models HTTP/1.1\r\n\r\n"
    );
    let mut out = Vec::new();
    encode_head(&mut out, &Method::POST, "/x", &HeaderMap::new(), 0);
    assert!(
        String::from_utf8(out)
            .unwrap()
            .contains("content-length: 0\r\n")
    );
}

/// A real socket: a request goes out as written, a chunked answer comes back in pieces, the
/// connection is reusable after it and not once the server has closed it.
#[tokio::test]
async fn a_connection_is_reused_until_the_server_closes_it() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        for answer in [
            &b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\ndata\r\n"[..],
            b"0\r\n\r\n",
        ] {
            let mut buf = [0u8; 1024];
            if got.is_empty() {
                let n = s.read(&mut buf).await.unwrap();
                got.extend_from_slice(&buf[..n]);
            }
            s.write_all(answer).await.unwrap();
        }
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).await.unwrap();
        got.extend_from_slice(&buf[..n]);
        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
            .await
            .unwrap();
        drop(s);
        got
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut conn = Conn::new(tcp);
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("up"));
    for (i, want) in [(0, &b"data"[..]), (1, b"ok")] {
        conn.write_request(&Method::POST, "/v1/x", &headers, &Bytes::from_static(b"{}"))
            .await
            .unwrap();
        let mut map = headers.clone();
        let mut head = conn.read_head(&Method::POST, &mut map).await.unwrap();
        let mut body = Vec::new();
        while let Some(piece) =
            std::future::poll_fn(|cx| conn.poll_body(&mut head.framing, cx)).await
        {
            body.extend_from_slice(&piece.unwrap());
        }
        assert_eq!(body, want, "response {i}");
        assert_eq!(head.keep_alive, i == 0);
        if i == 0 {
            assert!(conn.is_reusable(), "an open, quiet connection");
        }
    }
    let got = server.await.unwrap();
    let got = String::from_utf8(got).unwrap();
    assert_eq!(
        got.matches("POST /v1/x HTTP/1.1\r\nhost: up\r\ncontent-length: 2\r\n\r\n{}")
            .count(),
        2,
        "{got}"
    );
    // The server is gone: the connection says so without being read by anyone.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while conn.is_reusable() {
        assert!(
            std::time::Instant::now() < deadline,
            "still reusable after the close"
        );
        tokio::task::yield_now().await;
    }
}
