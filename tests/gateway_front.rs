//! The gateway's own HTTP/1.1 server for `POST /v1/*` (src/gateway/front.rs), on the wire:
//! raw TCP clients against the real binary and the fake provider. Requests pipelined in one
//! write, trickled a byte at a time, `Expect: 100-continue` (with a body wanted and with one too
//! large), `connection: close`, and the requests it hands to hyper (other routes, chunked
//! bodies, HTTP/1.0, conflicting lengths) on the same connection as the ones it serves.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::{Hal0, fake_provider, fake_slot};

const T: Duration = Duration::from_secs(20);

/// A response as read off the wire.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    chunked: bool,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn line(r: &mut BufReader<TcpStream>) -> String {
    let mut l = String::new();
    r.read_line(&mut l).expect("read a line");
    assert!(l.ends_with("\r\n"), "a line ends with CRLF: {l:?}");
    l.truncate(l.len() - 2);
    l
}

/// Reads one response (interim ones included, as they come), framed by its
/// `content-length` or chunked encoding.
fn read_response(r: &mut BufReader<TcpStream>) -> Resp {
    let status_line = line(r);
    let mut parts = status_line.splitn(3, ' ');
    assert!(
        matches!(parts.next(), Some("HTTP/1.1" | "HTTP/1.0")),
        "{status_line}"
    );
    let status: u16 = parts.next().unwrap().parse().unwrap();
    let mut headers = Vec::new();
    loop {
        let l = line(r);
        if l.is_empty() {
            break;
        }
        let (n, v) = l.split_once(':').expect("a header line");
        headers.push((n.to_ascii_lowercase(), v.trim().to_string()));
    }
    let mut resp = Resp {
        status,
        headers,
        body: Vec::new(),
        chunked: false,
    };
    if status == 100 || status == 204 {
        return resp;
    }
    if resp.header("transfer-encoding") == Some("chunked") {
        resp.chunked = true;
        loop {
            let size = usize::from_str_radix(&line(r), 16).expect("a chunk size");
            let mut chunk = vec![0; size];
            r.read_exact(&mut chunk).unwrap();
            assert_eq!(line(r), "", "a chunk ends with CRLF");
            if size == 0 {
                break;
            }
            resp.body.extend_from_slice(&chunk);
        }
    } else {
        let n: usize = resp
            .header("content-length")
            .expect("a length or chunks")
            .parse()
            .unwrap();
        resp.body = vec![0; n];
        r.read_exact(&mut resp.body).unwrap();
    }
    resp
}

fn chat(model: &str, stream: bool) -> String {
    format!(
        r#"{{"model":"{model}","stream":{stream},"messages":[{{"role":"user","content":"hi"}}]}}"#
    )
}

fn post(path: &str, body: &str, extra: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n{extra}content-length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn connect(h: &Hal0) -> (TcpStream, BufReader<TcpStream>) {
    let s = TcpStream::connect(h.base.trim_start_matches("http://")).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s.set_nodelay(true).unwrap();
    let r = BufReader::new(s.try_clone().unwrap());
    (s, r)
}

/// Whether the server closed the connection (no more bytes, EOF).
fn closed(r: &mut BufReader<TcpStream>) -> bool {
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).is_ok() && rest.is_empty()
}

async fn start() -> Hal0 {
    let body = format!(
        "{}{}",
        fake_provider(&["--stream-tokens", "3"]),
        fake_slot("primary", "autoload = true")
    );
    let h = Hal0::start("max_body = \"4KiB\"", &body).await;
    h.wait_phase("primary", "ready", T).await;
    h
}

