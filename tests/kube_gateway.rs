//! The in-cluster gateway over the fake API server: it routes by model name (slot name, alias,
//! model id) to a Slot's Service, wakes a Slot at zero replicas by scaling it to one and waits
//! for it to be ready, fails a Degraded Slot at once, and writes activity at most once per
//! 30 s per Slot however many requests arrive.

mod kube_support;

use std::time::Duration;

use hal0::crd::Slot;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use kube_support::fake_api::{FakeApi, Kind};
use kube_support::gateway::Gateway;
use kube_support::harness::{WAIT, slot};
use serde_json::{Value, json};

async fn create(api: &FakeApi, name: &str, aliases: &[&str]) {
    let mut s = slot(name);
    s.spec.slot.aliases = aliases.iter().map(|a| a.to_string()).collect();
    let slots: Api<Slot> = Api::namespaced(api.client(), "ai");
    slots
        .create(&PostParams::default(), &s)
        .await
        .expect("create");
}

/// Plays the controller: the Slot shows `phase` and its endpoint.
async fn set_status(api: &FakeApi, name: &str, phase: &str, endpoint: &str, degraded: bool) {
    let slots: Api<Slot> = Api::namespaced(api.client(), "ai");
    let conditions = if degraded {
        json!([{"type": "Degraded", "status": "True", "reason": "ProgressDeadlineExceeded",
            "message": "image pull failed", "lastTransitionTime": "2025-01-01T00:00:00Z"}])
    } else {
        json!([])
    };
    let body = json!({"status": {"phase": phase, "endpoint": endpoint, "conditions": conditions}});
    slots
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&body))
        .await
        .expect("status");
}

async fn chat(gw: &Gateway, model: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", gw.url))
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Waits until the gateway's /v1/models lists `model`.
async fn until_listed(gw: &Gateway, model: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let body: Value = reqwest::get(format!("{}/v1/models", gw.url))
            .await
            .expect("models")
            .json()
            .await
            .unwrap_or(Value::Null);
        let listed = body["data"]
            .as_array()
            .is_some_and(|d| d.iter().any(|m| m["id"] == model));
        if listed {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{model} never listed: {body}"
        );
        // The routing table follows the Slot watch; poll the public API, bounded.
        tokio::task::yield_now().await;
        let _ = tokio::time::timeout(Duration::from_millis(20), std::future::pending::<()>()).await;
    }
}

fn status_patches(api: &FakeApi, name: &str) -> usize {
    api.requests()
        .iter()
        .filter(|r| r.method == "PATCH" && r.path.ends_with(&format!("/slots/{name}/status")))
        .count()
}

#[tokio::test]
async fn requests_route_by_name_alias_and_model_id_to_the_slot_service() {
    let api = FakeApi::start().await;
    let (upstream, _u) = kube_support::upstream::start().await;
    create(&api, "fast", &["quick"]).await;
    set_status(&api, "fast", "ready", &upstream, false).await;
    let gw = Gateway::start(&api, WAIT).await;
    until_listed(&gw, "fast").await;
    for model in ["fast", "quick", "Small"] {
        let (code, body) = chat(&gw, model).await;
        assert_eq!(code, 200, "{model}: {body}");
        assert_eq!(body["model"], model);
    }
    let (code, body) = chat(&gw, "nope").await;
    assert_eq!(code, 404, "{body}");
    gw.stop().await;
}

#[tokio::test]
async fn a_slot_at_zero_is_woken_by_a_scale_to_one_and_served_when_ready() {
    let api = FakeApi::start().await;
    let (upstream, _u) = kube_support::upstream::start().await;
    create(&api, "fast", &[]).await;
    set_status(&api, "fast", "stopped", &upstream, false).await;
    let gw = Gateway::start(&api, WAIT).await;
    until_listed(&gw, "fast").await;
    let url = gw.url.clone();
    let request = tokio::spawn(async move {
        reqwest::Client::new()
            .post(format!("{url}/v1/chat/completions"))
            .json(&json!({"model": "fast", "messages": []}))
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    api.wait_for("the gateway scaled the Slot to one", WAIT, |a| {
        a.get(Kind::Slot, "ai", "fast")
            .is_some_and(|s| s["spec"]["replicas"] == 1)
    })
    .await;
    api.wait_for("activity recorded with the wake", WAIT, |a| {
        a.get(Kind::Slot, "ai", "fast")
            .is_some_and(|s| s["status"]["lastActivity"].is_string())
    })
    .await;
    set_status(&api, "fast", "ready", &upstream, false).await;
    let code = tokio::time::timeout(WAIT, request)
        .await
        .expect("the request finished")
        .expect("task")
        .expect("response");
    assert_eq!(code, 200);
    gw.stop().await;
}

#[tokio::test]
async fn a_degraded_slot_fails_at_once_with_503() {
    let api = FakeApi::start().await;
    create(&api, "fast", &[]).await;
    let slots: Api<Slot> = Api::namespaced(api.client(), "ai");
    slots
        .patch_scale(
            "fast",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 1}})),
        )
        .await
        .expect("scale");
    set_status(&api, "fast", "crash-loop", "http://127.0.0.1:9", true).await;
    let gw = Gateway::start(&api, Duration::from_secs(600)).await;
    until_listed(&gw, "fast").await;
    let (code, body) = tokio::time::timeout(WAIT, chat(&gw, "fast"))
        .await
        .expect("no wait");
    assert_eq!(code, 503, "{body}");
    let msg = body["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("image pull failed"), "{msg}");
    gw.stop().await;
}

#[tokio::test]
async fn many_requests_write_activity_at_most_once_per_30s() {
    let api = FakeApi::start().await;
    let (upstream, _u) = kube_support::upstream::start().await;
    create(&api, "fast", &[]).await;
    set_status(&api, "fast", "ready", &upstream, false).await;
    let before = status_patches(&api, "fast");
    let gw = Gateway::start(&api, WAIT).await;
    until_listed(&gw, "fast").await;
    for _ in 0..25 {
        assert_eq!(chat(&gw, "fast").await.0, 200);
    }
    api.wait_for("one activity write", WAIT, |a| {
        status_patches(a, "fast") > before
    })
    .await;
    // The 25 requests finished within one 30 s window: exactly one write.
    assert_eq!(status_patches(&api, "fast") - before, 1);
    gw.stop().await;
}
