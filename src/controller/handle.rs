//! `ControlHandle`: what the rest of hal0 (the gateway, the API) uses to talk to the controller
//! task. Every call is a message or a short std-mutex section; none waits on the controller
//! except `ensure_ready`, whose reply is the point.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::activity::{ActivityTracker, SlotCounter};
use crate::core::Event;
use crate::model::{LoadError, SlotName, Target};
use crate::runtime::LogBuffer;

/// The reply to [`ControlHandle::ensure_ready`].
pub type ReadyReply = oneshot::Sender<Result<Target, LoadError>>;

/// A message to the controller task.
pub enum Request {
    /// An event about the slot from outside (`Wake`, `Load`, `Unload`).
    Event(SlotName, Event),
    /// A request waits for the slot to serve; answer when it does or cannot.
    EnsureReady(SlotName, ReadyReply),
}

/// Cheap to clone.
#[derive(Clone)]
pub struct ControlHandle {
    pub(super) requests: mpsc::UnboundedSender<Request>,
    pub(super) activity: Arc<ActivityTracker>,
    pub(super) logs: watch::Receiver<Arc<BTreeMap<SlotName, LogBuffer>>>,
}

impl ControlHandle {
    /// Wakes the slot and answers once it accepts requests (`Ok` with where to send them), or
    /// with why it will not: removed, refused, failed, timed out, crash-looping, or hal0 is
    /// shutting down. One load answers every request waiting for it. Dropping the future
    /// withdraws the wait.
    pub fn ensure_ready(
        &self,
        slot: &SlotName,
    ) -> impl Future<Output = Result<Target, LoadError>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let sent = self
            .requests
            .send(Request::EnsureReady(slot.clone(), tx))
            .is_ok();
        async move {
            if !sent {
                return Err(LoadError::ShuttingDown);
            }
            rx.await.unwrap_or(Err(LoadError::ShuttingDown))
        }
    }

    /// An explicit load: also lifts a crash-loop.
    pub fn load(&self, slot: &SlotName) {
        let _ = self
            .requests
            .send(Request::Event(slot.clone(), Event::Load));
    }

    pub fn unload(&self, slot: &SlotName) {
        let _ = self
            .requests
            .send(Request::Event(slot.clone(), Event::Unload));
    }

    /// `slot`'s request counter: counting on it takes no lock.
    pub fn counter(&self, slot: &SlotName) -> Arc<SlotCounter> {
        self.activity.counter(slot)
    }

    pub fn request_started(&self, slot: &SlotName) {
        self.activity.started(slot);
    }

    pub fn request_finished(&self, slot: &SlotName) {
        self.activity.finished(slot);
    }

    /// A request started waiting for the slot to serve.
    pub fn request_waiting(&self, slot: &SlotName, since: Instant) {
        self.activity.waiting(slot, since);
    }

    /// That request stopped waiting.
    pub fn request_done_waiting(&self, slot: &SlotName, since: Instant) {
        self.activity.done_waiting(slot, since);
    }

    /// The slot's captured provider output.
    pub fn logs(&self, slot: &SlotName) -> Option<LogBuffer> {
        self.logs.borrow().get(slot).cloned()
    }
}
