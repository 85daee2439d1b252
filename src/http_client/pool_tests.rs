//! The pool against real servers: axum (hyper's server, an HTTP/1 implementation that is not
//! ours) for the framings, and scripted sockets for the faults (a connection closed while idle,
//! closed as the request goes out, a client that leaves mid-stream).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::routing::post;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

fn request(path: &str, body: &'static str) -> http::Request<Bytes> {
    let mut req = http::Request::new(Bytes::from_static(body.as_bytes()));
    *req.method_mut() = http::Method::POST;
    *req.uri_mut() = path.parse().expect("a path");
    req.headers_mut().insert(
        http::header::HOST,
        http::HeaderValue::from_static("upstream"),
    );
    req
}

async fn read_all(
    resp: http::Response<PooledBody>,
) -> (http::StatusCode, http::HeaderMap, Vec<u8>) {
    let (parts, body) = resp.into_parts();
    let bytes = tokio::time::timeout(Duration::from_secs(10), body.collect())
        .await
        .expect("the body in time")
        .expect("a whole body")
        .to_bytes();
    (parts.status, parts.headers, bytes.to_vec())
}

/// An axum upstream that counts its connections.
async fn axum_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let router = axum::Router::new()
        .route("/v1/echo", post(|body: Bytes| async move { body }))
        .route(
            "/v1/stream",
            post(|| async {
                let chunks = (0..5).map(|i| Ok::<_, std::io::Error>(format!("data: {i}\n\n")));
                let mut resp =
                    axum::response::Response::new(Body::from_stream(tokio_stream::iter(chunks)));
                resp.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("text/event-stream"),
                );
                resp
            }),
        )
        .route("/v1/empty", post(|| async { http::StatusCode::NO_CONTENT }));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let conns = Arc::new(AtomicUsize::new(0));
    let counted = conns.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            counted.fetch_add(1, Ordering::SeqCst);
            let service = hyper_util::service::TowerToHyperService::new(router.clone());
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service),
            );
        }
    });
    (addr, conns)
}

