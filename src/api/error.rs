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
