//! `GET /v1/models` and `GET /v1/models/{id}`: every routable model — one entry per slot
//! (id = slot name, with its model id and aliases) and one per upstream model — with its
//! owner and the slot's state. A key limited to some models sees only those.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::{GatewayState, OpenAiError};
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

pub async fn list(
    State(state): State<GatewayState>,
    headers: HeaderMap,
) -> Result<Json<Value>, OpenAiError> {
    let keys = state.keys.borrow().clone();
    let key = keys.check(&headers)?;
    let table = state.routes.borrow().clone();
    let mut data = Vec::new();
    for r in table.routes.values() {
        let names =
            std::iter::once(r.slot.as_str()).chain(r.upstream_models.iter().map(String::as_str));
        for name in names {
            if key.is_none_or(|k| k.allows(name, r)) {
                data.push(entry(name, r));
            }
        }
    }
    Ok(Json(json!({ "object": "list", "data": data })))
}

pub async fn get_one(
    State(state): State<GatewayState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, OpenAiError> {
    let keys = state.keys.borrow().clone();
    let key = keys.check(&headers)?;
    let table = state.routes.borrow().clone();
    match table.resolve(&id, None) {
        Resolution::Found(r) | Resolution::WrongRole(r) if key.is_none_or(|k| k.allows(&id, r)) => {
            Ok(Json(entry(&id, r)))
        }
        _ => Err(OpenAiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("model {id:?} does not exist"),
        )
        .code("model_not_found")),
    }
}
