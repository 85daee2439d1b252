//! Shared state of the fake provider: configuration, start time, the events file, the request
//! counter, and the middleware that applies the process-wide behaviours (port header, request
//! log and events, loading refusal, crash after N requests).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::json;

use crate::cli::Args;

/// Grace between handing the last counted response to the connection and exiting, so the
/// bytes reach the client before the process dies.
const CRASH_FLUSH_GRACE: Duration = Duration::from_millis(50);

pub struct AppState {
    pub args: Args,
    pub port: u16,
    pub started: Instant,
    events: Option<Mutex<File>>,
    served: AtomicU64,
}

pub type Shared = std::sync::Arc<AppState>;

/// What /health should answer right now.
pub enum Health {
    Ok,
    Loading,
    Failing(&'static str),
}

impl AppState {
    pub fn new(args: Args, port: u16, started: Instant) -> std::io::Result<Self> {
        let events = match &args.events_file {
            Some(path) => Some(Mutex::new(open_events(path)?)),
            None => None,
        };
        Ok(Self {
            args,
            port,
            started,
            events,
            served: AtomicU64::new(0),
        })
    }

    /// Appends one line to the events file, if there is one.
    pub fn event(&self, line: &str) {
        if let Some(file) = &self.events {
            let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
            // One write per line: O_APPEND keeps lines from restarted processes whole.
            let _ = file.write_all(format!("{line}\n").as_bytes());
        }
    }

    pub fn loading(&self) -> bool {
        self.started.elapsed() < Duration::from_millis(self.args.load_delay_ms)
    }

    pub fn health(&self) -> Health {
        if self.args.fail_health {
            return Health::Failing("fake provider: --fail-health");
        }
        if let Some(ms) = self.args.health_flap_after_ms
            && self.started.elapsed() >= Duration::from_millis(ms)
        {
            return Health::Failing("fake provider: health flapped");
        }
        if self.loading() {
            return Health::Loading;
        }
        Health::Ok
    }

    /// The model to echo: the request's, else this server's id.
    pub fn echo_model(&self, requested: Option<&str>) -> String {
        requested
            .map(str::to_string)
            .unwrap_or_else(|| self.args.model_id())
    }
}

/// Opens the events file for appending (creating it); also used before the server exists.
pub fn open_events(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// An OpenAI-style error response.
pub fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    let body = json!({"error": {"code": status.as_u16(), "message": message, "type": kind}});
    (status, axum::Json(body)).into_response()
}

/// llama-server's answer while the model loads.
pub fn loading_response() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable_error",
        "Loading model",
    )
}

/// Outermost layer: every response carries `x-fake-provider-port`, every request is logged.
pub async fn port_header_and_log(
    State(state): State<Shared>,
    req: Request,
    next: Next,
) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let mut response = next.run(req).await;
    response
        .headers_mut()
        .insert("x-fake-provider-port", HeaderValue::from(state.port));
    eprintln!(
        "fake-provider: {method} {path} -> {}",
        response.status().as_u16()
    );
    response
}

/// Records `request <path> model=<model>`, refuses while loading, counts toward the crash.
pub async fn behaviours(State(state): State<Shared>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if path == "/health" || path == "/v1/health" {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => bytes,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                &e.to_string(),
            );
        }
    };
    let content_type = parts
        .headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let model = request_model(content_type, &bytes).unwrap_or_else(|| "-".to_string());
    state.event(&format!("request {path} model={model}"));
    if state.loading() {
        return loading_response();
    }
    let req = Request::from_parts(parts, Body::from(bytes));
    let Some(limit) = state.args.crash_after_requests else {
        return next.run(req).await;
    };
    let n = state.served.fetch_add(1, Ordering::SeqCst) + 1;
    if n > limit {
        // The crash is already scheduled; this request is never answered.
        std::future::pending::<()>().await;
    }
    let response = next.run(req).await;
    if n < limit {
        return response;
    }
    let guard = CrashOnDrop { state, limit };
    let (parts, body) = response.into_parts();
    let body = body.into_data_stream().map(move |frame| {
        let _ = &guard;
        frame
    });
    Response::from_parts(parts, Body::from_stream(body))
}

/// Dropped when the Nth response body is finished (or abandoned): exit(1) after a short grace.
struct CrashOnDrop {
    state: Shared,
    limit: u64,
}

impl Drop for CrashOnDrop {
    fn drop(&mut self) {
        let state = self.state.clone();
        let limit = self.limit;
        std::thread::spawn(move || {
            std::thread::sleep(CRASH_FLUSH_GRACE);
            state.event(&format!("crash after-requests={limit}"));
            eprintln!("fake-provider: crashing after {limit} requests");
            std::process::exit(1);
        });
    }
}

/// The `model` a request names: a JSON body's field, or a multipart form's `model` part.
pub fn request_model(content_type: &str, body: &Bytes) -> Option<String> {
    if content_type.starts_with("multipart/form-data") {
        return multipart_field(body, "model");
    }
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value.get("model")?.as_str().map(str::to_string)
}

/// The text of a multipart form field, found by a plain scan (enough for a fake).
pub fn multipart_field(body: &[u8], name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\"");
    let start = find(body, marker.as_bytes())? + marker.len();
    let value_start = start + find(&body[start..], b"\r\n\r\n")? + 4;
    let value_len = find(&body[value_start..], b"\r\n--")?;
    let value = &body[value_start..value_start + value_len];
    Some(String::from_utf8_lossy(value).into_owned())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
