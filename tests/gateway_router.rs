//! The `/v1` gateway in process: `router(state).oneshot(...)` against the real router, with a
//! fake `SlotControl` (the test decides when and how a load ends) and a real HTTP upstream on
//! 127.0.0.1:0. Needs no provider. Tests that involve no network run on virtual time.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode};
use axum::response::Response;
use futures_util::future::BoxFuture;
use hal0::core::{self, ObservedSlot};
use hal0::gateway::{self, GatewayState, SlotControl};
use hal0::model::{DesiredState, LoadError, Phase, SlotName, Target};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};
use tower::ServiceExt;

/// A bound for anything the test waits on.
const BOUND: Duration = Duration::from_secs(10);

type Verdict = Option<Result<Target, LoadError>>;

/// Records every call; `ensure_ready` answers with whatever the test puts in `verdict`.
struct FakeControl {
    calls: Mutex<Vec<String>>,
    changed: Notify,
    verdict: watch::Sender<Verdict>,
    /// `ensure_ready` futures alive right now.
    waits: Arc<Mutex<u32>>,
}

struct LiveWait(Arc<Mutex<u32>>);

impl Drop for LiveWait {
    fn drop(&mut self) {
        *self.0.lock().unwrap() -= 1;
    }
}

impl FakeControl {
    fn new() -> Arc<Self> {
        Arc::new(FakeControl {
            calls: Mutex::default(),
            changed: Notify::new(),
            verdict: watch::channel(None).0,
            waits: Arc::default(),
        })
    }

