//! Faults a real control plane can produce on demand: the API server restarts after etcd was
//! compacted past what the controller last saw, so its watches come back with 410 Gone and
//! must relist; and a stream of activity writes racing the idle decision (each one a 409 for
//! the controller's preconditioned scale-to-zero) never lets a busy Slot be scaled down. Its
//! own binary: restarting the API server would disturb other tests.

mod cluster;

use std::time::Duration;

use cluster::{WAIT, cluster, controller, get, slot_yaml, until};

/// The tests here restart the API server: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
use serde_json::{Value, json};

async fn reconciled(ns: &str, name: &str) {
    // After an API server restart its RBAC and watch caches take a few seconds to fill (403s,
    // then 410s); the controller must see new Slots within seconds of that, not after the
    // 30 s backoffs kube-runtime's Controller would stack over its merged trigger stream.
    until(&format!("Slot {ns}/{name} reconciled"), WAIT, || async {
        let s = get("slot", ns, name).await?;
        s["status"]["phase"].is_string().then_some(())
    })
    .await;
}

/// etcd's current revision, through its HTTP gateway.
async fn etcd_revision(http: &reqwest::Client, etcd: &str) -> i64 {
    let r: Value = http
        .post(format!("{etcd}/v3/kv/range"))
        .json(&json!({"key": "Lw=="}))
        .send()
        .await
        .expect("etcd range")
        .json()
        .await
        .expect("etcd json");
    r["header"]["revision"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("revision")
}

#[ignore = "needs the Kubernetes control plane built by scripts/setup-kube.sh; scripts/test.sh runs it"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_relist_after_a_compaction_and_an_api_server_restart() {
    let _serial = SERIAL.lock().await;
    let c = cluster();
    let ns = c.namespace("relist");
    let other = c.namespace("noise");
    let t0 = std::time::Instant::now();
    let ctl = controller(Some(&ns), &["--leader-elect=false"]);
    assert!(c.apply(&ns, &slot_yaml("before", "")).ok());
    reconciled(&ns, "before").await;
    eprintln!("{:?} first Slot reconciled", t0.elapsed());

    // Writes the controller does not watch move etcd on; then compact past all of them.
    for i in 0..30 {
        let out = c.kubectl(&["create", "configmap", &format!("noise-{i}"), "-n", &other]);
        assert!(out.ok(), "{}", out.stderr);
    }
    let http = reqwest::Client::new();
    let rev = etcd_revision(&http, &c.etcd).await;
    let resp = http
        .post(format!("{}/v3/kv/compaction", c.etcd))
        .json(&json!({"revision": rev.to_string(), "physical": true}))
        .send()
        .await
        .expect("compact");
    assert!(resp.status().is_success(), "compaction: {}", resp.status());

    eprintln!("{:?} compacted", t0.elapsed());
    c.restart("kube-apiserver");
    eprintln!("{:?} API server restarted", t0.elapsed());
    let out = c.apply(&ns, &slot_yaml("after", ""));
    assert!(out.ok(), "{}", out.stderr);
    eprintln!("{:?} second Slot applied", t0.elapsed());
    reconciled(&ns, "after").await;
    eprintln!("{:?} second Slot reconciled", t0.elapsed());
    assert!(
        ctl.log_text().contains("watch failed"),
        "the watch errors were logged at warn"
    );
}

#[ignore = "needs the Kubernetes control plane built by scripts/setup-kube.sh; scripts/test.sh runs it"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_racing_the_idle_decision_keeps_a_busy_slot_up() {
    let _serial = SERIAL.lock().await;
    let c = cluster();
    let ns = c.namespace("race");
    let _ctl = controller(Some(&ns), &["--leader-elect=false"]);
    assert!(
        c.apply(
            &ns,
            &slot_yaml("busy", "  autoload: true\n  idle_timeout: 2s\n")
        )
        .ok()
    );
    until("busy ready", WAIT, || async {
        let s = get("slot", &ns, "busy").await?;
        (s["status"]["phase"] == "ready").then_some(())
    })
    .await;
    // What the gateway does while requests flow: lastActivity, every 300 ms, for 6 s (three
    // idle timeouts). Each write races the controller's idle decision.
    let end = std::time::Instant::now() + Duration::from_secs(6);
    while std::time::Instant::now() < end {
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        let patch = json!({"status": {"lastActivity": now}}).to_string();
        let out = c.kubectl(&[
            "patch",
            "slot",
            "busy",
            "-n",
            &ns,
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch,
        ]);
        assert!(out.ok(), "{}", out.stderr);
        let s = get("slot", &ns, "busy").await.expect("slot");
        assert_ne!(s["spec"]["replicas"], 0, "a busy Slot was scaled to zero");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Once the activity stops, it idles.
    until("busy scaled to zero once quiet", WAIT, || async {
        let s = get("slot", &ns, "busy").await?;
        (s["spec"]["replicas"] == 0).then_some(())
    })
    .await;
}