#[tokio::test]
async fn pipelined_trickled_and_handed_off_requests_share_one_connection() {
    let h = start().await;
    let (mut s, mut r) = connect(&h);
    let out = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        // Two requests in one write: two answers, in order.
        let two = format!(
            "{}{}",
            post("/v1/chat/completions", &chat("primary", false), ""),
            post("/v1/chat/completions", &chat("nope", false), "")
        );
        s.write_all(two.as_bytes()).unwrap();
        seen.push(read_response(&mut r));
        seen.push(read_response(&mut r));
        // One request a byte at a time.
        for b in post("/v1/chat/completions", &chat("primary", false), "").bytes() {
            s.write_all(&[b]).unwrap();
        }
        seen.push(read_response(&mut r));
        // A stream: chunked, ending with its last chunk; the connection goes on.
        s.write_all(post("/v1/chat/completions", &chat("primary", true), "").as_bytes())
            .unwrap();
        seen.push(read_response(&mut r));
        // Not this path's: hyper answers it, and everything after it on this connection.
        s.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
            .unwrap();
        seen.push(read_response(&mut r));
        s.write_all(post("/v1/chat/completions", &chat("primary", false), "").as_bytes())
            .unwrap();
        seen.push(read_response(&mut r));
        seen
    })
    .await
    .unwrap();
    let statuses: Vec<u16> = out.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 404, 200, 200, 200, 200], "{out:#?}");
    for r in [&out[0], &out[2], &out[5]] {
        assert!(r.text().contains("chat.completion"), "{}", r.text());
        assert!(!r.chunked, "a whole answer carries its length: {r:?}");
        assert!(r.header("date").is_some(), "{r:?}");
        assert!(r.header("connection").is_none(), "{r:?}");
    }
    assert!(
        out[1].text().contains("model_not_found"),
        "{}",
        out[1].text()
    );
    assert_eq!(out[1].header("content-type"), Some("application/json"));
    let stream = &out[3];
    assert!(stream.chunked, "{stream:?}");
    assert_eq!(stream.header("content-type"), Some("text/event-stream"));
    assert!(
        stream.text().trim_end().ends_with("data: [DONE]"),
        "{}",
        stream.text()
    );
    assert!(out[4].text().contains("ok"), "{}", out[4].text());
}

#[tokio::test]
async fn expect_100_continue_is_answered_only_when_the_body_is_wanted() {
    let h = start().await;
    let (mut s, mut r) = connect(&h);
    let (mut s2, mut r2) = connect(&h);
    let out = tokio::task::spawn_blocking(move || {
        let body = chat("primary", false);
        let head = post("/v1/chat/completions", "", "expect: 100-continue\r\n").replace(
            "content-length: 0",
            &format!("content-length: {}", body.len()),
        );
        s.write_all(head.as_bytes()).unwrap();
        let interim = read_response(&mut r);
        s.write_all(body.as_bytes()).unwrap();
        let answer = read_response(&mut r);
        // Too large for max_body (4 KiB): refused at once, no 100, the connection closed.
        s2.write_all(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\n\
              content-type: application/json\r\ncontent-length: 100000\r\n\r\n",
        )
        .unwrap();
        let refused = read_response(&mut r2);
        let closed = closed(&mut r2);
        (interim, answer, refused, closed)
    })
    .await
    .unwrap();
    let (interim, answer, refused, was_closed) = out;
    assert_eq!(interim.status, 100, "{interim:?}");
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(refused.status, 413, "{refused:?}");
    assert!(
        refused.text().contains("body_too_large"),
        "{}",
        refused.text()
    );
    assert_eq!(refused.header("connection"), Some("close"));
    assert!(was_closed);
}

#[tokio::test]
async fn connection_close_is_honoured_and_said() {
    let h = start().await;
    let (mut s, mut r) = connect(&h);
    let out = tokio::task::spawn_blocking(move || {
        s.write_all(
            post(
                "/v1/chat/completions",
                &chat("primary", false),
                "connection: close\r\n",
            )
            .as_bytes(),
        )
        .unwrap();
        let resp = read_response(&mut r);
        (resp, closed(&mut r))
    })
    .await
    .unwrap();
    assert_eq!(out.0.status, 200);
    assert_eq!(out.0.header("connection"), Some("close"));
    assert!(out.1, "the connection is closed after the answer");
}