    fn record(&self, call: String) {
        self.calls.lock().unwrap().push(call);
        self.changed.notify_waiters();
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    /// Waits (bounded) until `call` has been recorded.
    async fn until_called(&self, call: &str) {
        let wait = async {
            loop {
                let notified = self.changed.notified();
                if self.calls().iter().any(|c| c == call) {
                    return;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(BOUND, wait).await.is_err() {
            panic!("{call:?} never happened; calls: {:?}", self.calls());
        }
    }

    fn answer(&self, verdict: Result<Target, LoadError>) {
        self.verdict.send_replace(Some(verdict));
    }
}

impl SlotControl for FakeControl {
    fn ensure_ready(&self, slot: &SlotName) -> BoxFuture<'static, Result<Target, LoadError>> {
        self.record(format!("ensure_ready {slot}"));
        *self.waits.lock().unwrap() += 1;
        let live = LiveWait(self.waits.clone());
        let mut rx = self.verdict.subscribe();
        Box::pin(async move {
            let _live = live;
            match rx.wait_for(Option::is_some).await {
                Ok(v) => v.clone().unwrap_or(Err(LoadError::ShuttingDown)),
                Err(_) => Err(LoadError::ShuttingDown),
            }
        })
    }

    fn request_started(&self, slot: &SlotName) {
        self.record(format!("started {slot}"));
    }

    fn request_finished(&self, slot: &SlotName) {
        self.record(format!("finished {slot}"));
    }

    fn request_waiting(&self, slot: &SlotName, _since: tokio::time::Instant) {
        self.record(format!("waiting {slot}"));
    }

    fn request_done_waiting(&self, slot: &SlotName, _since: tokio::time::Instant) {
        self.record(format!("done waiting {slot}"));
    }
}

/// The gateway over one llama.cpp slot `chat` on `port`, in `phase`, with the routing table
/// and statuses projected by the core from a real config.
struct Gateway {
    state: GatewayState,
    control: Arc<FakeControl>,
    statuses_tx: watch::Sender<Arc<core::StatusMap>>,
    routes_tx: watch::Sender<Arc<hal0::model::RoutingTable>>,
    desired: DesiredState,
    ports: BTreeMap<SlotName, u16>,
}

fn chat() -> SlotName {
    SlotName::parse("chat").unwrap()
}

fn gateway(phase: Phase, port: u16) -> Gateway {
    let text = "[slots.chat]\nprovider = \"llama.cpp\"\nmodel = \"/models/chat.gguf\"\n";
    let desired = hal0::config::parse(std::path::Path::new("hal0.toml"), text).unwrap();
    let ports = BTreeMap::from([(chat(), port)]);
    let observed = BTreeMap::from([(
        chat(),
        ObservedSlot {
            phase,
            ..ObservedSlot::default()
        },
    )]);
    let routes = core::routing_table(&desired, &observed, &ports);
    let statuses = core::statuses(&desired, &observed, &ports, Duration::ZERO, 0);
    let (routes_tx, routes_rx) = watch::channel(Arc::new(routes));
    let (statuses_tx, statuses_rx) = watch::channel(Arc::new(statuses));
    let control = FakeControl::new();
    let state = GatewayState::new(
        routes_rx,
        statuses_rx,
        control.clone(),
        Duration::from_secs(2),
    )
    .with_max_wait(Duration::from_secs(1));
    Gateway {
        state,
        control,
        statuses_tx,
        routes_tx,
        desired,
        ports,
    }
}

impl Gateway {
    fn set_phase(&self, phase: Phase) {
        let observed = BTreeMap::from([(
            chat(),
            ObservedSlot {
                phase,
                ..ObservedSlot::default()
            },
        )]);
        let statuses = core::statuses(&self.desired, &observed, &self.ports, Duration::ZERO, 0);
        self.statuses_tx.send_replace(Arc::new(statuses));
    }

    /// Publishes the slot ready on `port`, as the controller does before it answers a wait.
    fn serve_on(&mut self, port: u16) {
        self.ports.insert(chat(), port);
        let observed = BTreeMap::from([(
            chat(),
            ObservedSlot {
                phase: Phase::Ready,
                ..ObservedSlot::default()
            },
        )]);
        let routes = core::routing_table(&self.desired, &observed, &self.ports);
        self.routes_tx.send_replace(Arc::new(routes));
        self.set_phase(Phase::Ready);
    }

    async fn send(&self, body: Value) -> Response {
        let req = Request::post("/v1/chat/completions")
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        gateway::router(self.state.clone())
            .oneshot(req)
            .await
            .unwrap()
    }
}

async fn text(resp: Response) -> String {
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}

async fn json_of(resp: Response) -> Value {
    let t = text(resp).await;
    serde_json::from_str(&t).unwrap_or_else(|e| panic!("not JSON ({e}): {t}"))
}

/// A real upstream: answers every request with what it got.
async fn upstream() -> SocketAddr {
    let app = axum::Router::new().fallback(|req: Request<Body>| async move {
        let path = req.uri().path().to_string();
        let body = req.into_body().collect().await.unwrap().to_bytes();
        axum::Json(json!({"path": path, "body": String::from_utf8_lossy(&body)}))
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test]
async fn a_ready_slot_is_proxied_and_counted_in_flight_until_the_body_is_read() {
    let up = upstream().await;
    let g = gateway(Phase::Ready, up.port());
    let resp = g.send(json!({"model": "chat", "messages": []})).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        g.control.calls(),
        ["started chat"],
        "in flight while the body streams"
    );
    let v = json_of(resp).await;
    assert_eq!(v["path"], "/v1/chat/completions");
    assert!(
        v["body"].as_str().unwrap().contains("\"model\":\"chat\""),
        "{v}"
    );
    g.control.until_called("finished chat").await;
    assert!(
        !g.control
            .calls()
            .iter()
            .any(|c| c.starts_with("ensure_ready"))
    );
}

#[tokio::test]
async fn an_unknown_model_is_a_404_naming_the_closest_one() {
    let g = gateway(Phase::Ready, 9);
    let resp = g.send(json!({"model": "chta", "messages": []})).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let v = json_of(resp).await;
    assert_eq!(v["error"]["code"], "model_not_found");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("did you mean \"chat\"?"),
        "{v}"
    );
    assert!(g.control.calls().is_empty());
}

#[tokio::test]
async fn a_request_for_a_stopped_slot_waits_in_its_queue_then_goes_where_the_reply_says() {
    let up = upstream().await;
    let mut g = gateway(Phase::Stopped, 9);
    let pending = tokio::spawn({
        let state = g.state.clone();
        async move {
            let req = Request::post("/v1/chat/completions")
                .body(Body::from(r#"{"model":"chat"}"#))
                .unwrap();
            gateway::router(state).oneshot(req).await.unwrap()
        }
    });
    g.control.until_called("ensure_ready chat").await;
    // Never counted in flight on a slot that does not serve: a sleeping slot with a request
    // in flight would be marked ready, its weights back without the admission waking takes.
    assert_eq!(g.control.calls(), ["waiting chat", "ensure_ready chat"]);
    // Loaded, on another port than the table said when the request came.
    g.serve_on(up.port());
    g.control.answer(Ok(Target::Local { port: up.port() }));
    let resp = pending.await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(json_of(resp).await["path"], "/v1/chat/completions");
    g.control.until_called("finished chat").await;
    let calls = g.control.calls();
    assert_eq!(
        &calls[2..4],
        ["started chat", "done waiting chat"],
        "in flight before leaving the queue: {calls:?}"
    );
}

#[tokio::test]
async fn load_errors_keep_their_status_code_and_retry_after() {
    let slot = chat();
    let cases = [
        (
            LoadError::Failed {
                slot: slot.clone(),
                why: "provider exited with code 1".into(),
                retry_after_secs: 7,
            },
            502,
            "slot_load_failed",
            Some("7"),
        ),
        (
            LoadError::TimedOut {
                slot: slot.clone(),
                why: "provider did not become ready within load_timeout (2s)".into(),
                retry_after_secs: 3,
            },
            504,
            "slot_load_timeout",
            Some("3"),
        ),
        (
            LoadError::CannotFit {
                slot: slot.clone(),
                why: "cannot load slot chat: needs 2GiB".into(),
                retry_after_secs: 10,
            },
            503,
            "slot_cannot_fit",
            Some("10"),
        ),
        (
            LoadError::CrashLoop {
                slot: slot.clone(),
                why: "bad model".into(),
                retry_after_secs: 30,
            },
            503,
            "slot_crash_loop",
            Some("30"),
        ),
        (
            LoadError::Removed { slot: slot.clone() },
            404,
            "model_not_found",
            None,
        ),
    ];
    for (error, status, code, retry) in cases {
        let g = gateway(Phase::Stopped, 9);
        let message = error.to_string();
        g.control.answer(Err(error));
        let resp = g.send(json!({"model": "chat"})).await;
        assert_eq!(resp.status().as_u16(), status, "{code}");
        let retry_after = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        assert_eq!(retry_after.as_deref(), retry, "{code}");
        let v = json_of(resp).await;
        assert_eq!(v["error"]["code"], code);
        assert_eq!(v["error"]["message"], message);
        assert_eq!(
            g.control.calls().last().unwrap(),
            "done waiting chat",
            "the queue place is given back"
        );
    }
}

#[tokio::test]
async fn a_full_wait_queue_is_a_429() {
    let mut g = gateway(Phase::Stopped, 9);
    g.state = g.state.clone().with_limits(1 << 20, 1);
    let first = tokio::spawn({
        let state = g.state.clone();
        async move {
            let req = Request::post("/v1/chat/completions")
                .body(Body::from(r#"{"model":"chat"}"#))
                .unwrap();
            gateway::router(state).oneshot(req).await.unwrap()
        }
    });
    g.control.until_called("ensure_ready chat").await;
    let resp = g.send(json!({"model": "chat"})).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(json_of(resp).await["error"]["code"], "queue_full");
    g.control.answer(Err(LoadError::ShuttingDown));
    assert_eq!(
        first.await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
}

/// The next data frame of a streaming body, bounded.
async fn frame(body: &mut Body) -> Option<Bytes> {
    loop {
        match tokio::time::timeout(Duration::from_secs(3600), body.frame()).await {
            Ok(Some(Ok(f))) => match f.into_data() {
                Ok(d) => return Some(d),
                Err(_) => continue,
            },
            Ok(_) => return None,
            Err(_) => panic!("no frame within the bound"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_streaming_request_gets_keepalives_while_it_waits_and_an_error_event_when_the_load_fails()
{
    let g = gateway(Phase::Stopped, 9);
    let t0 = tokio::time::Instant::now();
    let resp = g.send(json!({"model": "chat", "stream": true})).await;
    assert_eq!(resp.status(), StatusCode::OK, "answered at once");
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    let first = frame(&mut body).await.unwrap();
    assert!(
        first.starts_with(b": hal0: waiting for slot chat to load"),
        "{first:?}"
    );
    let second = frame(&mut body).await.unwrap();
    assert_eq!(second, first);
    assert_eq!(
        tokio::time::Instant::now() - t0,
        Duration::from_secs(5),
        "a keep-alive every 5 s"
    );
    g.control.answer(Err(LoadError::Failed {
        slot: chat(),
        why: "boom".into(),
        retry_after_secs: 1,
    }));
    let last = frame(&mut body).await.unwrap();
    let event: Value =
        serde_json::from_slice(last.strip_prefix(b"data: ").unwrap().trim_ascii()).unwrap();
    assert_eq!(event["error"]["code"], "slot_load_failed");
    assert_eq!(event["error"]["message"], "slot chat failed to load: boom");
    assert_eq!(
        frame(&mut body).await,
        None,
        "the stream ends after the error"
    );
}

#[tokio::test(start_paused = true)]
async fn a_client_that_goes_away_withdraws_its_wait() {
    let g = gateway(Phase::Stopped, 9);
    let resp = g.send(json!({"model": "chat", "stream": true})).await;
    let mut body = resp.into_body();
    frame(&mut body).await.unwrap();
    assert_eq!(*g.control.waits.lock().unwrap(), 1);
    drop(body);
    g.control.until_called("done waiting chat").await;
    assert_eq!(
        *g.control.waits.lock().unwrap(),
        0,
        "the ensure_ready future is dropped"
    );
}

#[tokio::test(start_paused = true)]
async fn a_wait_no_reply_ends_is_bounded_by_max_wait_plus_load_timeout() {
    let g = gateway(Phase::Stopped, 9);
    let t0 = tokio::time::Instant::now();
    let resp = g.send(json!({"model": "chat"})).await;
    assert_eq!(resp.status(), StatusCode::GATEWAY_TIMEOUT);
    // max_wait 1 s + load_timeout 2 s + 3 s for the runtime's own verdict to arrive first.
    assert_eq!(tokio::time::Instant::now() - t0, Duration::from_secs(6));
    let v = json_of(resp).await;
    assert_eq!(v["error"]["code"], "slot_load_timeout");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("within max_wait (1s)"),
        "{v}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_control_that_only_sees_the_views_wakes_at_every_change_until_the_slot_serves() {
    // Kubernetes' SlotControl: no controller to ask, only the published routes and statuses.
    let g = gateway(Phase::Stopped, 8080);
    let wakes = Arc::new(Mutex::new(0u32));
    let wait = tokio::spawn(gateway::ready_from_views(
        g.state.routes.clone(),
        g.state.statuses.clone(),
        chat(),
        {
            let wakes = wakes.clone();
            move |_: &SlotName| *wakes.lock().unwrap() += 1
        },
    ));
    tokio::task::yield_now().await;
    assert_eq!(*wakes.lock().unwrap(), 1);
    g.set_phase(Phase::Loading);
    tokio::task::yield_now().await;
    assert_eq!(
        *wakes.lock().unwrap(),
        2,
        "woken again: a scale-down may have raced the first"
    );
    g.set_phase(Phase::Ready);
    assert_eq!(wait.await.unwrap(), Ok(Target::Local { port: 8080 }));

    g.set_phase(Phase::CrashLoop);
    let parked = gateway::ready_from_views(
        g.state.routes.clone(),
        g.state.statuses.clone(),
        chat(),
        |_: &SlotName| {},
    )
    .await;
    assert!(
        matches!(parked, Err(LoadError::CrashLoop { .. })),
        "{parked:?}"
    );
}
