use super::*;

fn parsed(text: &str) -> (Parsed, HeaderMap, BytesMut) {
    let mut buf = BytesMut::from(text.as_bytes());
    let mut map = HeaderMap::new();
    let p = parse(&mut buf, &mut map);
    (p, map, buf)
}

const CHAT: &str = "POST /v1/chat/completions HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nX-Custom: a b\r\nx-custom: c\r\n\r\n{}";

#[test]
fn a_v1_post_is_taken_its_headers_kept_and_the_body_left_in_the_buffer() {
    let (p, map, rest) = parsed(CHAT);
    let Parsed::Hot(head) = p else {
        panic!("not taken")
    };
    assert_eq!(head.uri.path(), "/v1/chat/completions");
    assert_eq!(head.length, 2);
    assert!(!head.close && !head.expect_continue);
    assert_eq!(&rest[..], b"{}", "the body stays in the buffer");
    assert_eq!(map["host"], "h");
    let custom: Vec<_> = map.get_all("x-custom").iter().collect();
    assert_eq!(custom, ["a b", "c"], "repeated headers kept in order");
    assert_eq!(map.len(), 4);
}

#[test]
fn which_requests_are_taken_and_which_go_to_hyper() {
    let taken = |text: &str| match parsed(text).0 {
        Parsed::Hot(h) => Some((h.length, h.close, h.expect_continue, h.uri.to_string())),
        Parsed::Other => None,
        Parsed::Partial => panic!("partial: {text:?}"),
        Parsed::Bad(why) => panic!("bad ({why}): {text:?}"),
    };
    let req = |line: &str, headers: &str| format!("{line}\r\n{headers}\r\n");
    let v1 = "POST /v1/embeddings HTTP/1.1";
    assert_eq!(
        taken(&req(v1, "")),
        Some((0, false, false, "/v1/embeddings".into())),
        "no length: no body"
    );
    assert_eq!(
        taken(&req("POST /v1/x/y?a=1 HTTP/1.1", "content-length: 5\r\n")),
        Some((5, false, false, "/v1/x/y?a=1".into()))
    );
    assert_eq!(
        taken(&req(v1, "Connection: keep-alive, Close\r\n")),
        Some((0, true, false, "/v1/embeddings".into()))
    );
    assert_eq!(
        taken(&req(v1, "Expect: 100-Continue\r\ncontent-length: 1\r\n")),
        Some((1, false, true, "/v1/embeddings".into()))
    );
    assert_eq!(
        taken(&req(v1, "content-length: 7\r\nContent-Length: 7\r\n")),
        Some((7, false, false, "/v1/embeddings".into())),
        "the same length twice is one length"
    );
    for (line, headers) in [
        ("GET /v1/embeddings HTTP/1.1", ""),
        ("POST /v1/embeddings HTTP/1.0", "content-length: 1\r\n"),
        ("POST /v1/models HTTP/1.1", ""),
        ("POST /v1/models/x HTTP/1.1", ""),
        ("POST /v1/ HTTP/1.1", ""),
        ("POST /api/slots HTTP/1.1", ""),
        ("POST http://h/v1/embeddings HTTP/1.1", ""),
        (v1, "transfer-encoding: chunked\r\n"),
        (v1, "content-length: 1\r\ncontent-length: 2\r\n"),
        (v1, "content-length: -1\r\n"),
        (v1, "content-length: 1,1\r\n"),
        (v1, "expect: other\r\n"),
        (v1, "upgrade: h2c\r\n"),
        (v1, "bad header\r\n"),
    ] {
        assert_eq!(taken(&req(line, headers)), None, "{line} {headers:?}");
    }
    let many: String = (0..=MAX_HEADERS).map(|i| format!("x-{i}: 1\r\n")).collect();
    assert_eq!(
        taken(&req(v1, &many)),
        None,
        "too many headers: hyper refuses them"
    );
}

#[test]
fn a_head_cut_anywhere_is_partial_and_nothing_is_consumed() {
    for cut in 0..CHAT.len() - 2 {
        let (p, _, rest) = parsed(&CHAT[..cut]);
        assert!(matches!(p, Parsed::Partial), "cut at {cut}");
        assert_eq!(rest.len(), cut);
    }
}

#[test]
fn chunk_sizes_are_hex_with_crlf() {
    let mut b = [0u8; 20];
    for (n, want) in [
        (0, "0\r\n"),
        (1, "1\r\n"),
        (15, "f\r\n"),
        (16, "10\r\n"),
        (4096, "1000\r\n"),
        (usize::MAX, "ffffffffffffffff\r\n"),
    ] {
        assert_eq!(chunk_size(&mut b, n), want.as_bytes(), "{n}");
    }
}

fn head(
    status: u16,
    headers: &[(&str, &str)],
    body: axum::body::Body,
    close: bool,
) -> (String, Framing) {
    let mut map = HeaderMap::new();
    for (n, v) in headers {
        map.append(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    let mut out = Vec::new();
    let f = encode_head(
        &mut out,
        &StatusCode::from_u16(status).unwrap(),
        &map,
        &body,
        close,
    );
    (String::from_utf8(out).unwrap(), f)
}

#[test]
fn a_response_is_framed_by_its_length_its_size_or_chunks() {
    let streamed = || {
        axum::body::Body::from_stream(
            futures_util::stream::empty::<Result<Bytes, std::io::Error>>(),
        )
    };
    // Its own length (a proxied answer), the hop-by-hop headers dropped.
    let (text, f) = head(
        200,
        &[
            ("content-type", "application/json"),
            ("content-length", "12"),
            ("connection", "keep-alive"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
        ],
        streamed(),
        false,
    );
    assert_eq!(f, Framing::Length(12));
    assert!(
        text.starts_with(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 12\r\ndate: "
        ),
        "{text}"
    );
    assert!(text.ends_with(" GMT\r\n\r\n"), "{text}");
    assert!(
        !text.contains("keep-alive") && !text.contains("chunked") && !text.contains("connection"),
        "{text}"
    );
    // The body's exact size (an error made here).
    let (text, f) = head(404, &[], axum::body::Body::from("{\"e\":1}"), true);
    assert_eq!(f, Framing::Length(7));
    assert!(
        text.starts_with("HTTP/1.1 404 Not Found\r\ncontent-length: 7\r\ndate: "),
        "{text}"
    );
    assert!(text.ends_with("\r\nconnection: close\r\n\r\n"), "{text}");
    // Unknown size: chunked; a date of its own is kept.
    let (text, f) = head(200, &[("date", "then")], streamed(), false);
    assert_eq!(f, Framing::Chunked);
    assert_eq!(
        text,
        "HTTP/1.1 200 OK\r\ndate: then\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    // No body at all.
    let (text, f) = head(204, &[], streamed(), false);
    assert_eq!(f, Framing::None);
    assert!(
        !text.contains("content-length") && !text.contains("chunked"),
        "{text}"
    );
}

#[test]
fn the_request_body_reads_as_the_gateway_expects() {
    use http_body_util::BodyExt;
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let ready = RequestBody::Ready(Some(Bytes::from_static(b"{}")));
        assert_eq!(hyper::body::Body::size_hint(&ready).exact(), Some(2));
        assert_eq!(ready.collect().await.unwrap().to_bytes(), "{}");
        let large = RequestBody::TooLarge(1 << 40);
        assert_eq!(hyper::body::Body::size_hint(&large).exact(), Some(1 << 40));
        let late = RequestBody::Failed(Some(BodyTimeout(Duration::from_secs(3))));
        let e = late.collect().await.err().unwrap();
        assert!(e.to_string().contains("body_timeout"), "{e}");
    });
}
