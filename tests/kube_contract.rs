//! Request contracts with `tower-test`: exactly what the reconciler sends to the API server
//! for a new Slot (the finalizer first), a Slot to apply (Deployment and Service by
//! server-side apply, status through the status subresource, an event), an unchanged Slot (no
//! status write), an idle Slot (a scale to zero) and a deleted Slot (cleanup, then the
//! finalizer removed).

use std::sync::Arc;
use std::time::Duration;

use hal0::crd::{Slot, SlotResourceSpec};
use hal0::kubernetes::ClusterConfig;
use hal0::kubernetes::reconcile::{Context, reconcile};
use hal0::kubernetes::status::{Observation, slot_status};
use hal0::model::{ProviderKind, SlotSpec};
use http::{Request, Response};
use http_body_util::BodyExt;
use k8s_openapi::api::apps::v1::DeploymentStatus;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::runtime::events::Reporter;
use serde_json::{Value, json};
use tower_test::mock::{self, Handle};

type ApiHandle = Handle<Request<Body>, Response<Body>>;

const SLOTS: &str = "/apis/hal0.dev/v1alpha1/namespaces/ai/slots/fast";
const DEPLOYMENT: &str = "/apis/apps/v1/namespaces/ai/deployments/hal0-slot-fast";
const SERVICE: &str = "/api/v1/namespaces/ai/services/hal0-slot-fast";

fn context() -> (Arc<Context>, ApiHandle) {
    let (svc, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(svc, "ai");
    let reporter = Reporter {
        controller: "hal0-controller".into(),
        instance: None,
    };
    (
        Arc::new(Context::new(client, ClusterConfig::default(), reporter)),
        handle,
    )
}

fn stored(finalized: bool) -> Slot {
    let spec = SlotSpec::new(ProviderKind::LlamaCpp, Some("hf:org/repo/Small.gguf"));
    let mut s = Slot::new(
        "fast",
        SlotResourceSpec {
            slot: spec,
            replicas: None,
        },
    );
    s.metadata.namespace = Some("ai".into());
    s.metadata.uid = Some("uid-1".into());
    s.metadata.generation = Some(1);
    s.metadata.resource_version = Some("1".into());
    s.metadata.creation_timestamp = Some(Time(Timestamp::now()));
    if finalized {
        s.metadata.finalizers = Some(vec!["hal0.dev/cleanup".into()]);
    }
    s
}

/// Receives the next request, checks it, answers with `answer`; returns (query, body).
async fn expect(
    handle: &mut ApiHandle,
    method: &str,
    path: &str,
    content_type: &str,
    answer: Value,
) -> (String, Value) {
    let (req, send) = tokio::time::timeout(Duration::from_secs(10), handle.next_request())
        .await
        .unwrap_or_else(|_| panic!("no request; expected {method} {path}"))
        .expect("the client is alive");
    assert_eq!(req.method().as_str(), method, "{}", req.uri());
    assert_eq!(req.uri().path(), path);
    let ct = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(
        ct.starts_with(content_type),
        "{method} {path}: content-type {ct}"
    );
    let query = req.uri().query().unwrap_or("").to_string();
    let bytes = req.into_body().collect().await.expect("body").to_bytes();
    let body: Value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("JSON body")
    };
    let resp = Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(&answer).expect("json")))
        .expect("response");
    send.send_response(resp);
    (query, body)
}

fn ready_status() -> DeploymentStatus {
    DeploymentStatus {
        replicas: Some(0),
        ..DeploymentStatus::default()
    }
}

/// Answers the Deployment apply with the applied object plus a status.
fn deployment_answer(body: &Value) -> Value {
    let mut d = body.clone();
    d["status"] = serde_json::to_value(ready_status()).expect("status");
    d
}

