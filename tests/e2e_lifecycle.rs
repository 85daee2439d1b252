//! The slot lifecycle through the real `hal0` binary, with the fake provider for the cases a
//! real server cannot produce on demand (slow loads, crashes, failing health, ignored SIGTERM).

mod support;

use std::time::Duration;

use support::{Hal0, alive, fake_provider, fake_slot, wait_for};

const T: Duration = Duration::from_secs(20);

fn events_file(h: &Hal0, name: &str) -> std::path::PathBuf {
    h.dir.path().join(format!("{name}.events"))
}

fn count_lines(path: &std::path::Path, prefix: &str) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with(prefix))
        .count()
}

#[tokio::test]
async fn concurrent_first_requests_share_one_load() {
    let events = tempfile::NamedTempFile::new().unwrap();
    let ev = events.path().display().to_string();
    let body = format!(
        "{}{}",
        fake_provider(&["--load-delay", "1500", "--events-file", &ev]),
        fake_slot("primary", "")
    );
    let h = Hal0::start("", &body).await;
    assert_eq!(h.status("primary").await.unwrap()["phase"], "stopped");
    let reqs = (0..6).map(|i| {
        let h = &h;
        async move { h.chat("primary", &format!("hello {i}")).await }
    });
    let responses = futures_util::future::join_all(reqs).await;
    for r in responses {
        assert_eq!(r.status(), 200);
        let v: serde_json::Value = r.json().await.unwrap();
        assert!(
            v["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .starts_with("fake reply to: hello")
        );
    }
    assert_eq!(
        count_lines(events.path(), "start "),
        1,
        "one load for every waiting request"
    );
    assert_eq!(h.status("primary").await.unwrap()["phase"], "ready");
}

#[tokio::test]
async fn idle_timeout_moves_a_ready_slot_to_idle_and_a_request_makes_it_ready() {
    let body = format!(
        "{}{}",
        fake_provider(&[]),
        fake_slot("primary", "idle_timeout = \"1s\"\nautoload = true")
    );
    let h = Hal0::start("", &body).await;
    h.wait_phase("primary", "ready", T).await;
    let pid = h.pid("primary").await;
    h.wait_phase("primary", "idle", T).await;
    assert_eq!(h.pid("primary").await, pid, "idle slots stay loaded");
    assert_eq!(h.chat("primary", "wake up").await.status(), 200);
    h.wait_phase("primary", "ready", T).await;
    assert_eq!(h.pid("primary").await, pid);
}

#[tokio::test]
async fn unload_idle_stops_the_process_when_the_slot_goes_idle() {
    let body = format!(
        "{}{}",
        fake_provider(&[]),
        fake_slot("primary", "idle_timeout = \"1s\"\nautoload = true")
    );
    let h = Hal0::start("unload_idle = true", &body).await;
    let ready = h.wait_phase("primary", "ready", T).await;
    let pid = ready["pid"].as_u64().unwrap() as u32;
    h.wait_phase("primary", "stopped", T).await;
    wait_for("the provider to exit", T, || async {
        (!alive(pid)).then_some(())
    })
    .await;
    // And the next request loads it again.
    assert_eq!(h.chat("primary", "again").await.status(), 200);
}

#[tokio::test]
async fn a_killed_provider_is_restarted_with_backoff() {
    let body = format!(
        "{}{}",
        fake_provider(&[]),
        fake_slot("primary", "autoload = true")
    );
    let h = Hal0::start("", &body).await;
    let pid = h.wait_phase("primary", "ready", T).await["pid"]
        .as_u64()
        .unwrap() as u32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let failed = h.wait_phase("primary", "failed", T).await;
    assert!(
        failed["last_error"].as_str().unwrap().contains("signal 9"),
        "{failed}"
    );
    assert!(
        failed["retry_in_ms"].as_u64().is_some(),
        "a retry is scheduled: {failed}"
    );
    let st = wait_for("a new provider process", T, || async {
        h.status("primary")
            .await
            .filter(|s| s["phase"] == "ready" && s["pid"].as_u64() != Some(pid as u64))
    })
    .await;
    assert_eq!(st["restarts"], 1);
    assert_eq!(h.chat("primary", "still there?").await.status(), 200);
}

#[tokio::test]
async fn a_request_during_crash_backoff_is_told_when_to_retry() {
    let body = format!(
        "{}{}",
        fake_provider(&["--exit-on-start", "3"]),
        fake_slot("primary", "autoload = true")
    );
    let h = Hal0::start("", &body).await;
    let failed = h.wait_phase("primary", "failed", T).await;
    assert!(failed["retry_in_ms"].as_u64().is_some(), "{failed}");
    let r = h.chat("primary", "hi").await;
    let status = r.status().as_u16();
    assert!(status == 502 || status == 503, "{status}");
    assert!(
        r.headers().contains_key("retry-after"),
        "{status} without Retry-After: {:?}",
        r.headers()
    );
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(v["error"]["code"].is_string(), "{v}");
}

#[tokio::test]
async fn a_provider_that_keeps_crashing_ends_in_crash_loop_and_answers_503() {
    let body = format!(
        "{}{}",
        fake_provider(&["--exit-on-start", "3"]),
        fake_slot("primary", "autoload = true")
    );
    let h = Hal0::start("", &body).await;
    let st = h
        .wait_phase("primary", "crash-loop", Duration::from_secs(60))
        .await;
    assert!(
        st["last_error"]
            .as_str()
            .unwrap()
            .contains("exited with code 3"),
        "{st}"
    );
    let r = h.chat("primary", "hi").await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "slot_crash_loop");
}

