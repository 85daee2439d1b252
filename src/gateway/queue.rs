//! The per-slot wait queues: a request for a slot that does not accept requests takes a
//! place (429 past `max_queue`) and gives it back when it is sent on, fails or goes away.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use tokio::time::Instant;

use super::{GatewayState, OpenAiError, SlotControl};
use crate::model::SlotName;

/// Requests waiting for each slot to load.
#[derive(Debug, Default)]
pub struct Queues(Mutex<HashMap<SlotName, u32>>);

/// A place in a slot's wait queue, given back on drop. The controller sees it as a request
/// waiting for the slot (since `since`), not one in flight.
pub struct QueueTicket {
    queues: Arc<Queues>,
    control: Arc<dyn SlotControl>,
    slot: SlotName,
    since: Instant,
}

impl QueueTicket {
    /// Joins the slot's queue, or refuses with 429 when `max` requests already wait.
    pub fn join(state: &GatewayState, slot: &SlotName) -> Result<QueueTicket, OpenAiError> {
        let mut q = state.queues.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = q.entry(slot.clone()).or_insert(0);
        if *n >= state.max_queue {
            let retry = state
                .statuses
                .borrow()
                .get(slot)
                .and_then(|s| s.last_load_ms)
                .map_or(5, |ms| ms.div_ceil(1000));
            return Err(OpenAiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                format!(
                    "{} requests are already waiting for slot {slot} to load; try again shortly",
                    state.max_queue
                ),
            )
            .code("queue_full")
            .retry_after(retry));
        }
        *n += 1;
        drop(q);
        let since = Instant::now();
        state.control.request_waiting(slot, since);
        Ok(QueueTicket {
            queues: state.queues.clone(),
            control: state.control.clone(),
            slot: slot.clone(),
            since,
        })
    }
}

impl Drop for QueueTicket {
    fn drop(&mut self) {
        {
            let mut q = self.queues.0.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = q.get_mut(&self.slot) {
                *n = n.saturating_sub(1);
            }
        }
        self.control.request_done_waiting(&self.slot, self.since);
    }
}
