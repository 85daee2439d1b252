//! The management API's one error type: JSON `{"error":{"code","message","details"?}}` with the
//! right status. Logging happens in the handlers (or not at all), never in the conversion.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::config::store::StoreError;

/// An error answer from `/api`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    /// A stable, machine-readable code (`slot_not_found`, `stale_revision`, …).
    pub code: &'static str,
    /// What went wrong and what to do about it, for people.
    pub message: String,
    /// Structured extras: config diagnostics, the current revision.
    pub details: Option<Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn slot_not_found(name: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "slot_not_found",
            format!("no slot named {name:?}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(d) = self.details {
            error["details"] = d;
        }
        (self.status, Json(json!({ "error": error }))).into_response()
    }
}

/// Makes every error answer from `/api` JSON in the shape above, including the ones axum's
/// extractors and method routing produce as plain text or an empty body (a body over the limit,
/// a bad query string, a method the path does not take).
pub async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(&resp) {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 64 << 10)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let allow = parts
        .headers
        .get(axum::http::header::ALLOW)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (code, message) = describe(status, text, allow.as_deref());
    let mut out = ApiError::new(status, code, message).into_response();
    // Keep what tells the client how to go on (Allow on a 405, WWW-Authenticate, Retry-After).
    for (name, value) in &parts.headers {
        if name != axum::http::header::CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}

/// Whether a response already carries JSON.
pub fn is_json(resp: &Response) -> bool {
    resp.headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            let v = v.to_ascii_lowercase();
            v.starts_with("application/json") || v.contains("+json")
        })
}

/// A code and message for an error that came without one.
pub fn describe(status: StatusCode, text: String, allow: Option<&str>) -> (&'static str, String) {
    let code = match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_request",
        s if s.is_server_error() => "internal",
        _ => "http_error",
    };
    let message = match (status, allow) {
        (StatusCode::METHOD_NOT_ALLOWED, Some(allow)) => {
            format!("this path does not take that method; it takes {allow}")
        }
        (StatusCode::PAYLOAD_TOO_LARGE, _) => {
            "the request body is too large for this endpoint".to_string()
        }
        _ if !text.is_empty() => text,
        _ => status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_string(),
    };
    (code, message)
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let message = e.to_string();
        match e {
            StoreError::ReadFailed { .. } => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "config_unreadable",
                message,
            ),
            StoreError::WriteFailed { .. } => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "config_write_failed",
                message,
            ),
            StoreError::Stale { current, .. } => {
                Self::new(StatusCode::CONFLICT, "stale_revision", message)
                    .with_details(json!({ "revision": current }))
            }
            StoreError::InvalidName(_) => Self::bad_request("invalid_slot_name", message),
            StoreError::SlotExists(_) => Self::new(StatusCode::CONFLICT, "slot_exists", message),
            StoreError::SlotNotFound(name) => Self::slot_not_found(&name),
            StoreError::BadField { .. } => Self::bad_request("bad_field", message),
            StoreError::Invalid(errors) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_config",
                format!(
                    "the change would make the config invalid: {}",
                    errors
                        .iter()
                        .map(|d| if d.field.is_empty() {
                            d.message.clone()
                        } else {
                            format!("{}: {}", d.field, d.message)
                        })
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            )
            .with_details(json!({ "diagnostics": errors })),
        }
    }
}