#[tokio::test]
async fn a_new_slot_first_gets_the_finalizer_and_nothing_else() {
    let (ctx, mut handle) = context();
    let slot = Arc::new(stored(false));
    let server = tokio::spawn(async move {
        let mut answer = serde_json::to_value(stored(true)).expect("slot");
        answer["kind"] = json!("Slot");
        let (_, body) = expect(
            &mut handle,
            "PATCH",
            SLOTS,
            "application/json-patch+json",
            answer,
        )
        .await;
        assert_eq!(
            body,
            json!([
                {"op": "test", "path": "/metadata/finalizers", "value": null},
                {"op": "add", "path": "/metadata/finalizers", "value": ["hal0.dev/cleanup"]}
            ])
        );
        handle
    });
    let action = tokio::time::timeout(Duration::from_secs(10), reconcile(slot, ctx))
        .await
        .expect("reconcile made no request beyond the expected ones")
        .expect("reconciled");
    assert_eq!(action, Action::await_change());
    let mut handle = server.await.expect("server");
    assert!(
        !matches!(
            tokio::time::timeout(Duration::from_millis(50), handle.next_request()).await,
            Ok(Some(_))
        ),
        "nothing after the finalizer"
    );
}

#[tokio::test]
async fn a_slot_is_applied_then_its_status_written_and_an_event_published() {
    let (ctx, mut handle) = context();
    let slot = Arc::new(stored(true));
    let server = tokio::spawn(async move {
        let (_, d) = peek_apply(&mut handle, DEPLOYMENT).await;
        assert_eq!(d["kind"], "Deployment");
        let (q, s) = peek_apply(&mut handle, SERVICE).await;
        assert!(q.contains("fieldManager=hal0-controller"), "{q}");
        assert_eq!(s["spec"]["ports"][0]["port"], 8080);
        let mut answer = serde_json::to_value(stored(true)).expect("slot");
        answer["kind"] = json!("Slot");
        let (q, st) = expect(
            &mut handle,
            "PATCH",
            &format!("{SLOTS}/status"),
            "application/apply-patch+yaml",
            answer,
        )
        .await;
        assert!(q.contains("fieldManager=hal0-controller"), "{q}");
        assert_eq!(st["status"]["phase"], "stopped");
        assert_eq!(st["status"]["observedGeneration"], 1);
        assert_eq!(
            st["status"]["endpoint"],
            "http://hal0-slot-fast.ai.svc:8080"
        );
        assert!(
            st["status"].get("lastActivity").is_none(),
            "the gateway owns lastActivity"
        );
        let (_, ev) = expect(
            &mut handle,
            "POST",
            "/apis/events.k8s.io/v1/namespaces/ai/events",
            "application/json",
            json!({}),
        )
        .await;
        assert_eq!(ev["reason"], "Stopped");
        assert_eq!(ev["regarding"]["name"], "fast");
        handle
    });
    let action = tokio::time::timeout(Duration::from_secs(10), reconcile(slot, ctx))
        .await
        .expect("reconcile made no request beyond the expected ones")
        .expect("reconciled");
    assert_eq!(action, Action::requeue(Duration::from_secs(300)));
    server.await.expect("server");
}

/// Expects a server-side apply to `path` and answers with the applied object (plus a
/// Deployment status for Deployments).
async fn peek_apply(handle: &mut ApiHandle, path: &str) -> (String, Value) {
    let (req, send) = tokio::time::timeout(Duration::from_secs(10), handle.next_request())
        .await
        .unwrap_or_else(|_| panic!("no request; expected apply to {path}"))
        .expect("client alive");
    assert_eq!(req.method().as_str(), "PATCH");
    assert_eq!(req.uri().path(), path);
    let ct = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(ct.starts_with("application/apply-patch+yaml"), "{ct}");
    let query = req.uri().query().unwrap_or("").to_string();
    let bytes = req.into_body().collect().await.expect("body").to_bytes();
    let body: Value = serde_json::from_slice(&bytes).expect("json");
    let answer = if path == DEPLOYMENT {
        deployment_answer(&body)
    } else {
        body.clone()
    };
    let resp = Response::builder()
        .status(200)
        .body(Body::from(serde_json::to_vec(&answer).expect("json")))
        .expect("response");
    send.send_response(resp);
    (query, body)
}

