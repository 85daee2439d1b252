//! `GET /metrics`: Prometheus (OpenMetrics) text, names prefixed `hal0_`, per-slot series
//! labelled `slot`. Request metrics (queue wait included) are recorded by the handlers; slot
//! state, loads, load durations, restarts, evictions, swaps, residencies and waiting requests
//! are derived from the published statuses by [`Metrics::follow_statuses`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use super::GatewayState;
use super::latency::Latency;
use crate::model::{Phase, SlotName, SlotStatus};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SlotLabel {
    slot: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    slot: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    slot: String,
    endpoint: String,
    status: String,
}

const PHASES: [Phase; 9] = [
    Phase::Stopped,
    Phase::Pulling,
    Phase::Loading,
    Phase::Ready,
    Phase::Idle,
    Phase::Sleeping,
    Phase::Unloading,
    Phase::Failed,
    Phase::CrashLoop,
];

/// The bounds of every duration histogram: 1 ms .. ~4.6 min.
fn seconds_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.001, 2.5, 15)
}

fn seconds_histogram() -> Histogram {
    Histogram::new(seconds_buckets())
}

/// For what every request records (no lock: see [`Latency`]).
fn seconds_latency() -> Latency {
    Latency::new(seconds_buckets())
}

type Latencies<L> = Family<L, Latency, fn() -> Latency>;

