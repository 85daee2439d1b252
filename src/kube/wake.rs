//! The gateway's `SlotControl` in a cluster: a wake scales the Slot to one (the controller then
//! brings its pod up and marks it ready), and request activity is written to the Slot's
//! `status.lastActivity` at most once per [`WRITE_EVERY`] per Slot, never once per request, so
//! the API server does not feel the request rate. One task owns the bookkeeping: wakes reach it
//! as messages; requests are counted on a [`ActivityCounter`] per Slot (atomics the gateway holds
//! and counts on directly, with no lock and no allocation), which the task reads once a tick.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{Patch, PatchParams};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::names;
use crate::core::StatusMap;
use crate::gateway::{RequestCounter, SlotControl, ready_from_views};
use crate::kube::crd::Slot;
use crate::model::{LoadError, RoutingTable, SlotName, Target};

/// At most one activity write per Slot per this interval.
pub const WRITE_EVERY: Duration = Duration::from_secs(30);

/// A repeated wake for a Slot within this interval is not sent again.
pub const REWAKE_AFTER: Duration = Duration::from_secs(10);

/// Writes to the Slots; the API server in production, a recorder in tests.
pub trait SlotWriter: Send + Sync + 'static {
    /// Sets `spec.replicas` to 1 through the scale subresource.
    fn scale_up(&self, slot: &SlotName) -> BoxFuture<'static, Result<(), kube::Error>>;
    /// Sets `status.lastActivity`.
    fn activity(
        &self,
        slot: &SlotName,
        at: Timestamp,
    ) -> BoxFuture<'static, Result<(), kube::Error>>;
}

/// [`SlotWriter`] over the API server.
pub struct ApiWriter {
    /// The Slots of the gateway's namespace.
    pub api: Api<Slot>,
}

impl SlotWriter for ApiWriter {
    fn scale_up(&self, slot: &SlotName) -> BoxFuture<'static, Result<(), kube::Error>> {
        let api = self.api.clone();
        let name = slot.to_string();
        Box::pin(async move {
            let body = serde_json::json!({"spec": {"replicas": 1}});
            let pp = PatchParams {
                field_manager: Some(names::GATEWAY_MANAGER.into()),
                ..PatchParams::default()
            };
            api.patch_scale(&name, &pp, &Patch::Merge(&body))
                .await
                .map(|_| ())
        })
    }

    fn activity(
        &self,
        slot: &SlotName,
        at: Timestamp,
    ) -> BoxFuture<'static, Result<(), kube::Error>> {
        let api = self.api.clone();
        let name = slot.to_string();
        Box::pin(async move {
            let body = serde_json::json!({"status": {"lastActivity": Time(at)}});
            let pp = PatchParams {
                field_manager: Some(names::GATEWAY_MANAGER.into()),
                ..PatchParams::default()
            };
            api.patch_status(&name, &pp, &Patch::Merge(&body))
                .await
                .map(|_| ())
        })
    }
}

/// Per-Slot bookkeeping. Pure: time is an argument.
#[derive(Debug, Default)]
pub struct Throttle {
    slots: HashMap<SlotName, Entry>,
}

/// What a wake writes besides the scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WakeWrites {
    /// Also write `lastActivity`.
    pub activity: bool,
}

#[derive(Debug, Default, Clone, Copy)]
struct Entry {
    in_flight: u32,
    /// Activity happened since the last write.
    dirty: bool,
    last_write: Option<Instant>,
    last_wake: Option<Instant>,
}

impl Throttle {
    /// What a look at the Slot's counter found: `in_flight` requests now, and whether any
    /// started or finished since the last look (`used`).
    pub fn observe(&mut self, slot: &SlotName, in_flight: u32, used: bool) {
        let e = match self.slots.get_mut(slot) {
            Some(e) => e,
            None => self.slots.entry(slot.clone()).or_default(),
        };
        e.in_flight = in_flight;
        e.dirty |= used;
    }

    /// Whether a wake is sent now (`None` within [`REWAKE_AFTER`] of the last one), and
    /// whether it also writes activity (so the controller does not idle the Slot right back
    /// down), which it does unless activity was written within [`WRITE_EVERY`].
    pub fn wake(&mut self, slot: &SlotName, now: Instant) -> Option<WakeWrites> {
        let e = self.slots.entry(slot.clone()).or_default();
        if e.last_wake
            .is_some_and(|t| now.duration_since(t) < REWAKE_AFTER)
        {
            return None;
        }
        e.last_wake = Some(now);
        let activity = e
            .last_write
            .is_none_or(|t| now.duration_since(t) >= WRITE_EVERY);
        if activity {
            e.last_write = Some(now);
            e.dirty = false;
        }
        Some(WakeWrites { activity })
    }

    /// Slots whose activity is written now: used (or still in use) since their last write,
    /// and not written within [`WRITE_EVERY`]. Marks them written.
    pub fn due(&mut self, now: Instant) -> Vec<SlotName> {
        let mut out = Vec::new();
        for (slot, e) in &mut self.slots {
            let active = e.dirty || e.in_flight > 0;
            let allowed = e
                .last_write
                .is_none_or(|t| now.duration_since(t) >= WRITE_EVERY);
            if active && allowed {
                e.last_write = Some(now);
                e.dirty = false;
                out.push(slot.clone());
            }
        }
        out.sort();
        out
    }
}