#[tokio::test]
async fn requests_this_path_does_not_take_are_served_by_hyper() {
    let h = start().await;
    let body = chat("primary", false);
    // Chunked request body; HTTP/1.0; two different lengths (refused); an Expect hal0 does not
    // know (ignored, as hyper does); each on its own connection, after a request this path
    // served.
    let chunked = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    let http10 = post("/v1/chat/completions", &body, "").replace("HTTP/1.1", "HTTP/1.0");
    let two_lengths = post("/v1/chat/completions", &body, "content-length: 3\r\n");
    let expect_other = post("/v1/chat/completions", &body, "expect: something-else\r\n");
    let mut conns = Vec::new();
    for _ in 0..4 {
        conns.push(connect(&h));
    }
    let out = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        for ((mut s, mut r), req) in
            conns
                .into_iter()
                .zip([chunked, http10, two_lengths, expect_other])
        {
            s.write_all(post("/v1/chat/completions", &chat("primary", false), "").as_bytes())
                .unwrap();
            let first = read_response(&mut r);
            assert_eq!(first.status, 200);
            s.write_all(req.as_bytes()).unwrap();
            // HTTP/1.0 answers come as HTTP/1.1 with a length.
            seen.push(read_response(&mut r).status);
        }
        seen
    })
    .await
    .unwrap();
    assert_eq!(out, [200, 200, 400, 200]);
}

/// Shutdown through this path: an answer whose head is written after it began says
/// `connection: close`, a stream already flowing ends whole, and each connection is closed
/// after its answer (not kept alive for a next request).
#[tokio::test]
async fn a_drain_answers_what_is_in_flight_then_closes_each_connection() {
    let body = format!(
        "{}{}{}",
        fake_provider(&[
            "--stream-tokens",
            "10",
            "--stream-chunk-delay",
            "100",
            "--load-delay",
            "1500"
        ]),
        fake_slot("primary", "autoload = true"),
        fake_slot("later", "")
    );
    let h = Hal0::start("drain_timeout = \"10s\"", &body).await;
    h.wait_phase("primary", "ready", T).await;
    let (mut streaming, mut rs) = connect(&h);
    let (mut waiting, rw) = connect(&h);
    let child = h.child.as_ref().unwrap().id();
    let (out, mut rs, mut rw, _sockets) = tokio::task::spawn_blocking(move || {
        streaming
            .write_all(post("/v1/chat/completions", &chat("primary", true), "").as_bytes())
            .unwrap();
        // The stream's head and first chunk are out before the drain.
        let status = line(&mut rs);
        // The other request waits for `later` to load (1.5 s) when the drain begins.
        waiting
            .write_all(post("/v1/chat/completions", &chat("later", false), "").as_bytes())
            .unwrap();
        (status, rs, rw, (streaming, waiting))
    })
    .await
    .unwrap();
    assert_eq!(out, "HTTP/1.1 200 OK");
    h.wait_phase("later", "loading", T).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let (stream_rest, stream_closed, answer, answer_closed) =
        tokio::task::spawn_blocking(move || {
            let mut rest = Vec::new();
            // The rest of the stream's head, then its chunks to the last one.
            loop {
                let l = line(&mut rs);
                if l.is_empty() {
                    break;
                }
                rest.push(l);
            }
            let mut chunks = String::new();
            loop {
                let size = usize::from_str_radix(&line(&mut rs), 16).unwrap();
                let mut chunk = vec![0; size];
                rs.read_exact(&mut chunk).unwrap();
                assert_eq!(line(&mut rs), "");
                if size == 0 {
                    break;
                }
                chunks.push_str(&String::from_utf8_lossy(&chunk));
            }
            rest.push(chunks);
            // Well within drain_timeout (10 s), after which everything is closed anyway.
            let soon = Some(Duration::from_secs(3));
            rs.get_ref().set_read_timeout(soon).unwrap();
            let stream_closed = closed(&mut rs);
            let answer = read_response(&mut rw);
            rw.get_ref().set_read_timeout(soon).unwrap();
            (rest, stream_closed, answer, closed(&mut rw))
        })
        .await
        .unwrap();
    let chunks = stream_rest.last().unwrap();
    assert!(chunks.trim_end().ends_with("data: [DONE]"), "{chunks}");
    assert_eq!(chunks.matches("\"content\"").count(), 10, "{chunks}");
    assert!(stream_closed, "the stream's connection is closed after it");
    assert_eq!(answer.header("connection"), Some("close"), "{answer:?}");
    assert!(
        answer_closed,
        "the waiting request's connection is closed after its answer"
    );
}
