//! `GET /v1/models` and `GET /v1/models/{id}`.

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};

use super::{ApiError, GatewayState};
use crate::model::{Resolution, Route, Target};

fn entry(id: &str, route: &Route) -> Value {
    let owned_by = match &route.target {
        Target::Local { .. } => format!("hal0/{}", route.provider),
        Target::Upstream { .. } => format!("hal0/{}", route.slot),
    };
    json!({
        "id": id,
        "object": "model",
        "created": 0,
        "owned_by": owned_by,
        "slot": route.slot,
        "model": route.model_id,
        "aliases": route.aliases,
        "roles": route.roles,
        "state": route.phase,
    })
}

pub async fn list(State(state): State<GatewayState>) -> Json<Value> {
    let table = state.routes.borrow().clone();
    let mut data: Vec<Value> = table
        .routes
        .values()
        .map(|r| entry(r.slot.as_str(), r))
        .collect();
    Json(json!({ "object": "list", "data": std::mem::take(&mut data) }))
}

pub async fn get_one(
    State(state): State<GatewayState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let table = state.routes.borrow().clone();
    match table.resolve(&id, None) {
        Resolution::Found(r) | Resolution::WrongRole(r) => Ok(Json(entry(&id, r))),
        Resolution::NotFound => Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("model {id:?} does not exist"),
        )
        .code("model_not_found")),
    }
}
