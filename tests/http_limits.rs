//! Slow, idle or too many clients cannot exhaust hal0, and shutdown drains: through the real
//! binary with raw TCP clients (a half request line, a header every so often, a trickled body,
//! nothing at all), a flowing stream that outlives the idle timeout, a connection cap, a low
//! open-file limit, and SIGTERM with streams and half-sent requests open.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::{Hal0, alive, fake_provider, fake_slot};

const T: Duration = Duration::from_secs(20);

const LIMITS: &str = "header_timeout = \"1s\"\nbody_timeout = \"1s\"\nclient_idle_timeout = \"2s\"";

fn addr(h: &Hal0) -> String {
    h.base.trim_start_matches("http://").to_string()
}

/// Whether the server closes `s` within `within` (reads until EOF or an error).
fn closed_within(s: &mut TcpStream, within: Duration) -> Option<(Duration, String)> {
    let started = Instant::now();
    s.set_read_timeout(Some(within)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => {
                return Some((
                    started.elapsed(),
                    String::from_utf8_lossy(&got).into_owned(),
                ));
            }
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return None;
            }
            Err(_) => {
                return Some((
                    started.elapsed(),
                    String::from_utf8_lossy(&got).into_owned(),
                ));
            }
        }
        if started.elapsed() > within {
            return None;
        }
    }
}

