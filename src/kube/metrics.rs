//! The controller's `/metrics` (OpenMetrics text, names prefixed `hal0_controller_`):
//! reconciles by result, reconcile duration, Slots waiting for a reconcile (the queue), those
//! in flight, watch errors, and whether this replica leads.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

/// Every controller metric. Cheap to update from many tasks.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ResultLabel, Counter>,
    duration: Histogram,
    queue: Gauge,
    in_flight: Gauge,
    watch_errors: Counter,
    leader: Gauge,
    /// Slots triggered and not yet picked up (namespace/name), deduplicated like the queue.
    pending: Mutex<HashSet<(String, String)>>,
    /// Set once the Slot watch has listed everything.
    synced: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("hal0_controller");
        let reconciles = Family::<ResultLabel, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles that finished, by result (ok, error)",
            reconciles.clone(),
        );
        let duration = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "reconcile_duration_seconds",
            "How long one reconcile took",
            duration.clone(),
        );
        let queue = Gauge::default();
        registry.register(
            "queue_depth",
            "Slots whose change is waiting for a reconcile",
            queue.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "reconciles_in_flight",
            "Reconciles running now",
            in_flight.clone(),
        );
        let watch_errors = Counter::default();
        registry.register(
            "watch_errors",
            "Errors from the Slot, Deployment and Service watches (each is retried)",
            watch_errors.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease",
            leader.clone(),
        );
        Metrics {
            registry,
            reconciles,
            duration,
            queue,
            in_flight,
            watch_errors,
            leader,
            pending: Mutex::new(HashSet::new()),
            synced: AtomicBool::new(false),
        }
    }
}

impl Metrics {
    /// A watch event asked for a reconcile of this Slot.
    pub fn triggered(&self, namespace: &str, name: &str) {
        if let Ok(mut p) = self.pending.lock() {
            p.insert((namespace.to_string(), name.to_string()));
            self.queue.set(i64::try_from(p.len()).unwrap_or(i64::MAX));
        }
    }

    /// A reconcile of this Slot started.
    pub fn started(&self, namespace: &str, name: &str) {
        if let Ok(mut p) = self.pending.lock() {
            p.remove(&(namespace.to_string(), name.to_string()));
            self.queue.set(i64::try_from(p.len()).unwrap_or(i64::MAX));
        }
        self.in_flight.inc();
    }

    /// A reconcile finished.
    pub fn finished(&self, took: Duration, ok: bool) {
        self.in_flight.dec();
        self.duration.observe(took.as_secs_f64());
        let result = if ok { "ok" } else { "error" };
        self.reconciles
            .get_or_create(&ResultLabel {
                result: result.into(),
            })
            .inc();
    }

    pub fn watch_error(&self) {
        self.watch_errors.inc();
    }

    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    pub fn set_synced(&self) {
        self.synced.store(true, Ordering::SeqCst);
    }

    /// Whether the Slot watch has listed everything (what `/readyz` reports).
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::SeqCst)
    }

    /// The OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
