//! Reading slots, and asking the controller to load or unload one.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::views::{SlotList, SlotView};
use super::{ApiError, ApiState};
use crate::model::SlotName;

/// The slot called `name`, as it is now.
pub(crate) fn find(state: &ApiState, name: &str) -> Result<(SlotName, SlotView), ApiError> {
    let slot = SlotName::parse(name)
        .map_err(|e| ApiError::bad_request("invalid_slot_name", e.to_string()))?;
    let view = state
        .slot_views()
        .remove(&slot)
        .ok_or_else(|| ApiError::slot_not_found(name))?;
    Ok((slot, view))
}

pub async fn list(State(state): State<ApiState>) -> Json<SlotList> {
    Json(state.slot_list())
}

pub async fn get_one(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<SlotView>, ApiError> {
    Ok(Json(find(&state, &name)?.1))
}

/// Asks for a load (also lifts a crash-loop) and answers at once with the status before it;
/// follow `/api/events` to see it through.
pub async fn load(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<SlotView>), ApiError> {
    let (slot, view) = find(&state, &name)?;
    state.admin.load(&slot);
    Ok((StatusCode::ACCEPTED, Json(view)))
}

pub async fn unload(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<SlotView>), ApiError> {
    let (slot, view) = find(&state, &name)?;
    state.admin.unload(&slot);
    Ok((StatusCode::ACCEPTED, Json(view)))
}
