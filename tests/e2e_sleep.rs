//! The sleep tier with the real `llama-server` (Debian's llama.cpp 0.7.0 has
//! `--sleep-idle-seconds`): a slot with `sleep_after` releases its weights and keeps its process
//! (phase `sleeping`), counts toward `memory_budget` at its measured sleeping footprint, and a
//! request wakes it.

mod support;

use std::time::Duration;

use support::{Hal0, real_llama, wait_for};

const T: Duration = Duration::from_secs(60);

fn slot(name: &str, extra: &str) -> String {
    let (_, model) = real_llama();
    format!(
        "[slots.{name}]\nprovider = \"llama.cpp\"\nmodel = \"file:{}\"\nmemory = \"700MiB\"\n{extra}\n",
        model.display()
    )
}

fn provider() -> String {
    let (server, _) = real_llama();
    format!(
        "[providers.\"llama.cpp\"]\ncommand = [\"{}\", \"-t\", \"1\", \"-c\", \"512\"]\n",
        server.display()
    )
}

#[ignore = "needs the real llama-server and SmolLM2 (scripts/setup-providers.sh); scripts/test.sh runs it"]
#[tokio::test]
async fn a_sleeping_slot_keeps_its_process_holds_little_and_wakes_on_a_request() {
    let body = format!(
        "{}{}{}",
        provider(),
        slot("alpha", "sleep_after = \"2s\""),
        slot("beta", "")
    );
    let h = Hal0::start("memory_budget = \"1GiB\"", &body).await;
    assert_eq!(h.chat("alpha", "Say hi.").await.status(), 200);
    let pid = h.pid("alpha").await.expect("alpha runs");
    let awake = wait_for("an awake memory reading", T, || async {
        h.status("alpha")
            .await
            .and_then(|s| s["memory_rss"].as_u64())
    })
    .await;

    let asleep = h.wait_phase("alpha", "sleeping", T).await;
    assert_eq!(asleep["pid"].as_u64(), Some(u64::from(pid)), "same process");
    let rss = wait_for(
        "a sleeping memory reading well below the awake one",
        T,
        || async {
            h.status("alpha")
                .await
                .and_then(|s| s["memory_rss"].as_u64())
                .filter(|rss| *rss * 2 < awake)
        },
    )
    .await;
    let m = h
        .http
        .get(h.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains("hal0_slot_state{slot=\"alpha\",state=\"sleeping\"} 1"),
        "{m}"
    );

    // Asleep, alpha counts at its measured footprint: beta (700MiB) fits next to it, where
    // the awake alpha (700MiB declared) would have left no room under the 1GiB budget.
    assert_eq!(h.chat("beta", "Say hi.").await.status(), 200);
    let alpha = h.status("alpha").await.unwrap();
    assert_eq!(alpha["phase"], "sleeping", "not evicted: {alpha}");
    assert!(rss < 200 << 20, "sleeping footprint {rss}");

    // A request for alpha needs its weights back: beta has to make room (its turn comes after
    // its min_residency), then alpha wakes in its own process.
    let r = h.chat("alpha", "Say hi.").await;
    assert_eq!(r.status(), 200);
    let alpha = h.status("alpha").await.unwrap();
    assert_eq!(alpha["phase"], "ready", "{alpha}");
    assert_eq!(
        alpha["pid"].as_u64(),
        Some(u64::from(pid)),
        "woken, not restarted"
    );
    assert_eq!(h.status("beta").await.unwrap()["phase"], "stopped");
}