#[tokio::test]
async fn bodies_of_every_framing_arrive_whole_on_one_kept_alive_connection() {
    let (addr, conns) = axum_upstream().await;
    let pool = Pool::plain(addr, Settings::UPSTREAM);
    for round in 0..3 {
        let (status, _, body) = read_all(
            pool.send(request("/v1/echo", r#"{"model":"m"}"#))
                .await
                .expect("echo"),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(body, br#"{"model":"m"}"#, "round {round}");
        let (status, headers, body) = read_all(
            pool.send(request("/v1/stream", "{}"))
                .await
                .expect("stream"),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(headers["transfer-encoding"], "chunked");
        assert_eq!(
            String::from_utf8(body).unwrap(),
            "data: 0\n\ndata: 1\n\ndata: 2\n\ndata: 3\n\ndata: 4\n\n"
        );
        // A 204 is never polled by hyper's server: dropping it gives its connection back.
        let resp = pool.send(request("/v1/empty", "{}")).await.expect("empty");
        assert_eq!(resp.status(), 204);
        assert!(hyper::body::Body::is_end_stream(resp.body()));
        drop(resp);
    }
    assert_eq!(
        conns.load(Ordering::SeqCst),
        1,
        "one connection, kept alive"
    );
}

#[tokio::test]
async fn the_origin_form_of_an_http_upstream_resolves_its_host() {
    let (addr, _) = axum_upstream().await;
    let origin: http::Uri = format!("http://localhost:{}/", addr.port())
        .parse()
        .unwrap();
    let pool = Pool::to_origin(origin, Settings::UPSTREAM);
    let (status, _, body) =
        read_all(pool.send(request("/v1/echo", "hi")).await.expect("echo")).await;
    assert_eq!((status.as_u16(), &body[..]), (200, &b"hi"[..]));
}

/// A scripted upstream: for each accepted connection, `script` says how many requests to
/// answer (with `ok`) before closing it, and whether to close right after reading the next
/// request without answering it.
async fn scripted(script: Vec<(usize, bool)>) -> (SocketAddr, tokio::task::JoinHandle<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let mut served = 0;
        for (answers, then_swallow) in script {
            let (mut tcp, _) = listener.accept().await.expect("accept");
            let mut buf = vec![0u8; 4096];
            for _ in 0..answers {
                read_request(&mut tcp, &mut buf).await;
                tcp.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await
                    .expect("write");
                served += 1;
            }
            if then_swallow {
                read_request(&mut tcp, &mut buf).await;
            }
            drop(tcp);
        }
        served
    });
    (addr, task)
}

/// An upstream that accepts one connection, reads its request and writes `answer`; the
/// connection is handed back, open, once written.
async fn answer_once(
    answer: &'static [u8],
) -> (SocketAddr, tokio::task::JoinHandle<tokio::net::TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.expect("accept");
        read_request(&mut tcp, &mut vec![0u8; 4096]).await;
        tcp.write_all(answer).await.expect("write");
        tcp
    });
    (addr, task)
}

/// Reads one small request (its head and body arrive in one write).
async fn read_request(tcp: &mut tokio::net::TcpStream, buf: &mut [u8]) {
    let n = tcp.read(buf).await.expect("read");
    assert!(n > 0, "a request");
    assert!(buf[..n].starts_with(b"POST /v1/x HTTP/1.1\r\n"));
}

#[tokio::test]
async fn a_connection_closed_while_idle_is_not_used() {
    // The first connection answers once and closes; the second answers the rest.
    let (addr, served) = scripted(vec![(1, false), (2, false)]).await;
    let pool = Pool::plain(addr, Settings::UPSTREAM);
    for _ in 0..3 {
        let (status, _, body) =
            read_all(pool.send(request("/v1/x", "{}")).await.expect("sent")).await;
        assert_eq!((status.as_u16(), &body[..]), (200, &b"ok"[..]));
        tokio::task::yield_now().await;
    }
    assert_eq!(served.await.unwrap(), 3);
}

#[tokio::test]
async fn a_request_the_upstream_closed_under_goes_again_once_on_a_new_connection() {
    // The first connection answers once, then takes the next request and closes without a
    // word (it closed as the request went out); the second connection answers it.
    let (addr, served) = scripted(vec![(1, true), (1, false)]).await;
    let pool = Pool::plain(addr, Settings::UPSTREAM);
    let (status, _, _) = read_all(pool.send(request("/v1/x", "{}")).await.expect("first")).await;
    assert_eq!(status, 200);
    let (status, _, body) =
        read_all(pool.send(request("/v1/x", "{}")).await.expect("retried")).await;
    assert_eq!((status.as_u16(), &body[..]), (200, &b"ok"[..]));
    assert_eq!(served.await.unwrap(), 2);
}

#[tokio::test]
async fn a_new_connection_closed_without_an_answer_is_an_error() {
    let (addr, served) = scripted(vec![(0, true)]).await;
    let pool = Pool::plain(addr, Settings::UPSTREAM);
    let err = pool
        .send(request("/v1/x", "{}"))
        .await
        .expect_err("no answer");
    assert!(
        err.to_string()
            .contains("closed the connection before answering"),
        "{err}"
    );
    assert_eq!(served.await.unwrap(), 0);
}

#[tokio::test]
async fn a_body_dropped_mid_stream_closes_its_connection() {
    let (addr, upstream) =
        answer_once(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n").await;
    let upstream = tokio::spawn(async move {
        let mut tcp = upstream.await.expect("answered");
        // The client leaves: this read ends (EOF) instead of waiting for ever.
        tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut [0u8; 64]))
            .await
            .expect("the connection closed in time")
            .expect("read")
    });
    let pool = Pool::plain(addr, Settings::UPSTREAM);
    let mut body = pool
        .send(request("/v1/x", "{}"))
        .await
        .expect("sent")
        .into_body();
    let first = body.frame().await.expect("a frame").expect("data");
    assert_eq!(first.into_data().unwrap(), "first");
    drop(body);
    assert_eq!(
        upstream.await.unwrap(),
        0,
        "the upstream sees the end at once"
    );
    assert!(pool.lane().is_empty(), "nothing pooled");
}

#[tokio::test]
async fn a_response_cut_short_is_an_error_not_a_short_body() {
    // The handle is dropped: the connection closes once the answer is written.
    let (addr, _) = answer_once(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nonly").await;
    let pool = Pool::plain(addr, Settings::UPSTREAM);
    let resp = pool.send(request("/v1/x", "{}")).await.expect("head");
    let err = resp.into_body().collect().await.expect_err("cut short");
    assert!(
        err.to_string().contains("in the middle of its response"),
        "{err}"
    );
}
