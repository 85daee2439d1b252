//! Create, update and delete slots: every write edits hal0.toml through the config store
//! (validated, atomic, comments kept, refused with 409 when the file changed since the revision
//! the client saw). The new version is then applied at once, and the answer waits until the
//! controller has taken it in: after a 2xx, reads, loads and `/v1` see the change.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};

use super::views::{SlotWrite, WriteResult};
use super::{ApiError, ApiState};
use crate::config::store::{Revision, SlotChange};
use crate::model::SlotName;

fn parse_body(body: &[u8]) -> Result<SlotWrite, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "invalid_json",
            "the body must be a JSON object of slot fields",
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(
            "invalid_json",
            format!("the body is not a JSON object of slot fields: {e}"),
        )
    })
}

/// `If-Match` (an ETag, quoted or not) wins over the body's `revision`.
fn expected_revision(headers: &HeaderMap, body: Option<&SlotWrite>) -> Option<Revision> {
    let header = headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.trim()
                .trim_start_matches("W/")
                .trim_matches('"')
                .to_string()
        })
        .filter(|v| !v.is_empty() && v != "*");
    header
        .or_else(|| body.and_then(|b| b.revision.clone()))
        .map(Revision)
}

async fn write(
    state: &ApiState,
    name: String,
    change: SlotChange,
    expected: Option<Revision>,
) -> Result<WriteResult, ApiError> {
    let store = state.store.clone();
    let slot = SlotName::parse(&name)
        .map_err(|e| ApiError::bad_request("invalid_slot_name", e.to_string()))?;
    let written =
        tokio::task::spawn_blocking(move || store.apply(&name, &change, expected.as_ref()))
            .await
            .map_err(|e| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            })??;
    tracing::info!(slot = %slot, revision = %written.revision, "config file edited through the API");
    state
        .publisher
        .written(written.text.clone(), written.state.clone());
    wait_applied(state).await;
    Ok(WriteResult {
        spec: written.state.slots.get(&slot).map(super::views::redacted),
        name: slot,
        revision: written.revision.0,
    })
}

/// How long a write waits for the controller to take in the new config (a round takes
/// milliseconds; this only bounds a stuck controller).
const APPLY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Waits until the controller has taken in the newest published desired state.
async fn wait_applied(state: &ApiState) {
    let desired = state.desired.clone();
    let mut applied = state.applied.clone();
    let caught_up = applied.wait_for(|a| std::sync::Arc::ptr_eq(a, &desired.borrow()));
    if tokio::time::timeout(APPLY_WAIT, caught_up).await.is_err() {
        tracing::warn!("the controller has not taken in a written config after {APPLY_WAIT:?}");
    }
}

pub async fn create(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<WriteResult>), ApiError> {
    let w = parse_body(&body)?;
    let expected = expected_revision(&headers, Some(&w));
    let Some(name) = w.name else {
        return Err(ApiError::bad_request(
            "missing_name",
            "give the new slot a \"name\" (matching ^[a-z][a-z0-9_-]*$)",
        ));
    };
    let change = SlotChange::Create { fields: w.fields };
    let result = write(&state, name, change, expected).await?;
    Ok((StatusCode::CREATED, Json(result)))
}

pub async fn replace(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<WriteResult>, ApiError> {
    let w = parse_body(&body)?;
    let expected = expected_revision(&headers, Some(&w));
    let change = SlotChange::Replace { fields: w.fields };
    Ok(Json(write(&state, name, change, expected).await?))
}

pub async fn merge(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<WriteResult>, ApiError> {
    let w = parse_body(&body)?;
    let expected = expected_revision(&headers, Some(&w));
    let change = SlotChange::Merge { fields: w.fields };
    Ok(Json(write(&state, name, change, expected).await?))
}

/// The revision may come as `If-Match` or `?revision=`.
pub async fn delete(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<DeleteQuery>,
) -> Result<Json<WriteResult>, ApiError> {
    let expected = expected_revision(&headers, None).or(q.revision.map(Revision));
    Ok(Json(
        write(&state, name, SlotChange::Delete, expected).await?,
    ))
}

#[derive(Debug, serde::Deserialize)]
pub struct DeleteQuery {
    revision: Option<String>,
}
