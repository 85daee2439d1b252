//! The gateway's `SlotControl` in a cluster: a wake scales the Slot to one (the controller then
//! brings its pod up and marks it ready), and request activity is written to the Slot's
//! `status.lastActivity` at most once per [`WRITE_EVERY`] per Slot, never once per request, so
//! the API server does not feel the request rate. One task owns the bookkeeping; the trait's
//! sync methods only send it messages.

use std::collections::HashMap;
use std::sync::Arc;
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
use crate::gateway::{SlotControl, ready_from_views};
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
    pub fn started(&mut self, slot: &SlotName) {
        let e = self.slots.entry(slot.clone()).or_default();
        e.in_flight += 1;
        e.dirty = true;
    }

    pub fn finished(&mut self, slot: &SlotName) {
        let e = self.slots.entry(slot.clone()).or_default();
        e.in_flight = e.in_flight.saturating_sub(1);
        e.dirty = true;
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

enum Msg {
    Wake(SlotName),
    Started(SlotName),
    Finished(SlotName),
}

/// The gateway's handle. Cheap to clone; the task stops when every handle is dropped.
#[derive(Clone)]
pub struct KubeSlotControl {
    tx: mpsc::UnboundedSender<Msg>,
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
        tokio::spawn(run(rx, writer, clock));
        KubeSlotControl {
            tx,
            routes,
            statuses,
        }
    }

    /// Scales the Slot up (throttled: not again within [`REWAKE_AFTER`]).
    pub fn wake(&self, slot: &SlotName) {
        let _ = self.tx.send(Msg::Wake(slot.clone()));
    }
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
        let _ = self.tx.send(Msg::Started(slot.clone()));
    }

    fn request_finished(&self, slot: &SlotName) {
        let _ = self.tx.send(Msg::Finished(slot.clone()));
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
    mut rx: mpsc::UnboundedReceiver<Msg>,
    writer: Arc<dyn SlotWriter>,
    clock: Arc<dyn Fn() -> Timestamp + Send + Sync>,
) {
    let mut throttle = Throttle::default();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                None => return,
                Some(Msg::Started(slot)) => throttle.started(&slot),
                Some(Msg::Finished(slot)) => throttle.finished(&slot),
                Some(Msg::Wake(slot)) => {
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
                for slot in throttle.due(Instant::now()) {
                    write_activity(&writer, slot, clock());
                }
            }
        }
    }
}
