//! Waiting for a slot to serve. The first request for a stopped slot asks the controller to
//! load it; every request then waits on the published statuses, so one load serves all
//! waiting requests (single flight) and a failed load fails all of them at once. A slot that
//! cannot be loaded next to the ones serving waits for its turn (at most `max_wait`, then the
//! load): so does a request for a slot being drained for another's turn.

use axum::http::StatusCode;
use tokio::time::Instant;

use super::control::InFlight;
use super::routes::QueueTicket;
use super::{GatewayState, OpenAiError};
use crate::model::{LOAD_TIMED_OUT, Phase, SlotName, SlotStatus};

/// See `until_serving`.
const VERDICT_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// Seconds a client should wait before retrying a slot, from its observed load time.
fn retry_after(status: &SlotStatus) -> u64 {
    let load_secs = status.last_load_ms.map_or(10, |ms| ms.div_ceil(1000));
    match status.phase {
        Phase::CrashLoop => 30,
        Phase::Failed => status
            .retry_in_ms
            .map_or(load_secs, |ms| ms.div_ceil(1000) + load_secs),
        _ => load_secs,
    }
}

/// Whether a new request may be sent to `slot` now.
pub fn accepts(state: &GatewayState, slot: &SlotName) -> bool {
    state
        .statuses
        .borrow()
        .get(slot)
        .is_some_and(SlotStatus::accepts_requests)
}

/// Waits in the slot's queue (`ticket`) until the slot accepts requests, then counts the
/// request in flight and gives the place in the queue back.
pub async fn admitted(
    state: &GatewayState,
    slot: &SlotName,
    ticket: QueueTicket,
) -> Result<InFlight, OpenAiError> {
    loop {
        until_serving(state, slot).await?;
        // In flight before the second look, as in `routes::handle`: a drain that started
        // meanwhile sends the request back to the queue.
        let in_flight = InFlight::begin(state.control.clone(), slot.clone());
        if accepts(state, slot) {
            drop(ticket);
            return Ok(in_flight);
        }
    }
}

/// Waits until `slot` accepts requests, waking it if needed.
pub async fn until_serving(state: &GatewayState, slot: &SlotName) -> Result<(), OpenAiError> {
    let mut rx = state.statuses.clone();
    // The runtime gives up on a load at load_timeout and says why; wait a little longer so that
    // verdict, not a bare timeout, reaches the client. Before the load starts the slot may
    // wait for its turn, at most max_wait.
    let mut deadline = Instant::now() + state.max_wait + state.load_timeout + VERDICT_GRACE;
    let mut loading = false;
    let mut failures_at_start = None;
    loop {
        {
            let statuses = rx.borrow_and_update();
            let Some(s) = statuses.get(slot) else {
                return Err(OpenAiError::new(
                    StatusCode::NOT_FOUND,
                    "invalid_request_error",
                    format!("slot {slot} was removed"),
                )
                .code("model_not_found"));
            };
            let first = *failures_at_start.get_or_insert(s.load_failures);
            if s.accepts_requests() {
                return Ok(());
            }
            match s.phase {
                // A download is not part of the load: the clock starts once it is done.
                Phase::Pulling => deadline = Instant::now() + state.load_timeout + VERDICT_GRACE,
                Phase::Loading if !loading => {
                    loading = true;
                    deadline = Instant::now() + state.load_timeout + VERDICT_GRACE;
                }
                Phase::CrashLoop => {
                    let why = s.last_error.as_deref().unwrap_or("it failed repeatedly");
                    return Err(OpenAiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "server_error",
                        format!("slot {slot} is crash-looping ({why}); fix its config or load it explicitly to retry"),
                    )
                    .code("slot_crash_loop")
                    .retry_after(retry_after(s)));
                }
                _ if s.load_failures > first => {
                    let why = s
                        .last_error
                        .clone()
                        .unwrap_or_else(|| "unknown error".into());
                    return Err(if s.refused {
                        OpenAiError::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", why)
                            .code("slot_cannot_fit")
                            .retry_after(retry_after(s))
                    } else if why.starts_with(LOAD_TIMED_OUT) {
                        OpenAiError::new(
                            StatusCode::GATEWAY_TIMEOUT,
                            "server_error",
                            format!("slot {slot} failed to load: {why}"),
                        )
                        .code("slot_load_timeout")
                        .retry_after(retry_after(s))
                    } else {
                        // The slot retries after a backoff: say when.
                        OpenAiError::new(
                            StatusCode::BAD_GATEWAY,
                            "server_error",
                            format!("slot {slot} failed to load: {why}"),
                        )
                        .code("slot_load_failed")
                        .retry_after(retry_after(s))
                    });
                }
                _ => {}
            }
        }
        state.control.wake(slot);
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {
                return Err(OpenAiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server_error",
                    "hal0 is shutting down",
                )
                .retry_after(5));
            }
            Err(_) => {
                return Err(OpenAiError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "server_error",
                    format!(
                        "slot {slot} did not become ready within max_wait ({:?}) for its turn plus load_timeout ({:?})",
                        state.max_wait, state.load_timeout
                    ),
                )
                .code("slot_load_timeout"));
            }
        }
    }
}
