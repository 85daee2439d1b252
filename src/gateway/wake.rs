//! Waiting for a slot to serve. The first request for a stopped slot asks the controller to
//! load it; every request then waits on the published statuses, so one load serves all
//! waiting requests (single flight) and a failed load fails all of them at once.

use axum::http::StatusCode;
use tokio::time::Instant;

use super::{ApiError, GatewayState};
use crate::model::{Phase, SlotName, SlotStatus};

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

/// Waits until `slot` serves, waking it if needed.
pub async fn until_serving(state: &GatewayState, slot: &SlotName) -> Result<(), ApiError> {
    let mut rx = state.statuses.clone();
    // The runtime gives up on a load at load_timeout and says why; wait a little longer so that
    // verdict, not a bare timeout, reaches the client.
    let mut deadline = Instant::now() + state.load_timeout + VERDICT_GRACE;
    let mut failures_at_start = None;
    loop {
        {
            let statuses = rx.borrow_and_update();
            let Some(s) = statuses.get(slot) else {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "invalid_request_error",
                    format!("slot {slot} was removed"),
                )
                .code("model_not_found"));
            };
            let first = *failures_at_start.get_or_insert(s.load_failures);
            match s.phase {
                Phase::Ready | Phase::Idle => return Ok(()),
                // A download is not part of the load: the clock starts once it is done.
                Phase::Pulling => deadline = Instant::now() + state.load_timeout + VERDICT_GRACE,
                Phase::CrashLoop => {
                    let why = s.last_error.as_deref().unwrap_or("it failed repeatedly");
                    return Err(ApiError::new(
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
                        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", why)
                            .code("slot_cannot_fit")
                            .retry_after(retry_after(s))
                    } else {
                        ApiError::new(
                            StatusCode::BAD_GATEWAY,
                            "server_error",
                            format!("slot {slot} failed to load: {why}"),
                        )
                        .code("slot_load_failed")
                    });
                }
                _ => {}
            }
        }
        state.control.wake(slot);
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server_error",
                    "hal0 is shutting down",
                )
                .retry_after(5));
            }
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "server_error",
                    format!(
                        "slot {slot} did not become ready within load_timeout ({:?})",
                        state.load_timeout
                    ),
                )
                .code("slot_load_timeout"));
            }
        }
    }
}
