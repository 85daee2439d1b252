//! Waiting for a slot to serve. The wait is one call, `SlotControl::ensure_ready`, whose reply
//! says where to send the request or why the slot will not serve (one load answers every
//! waiting request, and a failed load fails all of them). A slot that cannot be loaded next to
//! the ones serving waits for its turn (at most `max_wait`, then the load): so does a request
//! for a slot being drained for another's turn. The gateway bounds the wait itself too.

use std::time::Duration;

use axum::http::StatusCode;
use tokio::time::Instant;

use super::control::InFlight;
use super::queue::QueueTicket;
use super::targets::SlotEntry;
use super::{GatewayState, OpenAiError};
use crate::model::{LoadError, Phase, SlotName, Target};

/// The runtime gives up on a load at load_timeout and says why; the gateway waits this much
/// longer so that verdict, not a bare timeout, reaches the client.
const VERDICT_GRACE: Duration = Duration::from_secs(3);

/// Whether a new request may be sent to `slot` now.
pub fn accepts(state: &GatewayState, slot: &SlotName) -> bool {
    super::view::accepts_in(&state.statuses.borrow(), slot)
}

/// Waits in the slot's queue (`ticket`) until the slot accepts requests, then counts the
/// request in flight and gives the place in the queue back. Returns where to send it.
pub async fn admitted(
    state: &GatewayState,
    entry: &SlotEntry,
    ticket: QueueTicket,
) -> Result<(InFlight, Target), OpenAiError> {
    let slot = &entry.route.slot;
    loop {
        let target = until_serving(state, slot).await?;
        // In flight before the second look, as in `routes::handle`: a drain that started
        // meanwhile sends the request back to the queue.
        let in_flight = InFlight::on(entry.counter.as_ref(), &state.control, &entry.slot);
        if accepts(state, slot) {
            drop(ticket);
            return Ok((in_flight, target));
        }
    }
}

/// Waits until `slot` accepts requests, waking it if needed.
pub async fn until_serving(state: &GatewayState, slot: &SlotName) -> Result<Target, OpenAiError> {
    let ready = state.control.ensure_ready(slot);
    tokio::select! {
        r = ready => r.map_err(|e| load_error(slot, e)),
        e = wait_limit(state, slot) => Err(e),
    }
}

/// The gateway's own bound on a wait: `max_wait` for the turn plus `load_timeout` plus a grace;
/// once the load starts, `load_timeout` plus the grace from then. A download is not part of the
/// load: the clock starts again at every sign of progress.
async fn wait_limit(state: &GatewayState, slot: &SlotName) -> OpenAiError {
    let mut rx = state.statuses.clone();
    let mut deadline = Instant::now() + state.max_wait + state.load_timeout + VERDICT_GRACE;
    let mut loading = false;
    loop {
        match rx.borrow_and_update().get(slot).map(|s| s.phase) {
            Some(Phase::Pulling) => deadline = Instant::now() + state.load_timeout + VERDICT_GRACE,
            Some(Phase::Loading) if !loading => {
                loading = true;
                deadline = Instant::now() + state.load_timeout + VERDICT_GRACE;
            }
            _ => {}
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => {}
            // The statuses are gone with the controller: its reply says so.
            Ok(Err(_)) => std::future::pending::<()>().await,
            Err(_) => {
                return OpenAiError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "server_error",
                    format!(
                        "slot {slot} did not become ready within max_wait ({:?}) for its turn plus load_timeout ({:?})",
                        state.max_wait, state.load_timeout
                    ),
                )
                .code("slot_load_timeout");
            }
        }
    }
}

/// The OpenAI-shaped error for a load that will not serve.
fn load_error(slot: &SlotName, e: LoadError) -> OpenAiError {
    let retry = e.retry_after_secs();
    let message = e.to_string();
    match e {
        LoadError::Removed { .. } => OpenAiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("slot {slot} was removed"),
        )
        .code("model_not_found"),
        LoadError::CrashLoop { .. } => {
            OpenAiError::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", message)
                .code("slot_crash_loop")
                .retry_after(retry)
        }
        LoadError::CannotFit { .. } => {
            OpenAiError::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", message)
                .code("slot_cannot_fit")
                .retry_after(retry)
        }
        LoadError::TimedOut { .. } => {
            OpenAiError::new(StatusCode::GATEWAY_TIMEOUT, "server_error", message)
                .code("slot_load_timeout")
                .retry_after(retry)
        }
        LoadError::Failed { .. } => {
            OpenAiError::new(StatusCode::BAD_GATEWAY, "server_error", message)
                .code("slot_load_failed")
                .retry_after(retry)
        }
        LoadError::ShuttingDown => {
            OpenAiError::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", message)
                .retry_after(retry)
        }
    }
}
