//! What the gateway needs from whoever runs the slots.

use crate::model::SlotName;

/// Implemented by the controller's handle; a fake in tests.
pub trait SlotControl: Send + Sync + 'static {
    /// A request wants this slot loaded.
    fn wake(&self, slot: &SlotName);
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
}

/// Marks a request in flight for as long as it lives, response body included.
pub struct InFlight {
    control: std::sync::Arc<dyn SlotControl>,
    slot: std::sync::Arc<SlotName>,
}

impl InFlight {
    /// `slot` is shared (the gateway's routing entry holds one per slot), so counting a
    /// request allocates nothing.
    pub fn begin(
        control: std::sync::Arc<dyn SlotControl>,
        slot: impl Into<std::sync::Arc<SlotName>>,
    ) -> Self {
        let slot = slot.into();
        control.request_started(&slot);
        InFlight { control, slot }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.control.request_finished(&self.slot);
    }
}
