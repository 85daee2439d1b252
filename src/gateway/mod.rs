//! The `/v1` front door: routes OpenAI-compatible requests by `model` to a slot, loading it on
//! demand, and proxies them, streaming responses through unbuffered. It reads the routing table
//! and statuses from `watch` channels and talks to the controller only through
//! [`SlotControl`]; it never touches the runtime.
//!
//! - `auth`     /v1 API keys (env vars, a keys file, per-key allowed models)
//! - `body`     the request body: `model`, `stream`, rewriting `model` for the provider
//! - `control`  the SlotControl trait (ensure_ready, activity) the controller implements
//! - `errors`   OpenAI-shaped errors (also for axum's own plain-text and empty ones)
//! - `front`    the hot path's own HTTP/1.1 server: POST /v1/* read and answered without hyper
//! - `json_scan` one checking pass over a JSON body finding top-level members, allocation-free
//! - `listen`   serving connections: cap, header/body/idle timeouts, accept backoff, drain
//! - `workers`  one single-threaded runtime per core serving the connections handed to it
//! - `latency`  a lock-free histogram of durations (time to first byte, queue wait)
//! - `metrics`  /metrics in Prometheus text: per-slot state, loads, queue wait, requests, TTFB
//! - `models`   GET /v1/models, /v1/models/{id}
//! - `stream`   streaming requests that wait for a load: SSE keep-alives, then the stream
//!   (it imports nothing from `routes`: the waiting and sending are handed to it)
//! - `view`     a connection's view of the published keys, routes and statuses, caught up per request
//! - `wake`     wait for a slot to be ready, loading it if needed
//! - `proxy`    forward a request to a slot, stream the response back
//! - `queue`    the per-slot wait queues (429 past max_queue)
//! - `reply`    the /v1 handler's answer: an upstream body as it is, or any other (boxed)
//! - `targets`  per-slot upstreams, pools and metric handles, prebuilt once per routing table
//! - `routes`   POST /v1/*: read the body, find the model, wake, proxy

mod auth;
mod body;
mod control;
mod errors;
mod front;
mod json_scan;
mod latency;
pub mod listen;
mod metrics;
mod models;
mod proxy;
mod queue;
mod reply;
mod routes;
mod stream;
mod targets;
mod view;
mod wake;
mod workers;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use auth::KeySet;
pub use control::{RequestCounter, SlotControl, ready_from_views};
pub use errors::OpenAiError;
pub use metrics::Metrics;

use crate::model::{RoutingTable, SlotName, SlotStatus};

/// Everything the gateway's handlers share: one `Arc`, so handing it to a request costs one
/// reference count (the fields are read through `Deref`).
#[derive(Clone)]
pub struct GatewayState(Arc<Shared>);

/// What [`GatewayState`] shares.
#[derive(Clone)]
pub struct Shared {
    pub routes: watch::Receiver<Arc<RoutingTable>>,
    pub statuses: watch::Receiver<Arc<BTreeMap<SlotName, SlotStatus>>>,
    pub control: Arc<dyn SlotControl>,
    /// How long a request waits for its slot to load.
    pub load_timeout: Duration,
    /// How long a request waits for its slot's turn before the load (`server.max_wait`).
    pub max_wait: Duration,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Requests that may wait for one slot's load.
    pub max_queue: u32,
    /// Requests waiting per slot.
    pub queues: Arc<queue::Queues>,
    /// Accepted `/v1` keys (empty: open).
    pub keys: watch::Receiver<Arc<KeySet>>,
    pub metrics: Arc<Metrics>,
    /// Set when shutdown's drain time is over: open streams end with an error event.
    pub cut: watch::Receiver<bool>,
    /// The routing table with each slot's upstream prebuilt.
    targets: Arc<targets::Cache>,
}

impl std::ops::Deref for GatewayState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl GatewayState {
    pub fn new(
        routes: watch::Receiver<Arc<RoutingTable>>,
        statuses: watch::Receiver<Arc<BTreeMap<SlotName, SlotStatus>>>,
        control: Arc<dyn SlotControl>,
        load_timeout: Duration,
    ) -> Self {
        let metrics = Arc::new(Metrics::new());
        GatewayState(Arc::new(Shared {
            routes,
            statuses,
            control: control.clone(),
            load_timeout,
            max_wait: Duration::from_secs(crate::model::DEFAULT_MAX_WAIT_SECS),
            max_body_bytes: 64 << 20,
            max_queue: 64,
            queues: Arc::default(),
            keys: watch::channel(Arc::new(KeySet::default())).1,
            targets: Arc::new(targets::Cache::new(metrics.clone(), control.clone())),
            metrics,
            cut: watch::channel(false).1,
        }))
    }

    /// A copy with its own reference count (the fields are shared as before): a connection
    /// takes one, so its requests' clones do not all write to one count.
    pub fn own_copy(&self) -> Self {
        GatewayState(Arc::new((*self.0).clone()))
    }

    fn shared_mut(&mut self) -> &mut Shared {
        Arc::make_mut(&mut self.0)
    }

    /// Ends open streams when `cut` becomes true (see [`listen::serve`]).
    pub fn with_cut(mut self, cut: watch::Receiver<bool>) -> Self {
        self.shared_mut().cut = cut;
        self
    }

    /// Sets the request limits (`server.max_body`, `server.max_queue`).
    pub fn with_limits(mut self, max_body_bytes: usize, max_queue: u32) -> Self {
        let s = self.shared_mut();
        s.max_body_bytes = max_body_bytes;
        s.max_queue = max_queue;
        self
    }

    /// Sets how long a request may wait for its slot's turn (`server.max_wait`).
    pub fn with_max_wait(mut self, max_wait: Duration) -> Self {
        self.shared_mut().max_wait = max_wait;
        self
    }

    /// Requires the keys published on `keys`.
    pub fn with_keys(mut self, keys: watch::Receiver<Arc<KeySet>>) -> Self {
        self.shared_mut().keys = keys;
        self
    }
}

/// The gateway's routes.
pub fn router(state: GatewayState) -> Router {
    Router::new()
        .route(
            "/health",
            get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/metrics", get(metrics::handler))
        .route("/v1/models", get(models::list))
        .route("/v1/models/{*id}", get(models::get_one))
        .route("/v1/{*rest}", post(routes::forward))
        .fallback(routes::not_found)
        .layer(axum::middleware::from_fn(errors::openai_errors))
        .with_state(state)
}

/// Serves `app` on `listener` until `shutdown` resolves, with the default [`listen::Limits`].
pub async fn serve(
    listener: TcpListener,
    app: impl Into<listen::App>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = listen::Limits {
        max_connections: listen::connection_cap(listen::Limits::default().max_connections),
        ..listen::Limits::default()
    };
    listen::serve(listener, app, shutdown, limits, watch::channel(false).0).await
}
