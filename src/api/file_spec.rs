//! `GET /api/slots/{name}/file`: a slot's fields as the config file has them now, with the
//! file's revision. An editor (the dashboard's Edit form) starts from this rather than from the
//! applied spec in `/api/slots`: right after a hand edit the watcher may not have applied the
//! file yet, and a form filled with the old values but the new revision would undo that edit.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::json;

use super::views::WriteResult;
use super::{ApiError, ApiState};
use crate::model::SlotName;

pub async fn get(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<WriteResult>, ApiError> {
    let slot = SlotName::parse(&name)
        .map_err(|e| ApiError::bad_request("invalid_slot_name", e.to_string()))?;
    let store = state.store.clone();
    let snapshot = tokio::task::spawn_blocking(move || store.read())
        .await
        .map_err(|e| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
        })??;
    let parsed = crate::config::parse(state.store.path(), &snapshot.text).map_err(|errors| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_config",
            format!(
                "{} has errors; fix them before editing a slot ({} problem(s))",
                state.store.path().display(),
                errors.len()
            ),
        )
        .with_details(json!({ "diagnostics": errors }))
    })?;
    let spec = parsed
        .slots
        .get(&slot)
        .cloned()
        .ok_or_else(|| ApiError::slot_not_found(&name))?;
    Ok(Json(WriteResult {
        name: slot,
        revision: snapshot.revision.0,
        // env values stay secret here too; a form sending "<redacted>" back keeps them.
        spec: Some(super::views::redacted(&spec)),
    }))
}
