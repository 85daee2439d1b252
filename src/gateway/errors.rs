//! Errors in OpenAI's shape: `{"error":{"message","type","param","code"}}`.

use axum::Json;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use super::reply::{self, Reply, ReplyBody};

/// An error answer. Logging happens in the handlers, not here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAiError {
    pub status: StatusCode,
    pub message: String,
    /// OpenAI's `type`: `invalid_request_error`, `server_error`, ...
    pub kind: &'static str,
    pub code: Option<&'static str>,
    pub param: Option<&'static str>,
    /// Seconds for a `Retry-After` header.
    pub retry_after: Option<u64>,
}

impl OpenAiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        OpenAiError {
            status,
            message: message.into(),
            kind,
            code: None,
            param: None,
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    pub fn code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    pub fn param(mut self, param: &'static str) -> Self {
        self.param = Some(param);
        self
    }

    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs.max(1));
        self
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        });
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

/// Makes every error answer from the gateway JSON in OpenAI's shape, including the ones axum
/// produces as plain text or an empty body (`GET /v1/chat/completions` is a 405).
pub async fn openai_errors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let method = req.method().clone();
    // A clone of the URI shares its bytes: nothing is copied for requests that succeed.
    let uri = req.uri().clone();
    let resp = next.run(req).await;
    openai_shape(&method, &uri, reply::of(resp))
        .await
        .map(ReplyBody::into_axum)
}

/// The answer to `method` `uri`, with an error that is not JSON yet put in OpenAI's shape.
pub async fn openai_shape(method: &Method, uri: &Uri, resp: Reply) -> Reply {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.as_bytes().get(..16))
        .is_some_and(|v| v.eq_ignore_ascii_case(b"application/json"));
    if is_json {
        return resp;
    }
    // Boxed: the rare path does not make every request's future larger.
    Box::pin(reshape(method, uri, resp)).await
}

async fn reshape(method: &Method, uri: &Uri, resp: Reply) -> Reply {
    let status = resp.status();
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body.into_axum(), 64 << 10)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let path = uri.path();
    let code = match status {
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        StatusCode::NOT_FOUND => "unknown_url",
        _ => "bad_request",
    };
    let message = if status == StatusCode::METHOD_NOT_ALLOWED {
        let takes = parts
            .headers
            .get(header::ALLOW)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .unwrap_or_else(|| {
                if path.starts_with("/v1/models") {
                    "GET"
                } else {
                    "POST"
                }
                .to_string()
            });
        format!("{path} does not take {method}; send {takes}")
    } else if !text.is_empty() {
        text
    } else {
        status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_string()
    };
    let kind = if status.is_server_error() {
        "server_error"
    } else {
        "invalid_request_error"
    };
    let mut out = reply::of(
        OpenAiError::new(status, kind, message)
            .code(code)
            .into_response(),
    );
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}