/// Every hal0 metric.
pub struct Metrics {
    registry: Registry,
    state: Family<StateLabels, Gauge>,
    loads: Family<SlotLabel, Counter>,
    load_duration: Family<SlotLabel, Histogram>,
    queue_wait: Latencies<SlotLabel>,
    requests: Family<RequestLabels, Counter>,
    ttfb: Latencies<SlotLabel>,
    upstream_errors: Family<SlotLabel, Counter>,
    evictions: Family<SlotLabel, Counter>,
    restarts: Family<SlotLabel, Counter>,
    swaps: Family<SlotLabel, Counter>,
    residency: Family<SlotLabel, Histogram>,
    waiting: Family<SlotLabel, Gauge>,
    /// Last statuses seen, to count transitions.
    last: Mutex<BTreeMap<SlotName, SlotStatus>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("hal0");
        let state = Family::<StateLabels, Gauge>::default();
        let loads = Family::<SlotLabel, Counter>::default();
        let load_duration = Family::<SlotLabel, Histogram>::new_with_constructor(
            seconds_histogram as fn() -> Histogram,
        );
        let queue_wait = Latencies::<SlotLabel>::new_with_constructor(seconds_latency);
        let requests = Family::<RequestLabels, Counter>::default();
        let ttfb = Latencies::<SlotLabel>::new_with_constructor(seconds_latency);
        let upstream_errors = Family::<SlotLabel, Counter>::default();
        let evictions = Family::<SlotLabel, Counter>::default();
        let restarts = Family::<SlotLabel, Counter>::default();
        let swaps = Family::<SlotLabel, Counter>::default();
        let residency = Family::<SlotLabel, Histogram>::new_with_constructor(
            seconds_histogram as fn() -> Histogram,
        );
        let waiting = Family::<SlotLabel, Gauge>::default();
        registry.register(
            "slot_state",
            "1 for the state each slot is in, 0 for the others",
            state.clone(),
        );
        registry.register("slot_loads", "Loads started", loads.clone());
        registry.register(
            "slot_load_duration_seconds",
            "Time from start to ready",
            load_duration.clone(),
        );
        registry.register(
            "queue_wait_seconds",
            "Time requests waited for their slot to serve (its load, its turn, a drain)",
            queue_wait.clone(),
        );
        registry.register(
            "requests",
            "Requests by slot, endpoint and status",
            requests.clone(),
        );
        registry.register(
            "time_to_first_byte_seconds",
            "Time from request to the upstream's response headers",
            ttfb.clone(),
        );
        registry.register(
            "upstream_errors",
            "Requests the upstream failed (no response)",
            upstream_errors.clone(),
        );
        registry.register(
            "slot_evictions",
            "Slots evicted to make room for another",
            evictions.clone(),
        );
        registry.register(
            "slot_restarts",
            "Restarts after a crash or failed health",
            restarts.clone(),
        );
        registry.register(
            "slot_swaps",
            "Times a ready slot was swapped out for another slot's turn",
            swaps.clone(),
        );
        registry.register(
            "slot_residency_seconds",
            "How long a slot stayed loaded, from ready until it was stopped",
            residency.clone(),
        );
        registry.register(
            "slot_waiting_requests",
            "Requests waiting for the slot to serve (its load, its turn, a drain)",
            waiting.clone(),
        );
        Metrics {
            registry,
            swaps,
            residency,
            waiting,
            state,
            loads,
            load_duration,
            queue_wait,
            requests,
            ttfb,
            upstream_errors,
            evictions,
            restarts,
            last: Mutex::new(BTreeMap::new()),
        }
    }

    fn slot(s: &str) -> SlotLabel {
        SlotLabel {
            slot: s.to_string(),
        }
    }

    pub fn request(&self, slot: &str, endpoint: &str, status: StatusCode) {
        let labels = RequestLabels {
            slot: slot.to_string(),
            endpoint: endpoint.to_string(),
            status: status.as_u16().to_string(),
        };
        self.requests.get_or_create(&labels).inc();
    }

    pub fn ttfb(&self, slot: &str, d: Duration) {
        self.ttfb.get_or_create(&Self::slot(slot)).observe(d);
    }

    pub fn queue_wait(&self, slot: &str, d: Duration) {
        self.queue_wait.get_or_create(&Self::slot(slot)).observe(d);
    }

    pub fn upstream_error(&self, slot: &str) {
        self.upstream_errors.get_or_create(&Self::slot(slot)).inc();
    }

    /// The handles one slot's requests record into, created once per slot (see [`SlotMetrics`]).
    pub fn for_slot(self: &Arc<Self>, slot: &str) -> SlotMetrics {
        SlotMetrics {
            metrics: self.clone(),
            label: Self::slot(slot),
            ttfb: OnceLock::new(),
            queue_wait: OnceLock::new(),
            upstream_errors: OnceLock::new(),
            ok: Default::default(),
        }
    }

    /// Updates the slot-derived metrics from a new set of statuses.
    pub fn observe_statuses(&self, statuses: &BTreeMap<SlotName, SlotStatus>) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        for (name, s) in statuses {
            let label = Self::slot(name.as_str());
            for p in PHASES {
                let v = i64::from(p == s.phase);
                self.state
                    .get_or_create(&StateLabels {
                        slot: name.to_string(),
                        state: p.to_string(),
                    })
                    .set(v);
            }
            let prev = last.get(name);
            let prev_phase = prev.map(|p| p.phase);
            self.waiting.get_or_create(&label).set(i64::from(s.waiting));
            if s.phase == Phase::Unloading
                && prev_phase.is_some_and(|p| p != Phase::Unloading)
                && let Some(ms) = s.last_residency_ms
            {
                self.residency
                    .get_or_create(&label)
                    .observe(ms as f64 / 1000.0);
            }
            let prev_swaps = prev.map_or(0, |p| p.swaps);
            if s.swaps > prev_swaps {
                self.swaps
                    .get_or_create(&label)
                    .inc_by(u64::from(s.swaps - prev_swaps));
            }
            if s.phase == Phase::Loading && prev_phase != Some(Phase::Loading) {
                self.loads.get_or_create(&label).inc();
            }
            if s.phase == Phase::Ready
                && prev_phase == Some(Phase::Loading)
                && let Some(ms) = s.last_load_ms
            {
                self.load_duration
                    .get_or_create(&label)
                    .observe(ms as f64 / 1000.0);
            }
            let (prev_restarts, prev_evictions) =
                prev.map_or((0, 0), |p| (p.restarts, p.evictions));
            if s.restarts > prev_restarts {
                self.restarts
                    .get_or_create(&label)
                    .inc_by(u64::from(s.restarts - prev_restarts));
            }
            if s.evictions > prev_evictions {
                self.evictions
                    .get_or_create(&label)
                    .inc_by(u64::from(s.evictions - prev_evictions));
            }
        }
        *last = statuses.clone();
    }

    /// Follows the statuses channel until it closes.
    pub async fn follow_statuses(
        self: Arc<Self>,
        mut rx: watch::Receiver<Arc<BTreeMap<SlotName, SlotStatus>>>,
    ) {
        loop {
            let current = rx.borrow_and_update().clone();
            self.observe_statuses(&current);
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// The endpoint labels: known `/v1` endpoints by name, anything else as `other`, so the
/// label's cardinality stays bounded.
const ENDPOINTS: [&str; 8] = [
    "chat/completions",
    "completions",
    "embeddings",
    "rerank",
    "audio/transcriptions",
    "audio/translations",
    "audio/speech",
    "other",
];

/// A request's endpoint, as an index into the endpoint labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint(usize);

impl Endpoint {
    pub fn of_path(path: &str) -> Endpoint {
        Endpoint(match path.trim_end_matches('/') {
            "/v1/chat/completions" => 0,
            "/v1/completions" => 1,
            "/v1/embeddings" => 2,
            "/v1/rerank" | "/v1/reranking" => 3,
            "/v1/audio/transcriptions" => 4,
            "/v1/audio/translations" => 5,
            "/v1/audio/speech" => 6,
            _ => 7,
        })
    }

    pub fn label(self) -> &'static str {
        ENDPOINTS[self.0]
    }
}

/// One slot's request metrics, created once per slot when the routing table changes (not per
/// request): the series handles are looked up on first use and kept, so recording a request
/// allocates nothing and takes no lock. A series appears in `/metrics` once it has been used.
pub struct SlotMetrics {
    metrics: Arc<Metrics>,
    label: SlotLabel,
    ttfb: OnceLock<Latency>,
    queue_wait: OnceLock<Latency>,
    upstream_errors: OnceLock<Counter>,
    /// `requests{status="200"}` per endpoint, the common case; other statuses are looked up.
    ok: [OnceLock<Counter>; ENDPOINTS.len()],
}

impl SlotMetrics {
    pub fn request(&self, endpoint: Endpoint, status: StatusCode) {
        if status == StatusCode::OK {
            self.ok[endpoint.0]
                .get_or_init(|| {
                    self.metrics
                        .requests
                        .get_or_create(&RequestLabels {
                            slot: self.label.slot.clone(),
                            endpoint: endpoint.label().to_string(),
                            status: "200".to_string(),
                        })
                        .clone()
                })
                .inc();
        } else {
            self.metrics
                .request(&self.label.slot, endpoint.label(), status);
        }
    }

    pub fn ttfb(&self, d: Duration) {
        self.ttfb
            .get_or_init(|| self.metrics.ttfb.get_or_create(&self.label).clone())
            .observe(d);
    }

    pub fn queue_wait(&self, d: Duration) {
        self.queue_wait
            .get_or_init(|| self.metrics.queue_wait.get_or_create(&self.label).clone())
            .observe(d);
    }

    pub fn upstream_error(&self) {
        self.upstream_errors
            .get_or_init(|| {
                self.metrics
                    .upstream_errors
                    .get_or_create(&self.label)
                    .clone()
            })
            .inc();
    }
}

pub async fn handler(State(state): State<GatewayState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ProviderKind, Role};

    fn status(phase: Phase) -> SlotStatus {
        SlotStatus {
            name: SlotName::parse("primary").unwrap(),
            phase,
            provider: ProviderKind::LlamaCpp,
            role: Role::Chat,
            model: None,
            port: Some(1),
            pid: None,
            memory_estimate: None,
            in_flight: 0,
            waiting: 0,
            waiting_since_unix_ms: None,
            draining_for: None,
            swaps: 0,
            last_residency_ms: None,
            last_request_unix_ms: None,
            restarts: 0,
            evictions: 0,
            load_failures: 0,
            refused: false,
            last_error: None,
            retry_in_ms: None,
            last_load_ms: Some(1500),
            pull: None,
            memory_rss: None,
            memory_peak: None,
            restarting: false,
        }
    }

    #[test]
    fn loads_and_states_come_from_status_transitions() {
        let m = Metrics::new();
        let name = SlotName::parse("primary").unwrap();
        for phase in [Phase::Stopped, Phase::Loading, Phase::Ready] {
            m.observe_statuses(&BTreeMap::from([(name.clone(), status(phase))]));
        }
        let mut restarted = status(Phase::Ready);
        restarted.restarts = 2;
        m.observe_statuses(&BTreeMap::from([(name, restarted)]));
        m.request("primary", "chat/completions", StatusCode::OK);
        let text = m.encode();
        assert!(
            text.contains("hal0_slot_loads_total{slot=\"primary\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("hal0_slot_state{slot=\"primary\",state=\"ready\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("hal0_slot_state{slot=\"primary\",state=\"loading\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("hal0_slot_load_duration_seconds_count{slot=\"primary\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("hal0_slot_restarts_total{slot=\"primary\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("hal0_requests_total{slot=\"primary\",endpoint=\"chat/completions\",status=\"200\"} 1"),
            "{text}"
        );
    }
}
