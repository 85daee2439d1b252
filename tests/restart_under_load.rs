//! A launch-relevant change applies under constant load, within a bound: new requests wait for
//! the restarted process, the ones in flight finish, and nothing fails.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::{Hal0, fake_provider, fake_slot, wait_for};

#[tokio::test]
async fn a_changed_slot_restarts_under_constant_load_and_no_request_fails() {
    // Each request streams for about a second; four clients send them back to back, so there
    // is always one in flight.
    let flags = ["--stream-chunk-delay", "100", "--stream-tokens", "10"];
    let body = |args: &str| {
        format!(
            "{}{}",
            fake_provider(&flags),
            fake_slot("primary", &format!("autoload = true\nargs = [{args}]"))
        )
    };
    let h = Arc::new(Hal0::start("", &body("")).await);
    let old = h
        .wait_phase("primary", "ready", Duration::from_secs(20))
        .await["pid"]
        .as_u64()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (h, stop, ok) = (h.clone(), stop.clone(), ok.clone());
        clients.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let r = h
                    .http
                    .post(h.url("/v1/chat/completions"))
                    .json(&serde_json::json!({"model": "primary", "stream": true, "messages": []}))
                    .send()
                    .await
                    .unwrap();
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                if status == 200 && text.contains("[DONE]") {
                    ok.fetch_add(1, Ordering::SeqCst);
                } else {
                    failures.push(format!("{status}: {text}"));
                }
            }
            failures
        }));
    }
    wait_for("requests in flight", Duration::from_secs(10), || async {
        h.status("primary")
            .await
            .filter(|s| s["in_flight"].as_u64() > Some(0))
    })
    .await;
    let changed = Instant::now();
    h.write_body(&body("\"--ctx-size\", \"512\""));
    // The file settles (1 s), requests in flight finish (1 s each, at most restart_drain), the
    // fake provider starts: well within 15 s. Before, the restart waited for a moment with no
    // request in flight, which constant load never gives.
    let st = wait_for(
        "the restart under load",
        Duration::from_secs(15),
        || async {
            h.status("primary")
                .await
                .filter(|s| s["phase"] == "ready" && s["pid"].as_u64().is_some_and(|p| p != old))
        },
    )
    .await;
    eprintln!("restarted {:?} after the edit: {st}", changed.elapsed());
    // Requests keep being served by the new process.
    let served = ok.load(Ordering::SeqCst);
    wait_for(
        "requests served after the restart",
        Duration::from_secs(10),
        || async { (ok.load(Ordering::SeqCst) >= served + 3).then_some(()) },
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        let failures = c.await.unwrap();
        assert!(failures.is_empty(), "requests failed: {failures:?}");
    }
}
