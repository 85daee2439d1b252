//! What the gateway needs from whoever runs the slots.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use tokio::sync::watch;

use crate::model::{LoadError, RoutingTable, SlotName, SlotStatus, Target};

/// Implemented by the controller's handle (one box) and `KubeSlotControl` (in a cluster); a
/// fake in tests.
pub trait SlotControl: Send + Sync + 'static {
    /// Wakes the slot if needed and answers once it accepts requests, with where to send them,
    /// or with why it will not (removed, refused, failed or timed-out load, crash-loop,
    /// shutdown). One load answers every request waiting for it. Dropping the future withdraws
    /// the wait (an abandoned load may then be cancelled).
    fn ensure_ready(&self, slot: &SlotName) -> BoxFuture<'static, Result<Target, LoadError>>;
    /// A request to this slot started; it is not unloaded, evicted or restarted until finished.
    fn request_started(&self, slot: &SlotName);
    /// That request ended (completed, failed or cancelled).
    fn request_finished(&self, slot: &SlotName);
    /// A request started waiting (at `since`) for this slot to serve. By default it counts as
    /// a request in flight.
    fn request_waiting(&self, slot: &SlotName, since: tokio::time::Instant) {
        let _ = since;
        self.request_started(slot);
    }
    /// That request stopped waiting (it is sent on, failed, or went away).
    fn request_done_waiting(&self, slot: &SlotName, since: tokio::time::Instant) {
        let _ = since;
        self.request_finished(slot);
    }
    /// A counter of `slot`'s requests to count on directly, when this control keeps one (the
    /// gateway takes it once per routing table): then counting a request takes no lock and no
    /// lookup. By default, none: requests are counted through `request_started`/`_finished`.
    fn counter(&self, slot: &SlotName) -> Option<Arc<dyn RequestCounter>> {
        let _ = slot;
        None
    }
}

/// One slot's count of requests in flight (see [`SlotControl::counter`]).
pub trait RequestCounter: Send + Sync + 'static {
    fn started(&self);
    fn finished(&self);
}

/// `ensure_ready` for a control that sees only the published routes and statuses (Kubernetes):
/// calls `wake` and again at every status change until the slot accepts requests, is removed,
/// or is parked in crash-loop. A failed load there shows as a crash-loop (Degraded); a load
/// that never comes is bounded by the gateway's own wait limit.
pub async fn ready_from_views(
    mut routes: watch::Receiver<Arc<RoutingTable>>,
    mut statuses: watch::Receiver<Arc<std::collections::BTreeMap<SlotName, SlotStatus>>>,
    slot: SlotName,
    wake: impl Fn(&SlotName),
) -> Result<Target, LoadError> {
    let mut failures_before = None;
    loop {
        {
            let all = statuses.borrow_and_update();
            let Some(s) = all.get(&slot) else {
                return Err(LoadError::Removed { slot });
            };
            let before = *failures_before.get_or_insert(s.load_failures);
            if s.accepts_requests() {
                return routes
                    .borrow_and_update()
                    .routes
                    .get(&slot)
                    .map(|r| r.target.clone())
                    .ok_or(LoadError::Removed { slot: slot.clone() });
            }
            if let Some(e) = LoadError::verdict(&slot, s, before) {
                return Err(e);
            }
        }
        wake(&slot);
        if statuses.changed().await.is_err() {
            return Err(LoadError::ShuttingDown);
        }
    }
}

/// Marks a request in flight for as long as it lives, response body included.
pub struct InFlight(Counted);

enum Counted {
    On(Arc<dyn RequestCounter>),
    Through {
        control: Arc<dyn SlotControl>,
        slot: Arc<SlotName>,
    },
}

impl InFlight {
    /// Counted on `counter` when there is one, else through `control`. `slot` is shared (the
    /// gateway's routing entry holds one per slot): counting a request allocates nothing.
    pub fn on(
        counter: Option<&Arc<dyn RequestCounter>>,
        control: &Arc<dyn SlotControl>,
        slot: &Arc<SlotName>,
    ) -> Self {
        match counter {
            Some(c) => {
                c.started();
                InFlight(Counted::On(c.clone()))
            }
            None => {
                control.request_started(slot);
                InFlight(Counted::Through {
                    control: control.clone(),
                    slot: slot.clone(),
                })
            }
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        match &self.0 {
            Counted::On(c) => c.finished(),
            Counted::Through { control, slot } => control.request_finished(slot),
        }
    }
}
