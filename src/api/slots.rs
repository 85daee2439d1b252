//! `/api/slots` handlers.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::ApiState;
use crate::model::{SlotName, SlotStatus};

/// A JSON error with a code and a message.
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": {"code": self.code, "message": self.message}})),
        )
            .into_response()
    }
}

fn not_found(name: &str) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        code: "slot_not_found",
        message: format!("no slot named {name:?}"),
    }
}

fn find(state: &ApiState, name: &str) -> Result<(SlotName, SlotStatus), ApiError> {
    let slot = SlotName::parse(name).map_err(|e| ApiError {
        status: StatusCode::BAD_REQUEST,
        code: "invalid_slot_name",
        message: e.to_string(),
    })?;
    let statuses = state.statuses.borrow().clone();
    let status = statuses
        .get(&slot)
        .cloned()
        .ok_or_else(|| not_found(name))?;
    Ok((slot, status))
}

pub async fn list(State(state): State<ApiState>) -> Json<Vec<SlotStatus>> {
    Json(state.statuses.borrow().values().cloned().collect())
}

pub async fn get_one(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<SlotStatus>, ApiError> {
    Ok(Json(find(&state, &name)?.1))
}

pub async fn load(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<SlotStatus>), ApiError> {
    let (slot, status) = find(&state, &name)?;
    state.admin.load(&slot);
    Ok((StatusCode::ACCEPTED, Json(status)))
}

pub async fn unload(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<SlotStatus>), ApiError> {
    let (slot, status) = find(&state, &name)?;
    state.admin.unload(&slot);
    Ok((StatusCode::ACCEPTED, Json(status)))
}

#[derive(Deserialize)]
pub struct LogsQuery {
    #[serde(default = "default_tail")]
    tail: usize,
}

fn default_tail() -> usize {
    200
}

pub async fn logs(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    Query(q): Query<LogsQuery>,
) -> Result<Json<Vec<String>>, ApiError> {
    let (slot, _) = find(&state, &name)?;
    Ok(Json(state.admin.logs(&slot, q.tail).unwrap_or_default()))
}