#[tokio::test]
async fn a_slow_or_silent_client_is_cut_off_by_the_header_and_idle_timeouts() {
    let h = Hal0::start(LIMITS, &fake_provider(&[])).await;
    let a = addr(&h);
    let cases = tokio::task::spawn_blocking(move || {
        // Nothing at all: closed after the header timeout (1 s).
        let mut silent = TcpStream::connect(&a).unwrap();
        // Half a request line: closed after the header timeout (1 s).
        let mut half = TcpStream::connect(&a).unwrap();
        half.write_all(b"GET /api/slo").unwrap();
        // A header line every 400 ms: still closed after the header timeout.
        let mut dribble = TcpStream::connect(&a).unwrap();
        dribble.write_all(b"GET /health HTTP/1.1\r\n").unwrap();
        let d2 = dribble.try_clone().unwrap();
        let dribbler = std::thread::spawn(move || {
            let mut d2 = d2;
            for i in 0..20 {
                std::thread::sleep(Duration::from_millis(400));
                if d2
                    .write_all(format!("X-Slow-{i}: 1\r\n").as_bytes())
                    .is_err()
                {
                    return;
                }
            }
        });
        let half_closed = closed_within(&mut half, Duration::from_secs(5));
        let dribble_closed = closed_within(&mut dribble, Duration::from_secs(5));
        let silent_closed = closed_within(&mut silent, Duration::from_secs(6));
        dribbler.join().unwrap();
        (half_closed, dribble_closed, silent_closed)
    })
    .await
    .unwrap();
    let (half, dribble, silent) = cases;
    let half = half.expect("a half request line was held past 5 s");
    assert!(half.0 >= Duration::from_millis(900), "{half:?}");
    dribble.expect("a header every 400 ms was held past 5 s");
    // A connection that never sends anything: its first request must start within
    // header_timeout of its opening.
    silent.expect("a silent connection was held past the header timeout");
    // hal0 still answers (a new client: the pooled connection of h.http was idle, so closed).
    assert_eq!(
        reqwest::Client::new()
            .get(h.url("/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn a_trickled_body_is_refused_after_the_body_timeout() {
    let h = Hal0::start(
        LIMITS,
        &format!("{}{}", fake_provider(&[]), fake_slot("primary", "")),
    )
    .await;
    let a = addr(&h);
    for path in ["/v1/chat/completions", "/api/slots"] {
        let a = a.clone();
        let (elapsed, answer) = tokio::task::spawn_blocking(move || {
            let mut s = TcpStream::connect(&a).unwrap();
            write!(
                s,
                "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{"
            )
            .unwrap();
            let s2 = s.try_clone().unwrap();
            let trickle = std::thread::spawn(move || {
                let mut s2 = s2;
                for _ in 0..40 {
                    std::thread::sleep(Duration::from_millis(200));
                    if s2.write_all(b" ").is_err() {
                        return;
                    }
                }
            });
            let r = closed_within(&mut s, Duration::from_secs(6));
            trickle.join().unwrap();
            r.expect("a trickled body was held past 6 s")
        })
        .await
        .unwrap();
        assert!(elapsed < Duration::from_secs(4), "{path}: {elapsed:?}");
        let status = answer.split(' ').nth(1).unwrap_or_default().to_string();
        assert!(status == "408" || status == "400", "{path}: {answer}");
        assert!(answer.contains("body_timeout"), "{path}: {answer}");
    }
}

#[tokio::test]
async fn a_flowing_stream_is_not_idle() {
    // Chunks every 500 ms for 5 s: longer than the 2 s idle timeout.
    let flags = ["--stream-chunk-delay", "500", "--stream-tokens", "10"];
    let body = format!(
        "{}{}",
        fake_provider(&flags),
        fake_slot("primary", "autoload = true")
    );
    let h = Hal0::start(LIMITS, &body).await;
    h.wait_phase("primary", "ready", T).await;
    let text = h
        .http
        .post(h.url("/v1/chat/completions"))
        .json(&serde_json::json!({"model": "primary", "stream": true, "messages": []}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("[DONE]"), "the stream was cut: {text}");
}

/// A client that stops taking a stream's data holds nothing for long: once hal0 has waited
/// `client_idle_timeout` to write, the connection closes and the provider's stream is cancelled.
#[tokio::test]
async fn a_client_that_stops_reading_a_stream_is_dropped_after_the_idle_timeout() {
    let events = tempfile::NamedTempFile::new().unwrap();
    let ev = events.path().display().to_string();
    // A fast, endless stream: the socket buffers fill within moments.
    let flags = ["--stream-tokens", "100000000", "--events-file", &ev];
    let body = format!(
        "{}{}",
        fake_provider(&flags),
        fake_slot("primary", "autoload = true")
    );
    let h = Hal0::start(LIMITS, &body).await;
    h.wait_phase("primary", "ready", T).await;
    let a = addr(&h);
    let mut s = TcpStream::connect(&a).unwrap();
    let req = r#"{"model": "primary", "stream": true, "messages": []}"#;
    write!(
        s,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{req}",
        req.len()
    )
    .unwrap();
    // Read nothing; the provider's stream must be cancelled (hal0 dropped it) within bounds.
    support::wait_for("the stalled stream to be dropped", T, || async {
        std::fs::read_to_string(events.path())
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with("stream-cancelled"))
            .then_some(())
    })
    .await;
    let st = support::wait_for("the request to leave the in-flight count", T, || async {
        h.status("primary").await.filter(|s| s["in_flight"] == 0)
    })
    .await;
    assert_eq!(st["phase"], "ready");
    drop(s);
}

#[tokio::test]
async fn at_the_connection_cap_the_connection_idle_longest_makes_room() {
    let body = format!(
        "{}{}",
        fake_provider(&[]),
        fake_slot("primary", "autoload = true")
    );
    let h = Hal0::start(
        "client_idle_timeout = \"60s\"\nheader_timeout = \"60s\"\nmax_connections = 5",
        &body,
    )
    .await;
    h.wait_phase("primary", "ready", T).await;
    let a = addr(&h);
    // Four idle connections and the test's own (for /api) fill the cap of five; another client
    // is served at once: the connection idle longest is closed to make room (the timeouts here
    // are a minute).
    let idle: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(&a).unwrap()).collect();
    let started = Instant::now();
    let r = reqwest::Client::new()
        .get(h.url("/health"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // (Which idle connection made room — one of these, or the test's own — does not matter;
    // without room the answer would have waited for the one-minute timeouts.)
    drop(idle);
}

#[tokio::test]
async fn hundreds_of_idle_connections_under_a_low_file_limit_do_not_make_hal0_unreachable() {
    // The default timeouts: the idle connections make room, they do not have to time out.
    let mut h = Hal0::start_wrapped(
        "",
        &fake_provider(&[]),
        &["sh", "-c", "ulimit -n 256 && exec \"$@\"", "sh"],
    )
    .await;
    let a = addr(&h);
    let idle = tokio::task::spawn_blocking(move || {
        (0..300)
            .filter_map(|_| TcpStream::connect(&a).ok())
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert!(idle.len() >= 250, "only {} connections opened", idle.len());
    let started = Instant::now();
    let r = reqwest::Client::new()
        .get(h.url("/health"))
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .expect("hal0 stays reachable");
    assert_eq!(r.status(), 200);
    eprintln!(
        "answered after {:?} with {} idle connections",
        started.elapsed(),
        idle.len()
    );
    let log = h.log_text();
    assert!(
        log.contains("open-file limit (256)"),
        "the cap is derived from the limit:\n{log}"
    );
    assert!(
        log.matches("accept error").count() < 50,
        "accept errors were retried in a loop:\n{log}"
    );
    drop(idle);
    assert!(h.stop().await.unwrap().success());
}

/// A stream that ends within the drain time ends normally after SIGTERM; the provider is
/// stopped only after it.
#[tokio::test]
async fn sigterm_lets_a_stream_in_flight_finish() {
    let flags = ["--stream-chunk-delay", "100", "--stream-tokens", "20"];
    let body = format!(
        "{}{}",
        fake_provider(&flags),
        fake_slot("primary", "autoload = true")
    );
    let mut h = Hal0::start("drain_timeout = \"10s\"", &body).await;
    let pid = h.wait_phase("primary", "ready", T).await["pid"]
        .as_u64()
        .unwrap() as u32;
    let mut resp = h
        .http
        .post(h.url("/v1/chat/completions"))
        .json(&serde_json::json!({"model": "primary", "stream": true, "messages": []}))
        .send()
        .await
        .unwrap();
    let mut text = String::from_utf8_lossy(&resp.chunk().await.unwrap().unwrap()).into_owned();
    let child = h.child.as_ref().unwrap().id();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    while let Ok(Some(c)) = resp.chunk().await {
        text.push_str(&String::from_utf8_lossy(&c));
    }
    assert!(text.contains("[DONE]"), "the stream was cut: {text}");
    assert_eq!(text.matches("\"content\"").count(), 20, "{text}");
    let status = h.stop().await.unwrap();
    assert!(status.success(), "{status}");
    assert!(!alive(pid));
    // New connections were refused while it drained.
    assert!(TcpStream::connect(addr(&h)).is_err());
}

/// A stream still open when the drain time is over ends with an error event; a half-sent
/// request never holds the exit.
#[tokio::test]
async fn sigterm_ends_a_stream_past_the_drain_time_with_an_error_event() {
    let flags = ["--stream-chunk-delay", "200", "--stream-tokens", "100000"];
    let body = format!(
        "{}{}",
        fake_provider(&flags),
        fake_slot("primary", "autoload = true")
    );
    let mut h = Hal0::start("drain_timeout = \"1s\"", &body).await;
    let pid = h.wait_phase("primary", "ready", T).await["pid"]
        .as_u64()
        .unwrap() as u32;
    let mut half = TcpStream::connect(addr(&h)).unwrap();
    half.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Le")
        .unwrap();
    let mut resp = h
        .http
        .post(h.url("/v1/chat/completions"))
        .json(&serde_json::json!({"model": "primary", "stream": true, "messages": []}))
        .send()
        .await
        .unwrap();
    let mut text = String::from_utf8_lossy(&resp.chunk().await.unwrap().unwrap()).into_owned();
    let started = Instant::now();
    let child = h.child.as_ref().unwrap().id();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    while let Ok(Some(c)) = resp.chunk().await {
        text.push_str(&String::from_utf8_lossy(&c));
    }
    let tail: String = text
        .chars()
        .rev()
        .take(400)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    assert!(
        tail.contains("\"shutting_down\""),
        "no error event at the end: {tail}"
    );
    assert!(!text.contains("[DONE]"));
    let status = h.stop().await.unwrap();
    assert!(status.success(), "{status}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "exit took {:?}",
        started.elapsed()
    );
    assert!(!alive(pid));
}
