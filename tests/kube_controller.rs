//! The Slot controller against an in-process fake API server: create → Deployment + Service +
//! status; spec change → rollout; scale to zero and back (wake and idle); delete → cleanup
//! through the finalizer; a restarted controller adopts what exists (no duplicates); an
//! invalid spec is Degraded and applies nothing.

mod kube_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use hal0::crd::Slot;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube_support::fake_api::{FakeApi, Kind};
use kube_support::harness::{WAIT, slot, start};
use serde_json::{Value, json};

fn phase(api: &FakeApi, name: &str) -> Option<String> {
    api.get(Kind::Slot, "ai", name)
        .and_then(|s| s["status"]["phase"].as_str().map(str::to_string))
}

fn condition(api: &FakeApi, name: &str, type_: &str) -> Option<(String, String)> {
    let s = api.get(Kind::Slot, "ai", name)?;
    s["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_string(),
                c["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
}

fn replicas(api: &FakeApi, name: &str) -> Option<i64> {
    api.get(Kind::Deployment, "ai", &format!("hal0-slot-{name}"))
        .and_then(|d| d["spec"]["replicas"].as_i64())
}

async fn create(api: &FakeApi, s: &Slot) {
    let slots: Api<Slot> = Api::namespaced(api.client(), "ai");
    slots
        .create(&PostParams::default(), s)
        .await
        .expect("create Slot");
}

async fn scale(api: &FakeApi, name: &str, n: i32) {
    let slots: Api<Slot> = Api::namespaced(api.client(), "ai");
    slots
        .patch_scale(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": n}})),
        )
        .await
        .expect("scale");
}

fn args(api: &FakeApi, name: &str) -> Vec<String> {
    api.get(Kind::Deployment, "ai", &format!("hal0-slot-{name}"))
        .and_then(|d| {
            serde_json::from_value::<Vec<String>>(
                d["spec"]["template"]["spec"]["containers"][0]["args"].clone(),
            )
            .ok()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_new_slot_gets_a_deployment_a_service_and_a_status() {
    let api = FakeApi::start().await;
    let ctl = start(&api, Arc::new(AtomicI64::new(0)));
    create(&api, &slot("fast")).await;
    api.wait_for("status with Ready=True and phase stopped", WAIT, |a| {
        phase(a, "fast").as_deref() == Some("stopped")
            && condition(a, "fast", "Ready") == Some(("True".into(), "Reconciled".into()))
    })
    .await;
    let s = api.get(Kind::Slot, "ai", "fast").expect("slot");
    assert_eq!(s["metadata"]["finalizers"], json!(["hal0.dev/cleanup"]));
    assert_eq!(
        s["status"]["observedGeneration"],
        s["metadata"]["generation"]
    );
    assert_eq!(s["status"]["endpoint"], "http://hal0-slot-fast.ai.svc:8080");
    assert_eq!(
        condition(&api, "fast", "Loaded"),
        Some(("False".into(), "ScaledToZero".into()))
    );
    let uid = s["metadata"]["uid"].clone();
    for kind in [Kind::Deployment, Kind::Service] {
        let o = api.get(kind, "ai", "hal0-slot-fast").expect("owned object");
        assert_eq!(o["metadata"]["ownerReferences"][0]["uid"], uid, "{kind:?}");
    }
    assert_eq!(replicas(&api, "fast"), Some(0));
    api.wait_for("an event for the new phase", WAIT, |a| {
        a.events()
            .iter()
            .any(|e| e["reason"] == "Stopped" && e["regarding"]["name"] == "fast")
    })
    .await;
    ctl.stop().await;
}

#[tokio::test]
async fn a_spec_change_rolls_out_and_a_scale_wakes_and_idles() {
    let api = FakeApi::start().await;
    let offset = Arc::new(AtomicI64::new(0));
    let ctl = start(&api, offset.clone());
    create(&api, &slot("fast")).await;
    api.wait_for("the Deployment", WAIT, |a| replicas(a, "fast") == Some(0))
        .await;

    let slots: Api<Slot> = Api::namespaced(api.client(), "ai");
    let change = json!({"spec": {"args": ["--ctx-size", "2048"]}});
    slots
        .patch("fast", &PatchParams::default(), &Patch::Merge(&change))
        .await
        .expect("patch spec");
    api.wait_for(
        "the new args in the Deployment and observedGeneration 2",
        WAIT,
        |a| {
            args(a, "fast").ends_with(&["--ctx-size".to_string(), "2048".to_string()])
                && a.get(Kind::Slot, "ai", "fast")
                    .is_some_and(|s| s["status"]["observedGeneration"] == json!(2))
        },
    )
    .await;

    // Wake: the gateway scales the Slot to one.
    api.set_pods_ready(false);
    scale(&api, "fast", 1).await;
    api.wait_for("a loading slot", WAIT, |a| {
        replicas(a, "fast") == Some(1) && phase(a, "fast").as_deref() == Some("loading")
    })
    .await;
    api.set_pods_ready(true);
    api.wait_for("a ready slot", WAIT, |a| {
        phase(a, "fast").as_deref() == Some("ready")
            && condition(a, "fast", "Loaded") == Some(("True".into(), "PodReady".into()))
    })
    .await;

    // Idle: an hour later with no activity the controller scales it back to zero.
    offset.store(3600, Ordering::SeqCst);
    let touch = json!({"metadata": {"annotations": {"test/touch": "1"}}});
    slots
        .patch("fast", &PatchParams::default(), &Patch::Merge(&touch))
        .await
        .expect("touch");
    api.wait_for("scaled to zero and stopped", WAIT, |a| {
        replicas(a, "fast") == Some(0) && phase(a, "fast").as_deref() == Some("stopped")
    })
    .await;
    ctl.stop().await;
}

#[tokio::test]
async fn deleting_a_slot_cleans_up_through_the_finalizer() {
    let api = FakeApi::start().await;
    let ctl = start(&api, Arc::new(AtomicI64::new(0)));
    create(&api, &slot("fast")).await;
    api.wait_for("Deployment and Service", WAIT, |a| {
        a.get(Kind::Service, "ai", "hal0-slot-fast").is_some() && phase(a, "fast").is_some()
    })
    .await;
    let slots: Api<Slot> = Api::namespaced(api.client(), "ai");
    slots
        .delete("fast", &DeleteParams::default())
        .await
        .expect("delete");
    api.wait_for("the Slot, its Deployment and its Service gone", WAIT, |a| {
        a.get(Kind::Slot, "ai", "fast").is_none()
            && a.all(Kind::Deployment).is_empty()
            && a.all(Kind::Service).is_empty()
    })
    .await;
    let deletes: Vec<String> = api
        .requests()
        .into_iter()
        .filter(|r| r.method == "DELETE" && !r.path.contains("/slots/"))
        .map(|r| r.path)
        .collect();
    assert!(
        deletes
            .iter()
            .any(|p| p.ends_with("/deployments/hal0-slot-fast")),
        "{deletes:?}"
    );
    assert!(
        deletes
            .iter()
            .any(|p| p.ends_with("/services/hal0-slot-fast")),
        "{deletes:?}"
    );
    ctl.stop().await;
}

#[tokio::test]
async fn a_restarted_controller_adopts_what_exists() {
    let api = FakeApi::start().await;
    let ctl = start(&api, Arc::new(AtomicI64::new(0)));
    create(&api, &slot("fast")).await;
    create(&api, &slot("embed-two")).await;
    api.wait_for("both slots reconciled", WAIT, |a| {
        phase(a, "fast").is_some() && phase(a, "embed-two").is_some()
    })
    .await;
    ctl.stop().await;
    let before = api.requests().len();
    let ctl = start(&api, Arc::new(AtomicI64::new(0)));
    api.wait_for(
        "the new controller applied both Deployments again",
        WAIT,
        |a| {
            a.requests()[before..]
                .iter()
                .filter(|r| r.method == "PATCH" && r.path.contains("/deployments/"))
                .count()
                >= 2
        },
    )
    .await;
    assert_eq!(api.all(Kind::Deployment).len(), 2);
    assert_eq!(api.all(Kind::Service).len(), 2);
    assert!(
        !api.requests().iter().any(|r| r.method == "POST"
            && (r.path.contains("/deployments") || r.path.contains("/services"))),
        "objects are server-side applied, never POSTed twice"
    );
    let finalizers: Vec<Value> = api
        .all(Kind::Slot)
        .into_iter()
        .map(|s| s["metadata"]["finalizers"].clone())
        .collect();
    assert!(
        finalizers.iter().all(|f| *f == json!(["hal0.dev/cleanup"])),
        "{finalizers:?}"
    );
    ctl.stop().await;
}

#[tokio::test]
async fn an_invalid_spec_is_degraded_and_applies_nothing() {
    let api = FakeApi::start().await;
    let ctl = start(&api, Arc::new(AtomicI64::new(0)));
    let mut bad = slot("fast");
    bad.spec.slot.upstream = Some("http://example.invalid/v1".into());
    create(&api, &bad).await;
    api.wait_for("Degraded=True InvalidSpec", WAIT, |a| {
        condition(a, "fast", "Degraded") == Some(("True".into(), "InvalidSpec".into()))
    })
    .await;
    let s = api.get(Kind::Slot, "ai", "fast").expect("slot");
    let msg = s["status"]["conditions"][2]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(msg.contains("spec.upstream"), "{msg}");
    assert!(api.all(Kind::Deployment).is_empty());
    ctl.stop().await;
}
