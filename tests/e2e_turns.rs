//! Slots that cannot be loaded together take turns: the real `hal0` binary with two real
//! `llama-server` + SmolLM2 slots whose declared memory does not fit `memory_budget` together.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Hal0, real_llama, wait_for};

const T: Duration = Duration::from_secs(60);

/// Two SmolLM2 slots of 700MiB each under a 1GiB budget; `extra` goes into both slot tables.
fn two_slots(alpha_extra: &str, beta_extra: &str) -> String {
    let (server, model) = real_llama();
    let slot = |name: &str, extra: &str| {
        format!(
            "[slots.{name}]\nprovider = \"llama.cpp\"\nmodel = \"file:{}\"\nmemory = \"700MiB\"\n{extra}\n",
            model.display()
        )
    };
    format!(
        "[providers.\"llama.cpp\"]\ncommand = [\"{}\", \"-t\", \"1\", \"-c\", \"512\"]\n\n{}\n{}",
        server.display(),
        slot("alpha", alpha_extra),
        slot("beta", beta_extra)
    )
}

async fn metrics(h: &Hal0) -> String {
    h.http
        .get(h.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn ok_chat(h: &Hal0, model: &str) {
    let r = h.chat(model, "Say hi.").await;
    let status = r.status();
    let body = r.text().await.unwrap_or_default();
    assert_eq!(status, 200, "chat {model}: {body}");
}

#[ignore = "needs the real llama-server and SmolLM2 (scripts/setup-providers.sh); scripts/test.sh runs it"]
#[tokio::test]
async fn a_request_for_a_slot_that_cannot_fit_waits_for_its_turn() {
    let h = Hal0::start(
        "memory_budget = \"1GiB\"",
        &two_slots("min_residency = \"3s\"", ""),
    )
    .await;
    ok_chat(&h, "alpha").await;

    // alpha has served less than its min_residency and holds the memory: beta waits (it used
    // to be refused at once with 503 slot_cannot_fit), then alpha is swapped out once it has
    // been resident for its min_residency.
    ok_chat(&h, "beta").await;
    let alpha = h.wait_phase("alpha", "stopped", T).await;
    assert_eq!(alpha["swaps"], 1, "{alpha}");
    assert!(
        alpha["last_residency_ms"].as_u64().unwrap() >= 3000,
        "{alpha}"
    );
    assert_eq!(h.status("beta").await.unwrap()["phase"], "ready");

    let m = metrics(&h).await;
    assert!(m.contains("hal0_slot_swaps_total{slot=\"alpha\"} 1"), "{m}");
    assert!(
        m.contains("hal0_slot_residency_seconds_count{slot=\"alpha\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("hal0_queue_wait_seconds_count{slot=\"beta\"} 1"),
        "{m}"
    );
}

#[ignore = "needs the real llama-server and SmolLM2 (scripts/setup-providers.sh); scripts/test.sh runs it"]
#[tokio::test]
async fn two_clients_back_to_back_take_turns_grouped_by_slot() {
    let h = Hal0::start(
        "memory_budget = \"1GiB\"",
        &two_slots("min_residency = \"2s\"", "min_residency = \"2s\""),
    )
    .await;
    let run_for = Duration::from_secs(10);
    let client = |model: &'static str| {
        let h = &h;
        async move {
            let end = Instant::now() + run_for;
            let (mut ok, mut failed) = (0u32, Vec::new());
            while Instant::now() < end {
                let r = h.chat(model, "Say hi.").await;
                if r.status() == 200 {
                    ok += 1;
                } else {
                    failed.push(format!(
                        "{} {}",
                        r.status(),
                        r.text().await.unwrap_or_default()
                    ));
                }
            }
            (ok, failed)
        }
    };
    let ((a_ok, a_failed), (b_ok, b_failed)) = tokio::join!(client("alpha"), client("beta"));
    assert!(a_failed.is_empty(), "alpha: {a_failed:?}");
    assert!(b_failed.is_empty(), "beta: {b_failed:?}");
    assert!(a_ok >= 2 && b_ok >= 2, "alpha {a_ok}, beta {b_ok} answers");
    let swaps: u64 = ["alpha", "beta"]
        .iter()
        .map(|s| {
            let h = &h;
            async move { h.status(s).await.unwrap()["swaps"].as_u64().unwrap() }
        })
        .collect::<futures_util::future::JoinAll<_>>()
        .await
        .into_iter()
        .sum();
    assert!(swaps >= 2, "the slots took turns: {swaps} swaps");
    // Grouped by slot: a turn serves the requests that come for it during its residency, not
    // one each (one load per request, as llama.cpp's router does, would give loads = answers).
    let m = metrics(&h).await;
    let loads: u64 = m
        .lines()
        .filter(|l| l.starts_with("hal0_slot_loads_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert!(
        loads < u64::from(a_ok + b_ok),
        "{loads} loads for {} answers",
        a_ok + b_ok
    );
}

#[ignore = "needs the real llama-server and SmolLM2 (scripts/setup-providers.sh); scripts/test.sh runs it"]
#[tokio::test]
async fn max_wait_wins_over_min_residency() {
    let h = Hal0::start(
        "memory_budget = \"1GiB\"\nmax_wait = \"2s\"",
        &two_slots("min_residency = \"1h\"", ""),
    )
    .await;
    ok_chat(&h, "alpha").await;
    let asked = Instant::now();
    ok_chat(&h, "beta").await;
    let waited = asked.elapsed();
    assert!(waited >= Duration::from_secs(2), "{waited:?}");
    assert!(
        waited < Duration::from_secs(45),
        "served within max_wait plus a load: {waited:?}"
    );
    let alpha = h.status("alpha").await.unwrap();
    assert_eq!(alpha["swaps"], 1, "{alpha}");
}

#[ignore = "needs the real llama-server and SmolLM2 (scripts/setup-providers.sh); scripts/test.sh runs it"]
#[tokio::test]
async fn a_pinned_slot_is_never_swapped_out_and_the_wait_is_refused_with_the_reason() {
    let h = Hal0::start(
        "memory_budget = \"1GiB\"",
        &two_slots("pinned = true\nautoload = true", ""),
    )
    .await;
    h.wait_phase("alpha", "ready", T).await;
    let asked = Instant::now();
    let r = h.chat("beta", "Say hi.").await;
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "slot_cannot_fit", "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("pinned") && msg.contains("alpha 700MiB"),
        "{msg}"
    );
    assert!(asked.elapsed() < Duration::from_secs(10), "refused at once");
    let alpha = wait_for("alpha to stay ready", T, || async {
        h.status("alpha").await.filter(|s| s["phase"] == "ready")
    })
    .await;
    assert_eq!(alpha["swaps"], 0);
}
