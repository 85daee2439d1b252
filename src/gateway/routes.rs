//! `POST /v1/*`: read the body, find the model, route to its slot (waking it), proxy.

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::Response;

use super::control::InFlight;
use super::{ApiError, GatewayState, proxy, wake};
use crate::model::{Resolution, Role};

/// Finds the `model` of a request body: a JSON field, or a multipart form field.
fn model_of(content_type: &str, body: &[u8]) -> Result<String, ApiError> {
    if content_type.starts_with("multipart/form-data") {
        return multipart_field(content_type, body, "model").ok_or_else(|| {
            ApiError::bad_request("the form has no `model` field")
                .param("model")
                .code("missing_model")
        });
    }
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!("the request body is not valid JSON: {e}"))
            .code("invalid_json")
    })?;
    match value.get("model") {
        Some(serde_json::Value::String(m)) if !m.is_empty() => Ok(m.clone()),
        Some(_) => Err(ApiError::bad_request("`model` must be a non-empty string").param("model")),
        None => Err(ApiError::bad_request("the request has no `model`; say which model (slot name, model id or alias) should answer")
            .param("model")
            .code("missing_model")),
    }
}

/// The value of a simple text field of a multipart form.
fn multipart_field(content_type: &str, body: &[u8], name: &str) -> Option<String> {
    let boundary = content_type
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("boundary="))
        .next()?
        .trim_matches('"');
    let delim = format!("--{boundary}");
    let text = String::from_utf8_lossy(body);
    let want = format!("name=\"{name}\"");
    for part in text.split(delim.as_str()) {
        let Some((head, value)) = part.split_once("\r\n\r\n") else {
            continue;
        };
        let is_field = head.lines().any(|l| {
            l.to_ascii_lowercase().starts_with("content-disposition")
                && l.split(';').any(|p| p.trim() == want)
        });
        if is_field {
            return Some(value.trim_end_matches("\r\n").trim().to_string());
        }
    }
    None
}

pub async fn forward(
    State(state): State<GatewayState>,
    req: Request,
) -> Result<Response<Body>, ApiError> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or(path.clone(), |p| p.to_string());
    let body = to_bytes(body, state.max_body_bytes).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            format!(
                "the request body is larger than {} bytes",
                state.max_body_bytes
            ),
        )
        .code("body_too_large")
    })?;
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let model = model_of(content_type, &body)?;
    let role = Role::of_path(&path);
    let table = state.routes.borrow().clone();
    let route = match table.resolve(&model, role) {
        Resolution::Found(r) => r.clone(),
        Resolution::WrongRole(r) => {
            let role = role.map_or("this", |r| r.as_str());
            let serving: Vec<String> = role_slots(&table, &path);
            return Err(ApiError::bad_request(format!(
                "model {model:?} is served by slot {} ({}), which does not serve {role} requests ({path}); slots that do: {}",
                r.slot,
                r.roles.iter().map(|x| x.as_str()).collect::<Vec<_>>().join(", "),
                if serving.is_empty() { "none".to_string() } else { serving.join(", ") }
            ))
            .param("model")
            .code("wrong_endpoint_for_model"));
        }
        Resolution::NotFound => {
            let known: Vec<&str> = table.model_names().into_iter().take(8).collect();
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                format!(
                    "model {model:?} does not exist; known models: {}",
                    if known.is_empty() {
                        "none (no slots are declared)".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            )
            .param("model")
            .code("model_not_found"));
        }
    };
    let in_flight = InFlight::begin(state.control.clone(), route.slot.clone());
    wake::until_serving(&state, &route.slot).await?;
    proxy::forward(
        &state.client,
        &route.target,
        parts.method,
        &path_and_query,
        &parts.headers,
        body,
        in_flight,
    )
    .await
}

fn role_slots(table: &crate::model::RoutingTable, path: &str) -> Vec<String> {
    Role::of_path(path).map_or_else(Vec::new, |role| {
        table
            .slots_serving(role)
            .iter()
            .map(|s| s.to_string())
            .collect()
    })
}

pub async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        format!("no route for {} {}", req.method(), req.uri().path()),
    )
    .code("unknown_url")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_comes_from_json_or_a_form() {
        assert_eq!(
            model_of("application/json", br#"{"model":"m"}"#).unwrap(),
            "m"
        );
        assert!(model_of("application/json", b"{").is_err());
        assert_eq!(
            model_of("application/json", b"{}").unwrap_err().code,
            Some("missing_model")
        );
        let form = "--XX\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\nRIFF..\r\n--XX\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper\r\n--XX--\r\n";
        assert_eq!(
            model_of("multipart/form-data; boundary=XX", form.as_bytes()).unwrap(),
            "whisper"
        );
    }
}