/// One Slot's requests: counted by the gateway, read by the bookkeeping task each tick.
#[derive(Debug, Default)]
pub struct ActivityCounter {
    in_flight: AtomicU32,
    /// A request started or finished since the task last looked.
    used: AtomicBool,
}

impl ActivityCounter {
    /// The requests in flight, and whether any started or finished since the last look
    /// (which this resets).
    pub fn look(&self) -> (u32, bool) {
        let used = self.used.swap(false, Ordering::Relaxed);
        (self.in_flight.load(Ordering::Relaxed), used)
    }
}

impl RequestCounter for ActivityCounter {
    fn started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.used.store(true, Ordering::Relaxed);
    }

    fn finished(&self) {
        // Never below zero (a finish without a start is a bug elsewhere, not a wrap-around).
        let _ = self
            .in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        self.used.store(true, Ordering::Relaxed);
    }
}

/// The Slots' counters, created on first use.
type Counters = Arc<Mutex<HashMap<SlotName, Arc<ActivityCounter>>>>;

/// The gateway's handle. Cheap to clone; the task stops when every handle is dropped.
#[derive(Clone)]
pub struct KubeSlotControl {
    /// Wakes, to the task.
    tx: mpsc::UnboundedSender<SlotName>,
    counters: Counters,
    /// The published views, which say when a woken Slot serves.
    routes: watch::Receiver<Arc<RoutingTable>>,
    statuses: watch::Receiver<Arc<StatusMap>>,
}

impl KubeSlotControl {
    /// Starts the bookkeeping task. `clock` gives the wall-clock time written to the Slot;
    /// `routes` and `statuses` are the gateway's views of the Slots.
    pub fn spawn(
        writer: Arc<dyn SlotWriter>,
        clock: Arc<dyn Fn() -> Timestamp + Send + Sync>,
        routes: watch::Receiver<Arc<RoutingTable>>,
        statuses: watch::Receiver<Arc<StatusMap>>,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let counters = Counters::default();
        tokio::spawn(run(rx, counters.clone(), writer, clock));
        KubeSlotControl {
            tx,
            counters,
            routes,
            statuses,
        }
    }

    /// Scales the Slot up (throttled: not again within [`REWAKE_AFTER`]).
    pub fn wake(&self, slot: &SlotName) {
        let _ = self.tx.send(slot.clone());
    }

    /// The Slot's counter (made on first use; kept while this control lives).
    pub fn slot_counter(&self, slot: &SlotName) -> Arc<ActivityCounter> {
        let mut counters = lock(&self.counters);
        if let Some(c) = counters.get(slot) {
            return c.clone();
        }
        counters.entry(slot.clone()).or_default().clone()
    }
}

fn lock(counters: &Counters) -> std::sync::MutexGuard<'_, HashMap<SlotName, Arc<ActivityCounter>>> {
    counters.lock().unwrap_or_else(|p| p.into_inner())
}

impl SlotControl for KubeSlotControl {
    fn ensure_ready(&self, slot: &SlotName) -> BoxFuture<'static, Result<Target, LoadError>> {
        let this = self.clone();
        Box::pin(ready_from_views(
            self.routes.clone(),
            self.statuses.clone(),
            slot.clone(),
            move |s| this.wake(s),
        ))
    }

    fn request_started(&self, slot: &SlotName) {
        self.slot_counter(slot).started();
    }

    fn request_finished(&self, slot: &SlotName) {
        self.slot_counter(slot).finished();
    }

    fn counter(&self, slot: &SlotName) -> Option<Arc<dyn RequestCounter>> {
        Some(self.slot_counter(slot))
    }
}

fn write_activity(writer: &Arc<dyn SlotWriter>, slot: SlotName, at: Timestamp) {
    let fut = writer.activity(&slot, at);
    tokio::spawn(async move {
        if let Err(e) = fut.await {
            tracing::warn!(%slot, error = %e, "cannot record activity on the Slot");
        }
    });
}

async fn run(
    mut rx: mpsc::UnboundedReceiver<SlotName>,
    counters: Counters,
    writer: Arc<dyn SlotWriter>,
    clock: Arc<dyn Fn() -> Timestamp + Send + Sync>,
) {
    let mut throttle = Throttle::default();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            // Wakes first: a wake's activity write then comes before a tick's, and the
            // requests that followed the wake are written one window later.
            biased;
            msg = rx.recv() => match msg {
                None => return,
                Some(slot) => {
                    if let Some(writes) = throttle.wake(&slot, Instant::now()) {
                        // Activity first, then the scale: the controller never sees the Slot
                        // at one replica with an old lastActivity (it would idle it right
                        // back down).
                        let activity = writes.activity.then(|| writer.activity(&slot, clock()));
                        let fut = writer.scale_up(&slot);
                        tokio::spawn(async move {
                            if let Some(a) = activity
                                && let Err(e) = a.await
                            {
                                tracing::warn!(%slot, error = %e, "cannot record activity on the Slot");
                            }
                            match fut.await {
                                Ok(()) => tracing::info!(%slot, "woke: scaled to one"),
                                Err(e) => tracing::warn!(%slot, error = %e, "cannot scale the Slot up"),
                            }
                        });
                    }
                }
            },
            _ = tick.tick() => {
                for (slot, counter) in lock(&counters).iter() {
                    let (in_flight, used) = counter.look();
                    throttle.observe(slot, in_flight, used);
                }
                for slot in throttle.due(Instant::now()) {
                    write_activity(&writer, slot, clock());
                }
            }
        }
    }
}