#[tokio::test]
async fn an_unchanged_status_is_not_written_again() {
    let (ctx, mut handle) = context();
    let mut slot = stored(true);
    let endpoint = "http://hal0-slot-fast.ai.svc:8080".to_string();
    let status = ready_status();
    let now = Timestamp::now();
    slot.status = Some(slot_status(
        &slot,
        &Observation::Applied(Some(&status)),
        Some(endpoint),
        now,
    ));
    let slot = Arc::new(slot);
    let server = tokio::spawn(async move {
        peek_apply(&mut handle, DEPLOYMENT).await;
        peek_apply(&mut handle, SERVICE).await;
        handle
    });
    tokio::time::timeout(Duration::from_secs(10), reconcile(slot, ctx))
        .await
        .expect("reconcile made no request beyond the expected ones")
        .expect("reconciled");
    let mut handle = server.await.expect("server");
    assert!(
        !matches!(
            tokio::time::timeout(Duration::from_millis(50), handle.next_request()).await,
            Ok(Some(_))
        ),
        "no status write when nothing changed"
    );
}

#[tokio::test]
async fn an_idle_slot_is_scaled_to_zero_through_the_scale_subresource() {
    let (ctx, mut handle) = context();
    let mut slot = stored(true);
    slot.spec.replicas = Some(1);
    slot.metadata.creation_timestamp =
        Some(Time(Timestamp::from_second(1_000_000_000).expect("t")));
    let slot = Arc::new(slot);
    let server = tokio::spawn(async move {
        let (_, d) = peek_apply(&mut handle, DEPLOYMENT).await;
        assert_eq!(d["spec"]["replicas"], 1);
        peek_apply(&mut handle, SERVICE).await;
        let mut answer = serde_json::to_value(stored(true)).expect("slot");
        answer["kind"] = json!("Slot");
        expect(
            &mut handle,
            "PATCH",
            &format!("{SLOTS}/status"),
            "application/apply-patch+yaml",
            answer,
        )
        .await;
        expect(
            &mut handle,
            "POST",
            "/apis/events.k8s.io/v1/namespaces/ai/events",
            "application/json",
            json!({}),
        )
        .await;
        let scale = json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
            "metadata": {"name": "fast"}, "spec": {"replicas": 0}});
        let (_, body) = expect(
            &mut handle,
            "PATCH",
            &format!("{SLOTS}/scale"),
            "application/merge-patch+json",
            scale,
        )
        .await;
        assert_eq!(body, json!({"spec": {"replicas": 0}}));
        handle
    });
    tokio::time::timeout(Duration::from_secs(10), reconcile(slot, ctx))
        .await
        .expect("reconcile made no request beyond the expected ones")
        .expect("reconciled");
    server.await.expect("server");
}

#[tokio::test]
async fn a_deleted_slot_is_cleaned_up_then_released() {
    let (ctx, mut handle) = context();
    let mut slot = stored(true);
    slot.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
    let slot = Arc::new(slot);
    let server = tokio::spawn(async move {
        let gone =
            json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}});
        let (q, _) = expect(
            &mut handle,
            "DELETE",
            DEPLOYMENT,
            "application/json",
            gone.clone(),
        )
        .await;
        assert!(q.is_empty() || !q.contains("dryRun"), "{q}");
        expect(&mut handle, "DELETE", SERVICE, "application/json", gone).await;
        let mut answer = serde_json::to_value(stored(false)).expect("slot");
        answer["kind"] = json!("Slot");
        let (_, body) = expect(
            &mut handle,
            "PATCH",
            SLOTS,
            "application/json-patch+json",
            answer,
        )
        .await;
        assert_eq!(
            body,
            json!([
                {"op": "test", "path": "/metadata/finalizers/0", "value": "hal0.dev/cleanup"},
                {"op": "remove", "path": "/metadata/finalizers/0"}
            ])
        );
        handle
    });
    let action = tokio::time::timeout(Duration::from_secs(10), reconcile(slot, ctx))
        .await
        .expect("reconcile made no request beyond the expected ones")
        .expect("reconciled");
    assert_eq!(action, Action::await_change());
    server.await.expect("server");
}