#[tokio::test]
async fn a_load_that_fails_fails_every_waiting_request_with_the_reason() {
    let body = format!(
        "{}{}",
        fake_provider(&["--fail-health"]),
        fake_slot("primary", "")
    );
    let h = Hal0::start("load_timeout = \"2s\"", &body).await;
    let r = h.chat("primary", "hi").await;
    // A load that outlasts load_timeout is a gateway timeout, as hal0.toml says.
    assert_eq!(r.status(), 504);
    assert!(r.headers().contains_key("retry-after"));
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "slot_load_timeout", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("did not become ready within load_timeout"),
        "{v}"
    );
}

#[tokio::test]
async fn a_missing_model_file_is_a_clear_error() {
    let body = format!(
        "{}[slots.primary]\nprovider = \"llama.cpp\"\nmodel = \"hf:org/repo/missing.gguf\"\n",
        fake_provider(&[])
    );
    let h = Hal0::start("", &body).await;
    let r = h.chat("primary", "hi").await;
    assert_eq!(r.status(), 502);
    let v: serde_json::Value = r.json().await.unwrap();
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("org/repo/missing.gguf") && msg.contains("does not exist"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_provider_ignoring_sigterm_is_killed_after_the_grace_period() {
    let body = format!(
        "{}{}",
        fake_provider(&["--ignore-sigterm"]),
        fake_slot("primary", "autoload = true")
    );
    let h = Hal0::start("", &body).await;
    let pid = h.wait_phase("primary", "ready", T).await["pid"]
        .as_u64()
        .unwrap() as u32;
    let r = h
        .http
        .post(h.url("/api/slots/primary/unload"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    h.wait_phase("primary", "stopped", T).await;
    assert!(!alive(pid), "SIGKILL followed the ignored SIGTERM");
    assert!(h.log_text().contains("ignored SIGTERM"), "{}", h.log_text());
}

#[tokio::test]
async fn sigterm_of_hal0_stops_every_provider() {
    let body = format!(
        "{}{}{}",
        fake_provider(&[]),
        fake_slot("a", "autoload = true"),
        fake_slot("b", "autoload = true")
    );
    let mut h = Hal0::start("", &body).await;
    let a = h.wait_phase("a", "ready", T).await["pid"].as_u64().unwrap() as u32;
    let b = h.wait_phase("b", "ready", T).await["pid"].as_u64().unwrap() as u32;
    let status = h.stop().await.unwrap();
    assert!(status.success(), "hal0 exits 0 on SIGTERM: {status}");
    assert!(!alive(a) && !alive(b), "providers stopped with hal0");
}

#[tokio::test]
async fn a_client_disconnect_cancels_the_upstream_stream() {
    let events = tempfile::NamedTempFile::new().unwrap();
    let ev = events.path().display().to_string();
    let flags = [
        "--stream-chunk-delay",
        "300",
        "--stream-tokens",
        "50",
        "--events-file",
        &ev,
    ];
    let body = format!(
        "{}{}",
        fake_provider(&flags),
        fake_slot("primary", "autoload = true")
    );
    let h = Hal0::start("", &body).await;
    h.wait_phase("primary", "ready", T).await;
    let mut resp = h
        .http
        .post(h.url("/v1/chat/completions"))
        .json(&serde_json::json!({"model": "primary", "stream": true, "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-accel-buffering"], "no");
    let first = resp.chunk().await.unwrap().unwrap();
    assert!(
        String::from_utf8_lossy(&first).starts_with("data: "),
        "chunks arrive as they are made"
    );
    drop(resp);
    wait_for("the provider to see the cancellation", T, || async {
        (count_lines(events.path(), "stream-cancelled") == 1).then_some(())
    })
    .await;
    let st = wait_for("the request to leave the in-flight count", T, || async {
        h.status("primary").await.filter(|s| s["in_flight"] == 0)
    })
    .await;
    assert_eq!(st["phase"], "ready");
    let _ = events_file(&h, "x");
}

#[tokio::test]
async fn a_ready_slot_reports_its_measured_memory() {
    let body = format!(
        "{}{}",
        fake_provider(&[]),
        fake_slot("primary", "autoload = true")
    );
    let h = Hal0::start("", &body).await;
    let st = wait_for("a memory measurement", T, || async {
        h.status("primary")
            .await
            .filter(|s| s["memory_rss"].as_u64().is_some_and(|b| b > 1 << 20))
    })
    .await;
    assert!(
        st["memory_peak"].as_u64().unwrap() >= st["memory_rss"].as_u64().unwrap(),
        "{st}"
    );
    // The measured peak becomes the admission estimate (the fake model file is 4 bytes).
    assert!(st["memory_estimate"].as_u64().unwrap() > 1 << 20, "{st}");
}

#[tokio::test]
async fn sigterm_with_an_open_stream_stops_hal0_and_its_provider() {
    let flags = ["--stream-chunk-delay", "500", "--stream-tokens", "100000"];
    let body = format!(
        "{}{}",
        fake_provider(&flags),
        fake_slot("primary", "autoload = true")
    );
    let mut h = Hal0::start("", &body).await;
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
    assert!(resp.chunk().await.unwrap().is_some());
    let status = h.stop().await.unwrap();
    assert!(status.success(), "{status}");
    assert!(!alive(pid));
}

/// A load that only a request asked for is stopped when that request goes away before the
/// load finishes: the provider gets SIGTERM while loading and the slot ends `stopped`.
#[tokio::test]
async fn a_load_every_waiting_client_abandoned_is_stopped() {
    let events = tempfile::NamedTempFile::new().unwrap();
    let ev = events.path().display().to_string();
    let body = format!(
        "{}{}",
        fake_provider(&["--load-delay", "60000", "--events-file", &ev]),
        fake_slot("primary", "")
    );
    let h = Hal0::start("", &body).await;
    let request = h
        .http
        .post(h.url("/v1/chat/completions"))
        .json(&serde_json::json!({"model": "primary", "messages": [{"role": "user", "content": "hi"}]}))
        .send();
    let client = tokio::spawn(request);
    wait_for("the provider to start", T, || async {
        (count_lines(events.path(), "start ") == 1).then_some(())
    })
    .await;
    // The client gives up while the slot loads: its connection closes.
    client.abort();
    assert!(client.await.is_err_and(|e| e.is_cancelled()));
    wait_for("the abandoned load to be stopped", T, || async {
        (count_lines(events.path(), "sigterm") == 1).then_some(())
    })
    .await;
    let st = h.wait_phase("primary", "stopped", T).await;
    assert_eq!(
        st["load_failures"], 0,
        "a cancelled load is not a failure: {st}"
    );
    assert_eq!(count_lines(events.path(), "start "), 1);
}

/// A streaming client (answered at once, kept alive with SSE comments while the slot loads)
/// that goes away cancels the load too; hal0 notices at the latest on the next keep-alive.
#[tokio::test]
async fn an_abandoned_streamed_load_is_stopped() {
    let events = tempfile::NamedTempFile::new().unwrap();
    let ev = events.path().display().to_string();
    let body = format!(
        "{}{}",
        fake_provider(&["--load-delay", "60000", "--events-file", &ev]),
        fake_slot("primary", "")
    );
    let h = Hal0::start("", &body).await;
    // A raw client: it reads the first keep-alive, then closes its socket.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = h.url("").trim_start_matches("http://").to_string();
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let json =
        r#"{"model": "primary", "stream": true, "messages": [{"role": "user", "content": "hi"}]}"#;
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}",
        json.len()
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 1024];
    while !seen.contains("waiting for slot primary") {
        let n = tokio::time::timeout(T, tcp.read(&mut buf))
            .await
            .expect("a keep-alive while the slot loads")
            .unwrap();
        assert!(n > 0, "closed early: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    // The provider runs (its SIGTERM handler is installed) before the client leaves.
    wait_for("the provider to start", T, || async {
        (count_lines(events.path(), "start ") == 1).then_some(())
    })
    .await;
    drop(tcp);
    wait_for(
        "the abandoned streamed load to be stopped",
        Duration::from_secs(40),
        || async { (count_lines(events.path(), "sigterm") == 1).then_some(()) },
    )
    .await;
    h.wait_phase("primary", "stopped", T).await;
}

/// An explicit load (API) is kept although no request waits for it.
#[tokio::test]
async fn an_explicit_load_nobody_waits_for_is_not_cancelled() {
    let events = tempfile::NamedTempFile::new().unwrap();
    let ev = events.path().display().to_string();
    let body = format!(
        "{}{}",
        fake_provider(&["--load-delay", "1500", "--events-file", &ev]),
        fake_slot("primary", "")
    );
    let h = Hal0::start("", &body).await;
    let r = h
        .http
        .post(h.url("/api/slots/primary/load"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    h.wait_phase("primary", "ready", T).await;
    assert_eq!(
        count_lines(events.path(), "sigterm"),
        0,
        "the load ran to the end"
    );
}

/// `probe`: a provider that is healthy but answers garbage fails its load with what it said;
/// one whose answer contains `expect` serves.
#[tokio::test]
async fn the_answer_check_fails_a_load_that_answers_garbage() {
    // The fake answers "fake reply to: <prompt>": not "Paris".
    let body = format!(
        "{}{}{}",
        fake_provider(&[]),
        fake_slot("primary", "probe = {}"),
        fake_slot(
            "echo",
            "probe = { prompt = \"Say ping.\", expect = \"PING\" }"
        )
    );
    let h = Hal0::start("", &body).await;
    let r = h.chat("primary", "hi").await;
    assert_eq!(r.status(), 502);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "slot_load_failed", "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("answer check failed")
            && msg.contains("\"Paris\"")
            && msg.contains("the model said \"fake reply to: What is the capital of France?"),
        "{msg}"
    );
    let st = h.status("primary").await.unwrap();
    assert!(
        st["last_error"]
            .as_str()
            .unwrap()
            .contains("answer check failed"),
        "{st}"
    );

    assert_eq!(h.chat("echo", "hi").await.status(), 200);
}
