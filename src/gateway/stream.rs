//! Streaming requests for a slot that is not loaded yet: answer at once with an SSE stream,
//! send comment keep-alives while the slot loads (so clients and proxies do not time out),
//! then relay the provider's stream. A failed load ends the stream with an error event in
//! OpenAI's shape. A client that goes away cancels everything, the load wait included.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::sync::mpsc;

use super::OpenAiError;
use super::reply::Reply;
use crate::model::SlotName;

/// Time between keep-alive comments while a slot loads.
pub const KEEPALIVE_EVERY: Duration = Duration::from_secs(5);

/// The event that ends a stream cut on shutdown (the same for every stream: built once).
pub fn cut_event() -> Bytes {
    static CUT: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
    CUT.get_or_init(|| {
        error_event(
            &OpenAiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "hal0 is shutting down; the stream was cut",
            )
            .code("shutting_down"),
        )
    })
    .clone()
}

pub fn error_event(e: &OpenAiError) -> Bytes {
    let body = serde_json::json!({
        "error": {"message": e.message, "type": e.kind, "param": e.param, "code": e.code}
    });
    Bytes::from(format!("data: {body}\n\n"))
}

/// Answers at once with an SSE stream that carries keep-alive comments while `work` (waiting
/// for `slot`'s turn and load, then sending the request) runs, then relays its response. An
/// error becomes an error event. A client that goes away drops `work`, withdrawing its wait.
pub fn after_load(
    slot: SlotName,
    work: impl Future<Output = Result<Reply, OpenAiError>> + Send + 'static,
) -> Response {
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(32);
    tokio::spawn(async move {
        tokio::pin!(work);
        let mut tick = tokio::time::interval(KEEPALIVE_EVERY);
        let sent = loop {
            tokio::select! {
                r = &mut work => break r,
                _ = tx.closed() => return,
                _ = tick.tick() => {
                    let note = format!(": hal0: waiting for slot {slot} to load\n\n");
                    if tx.send(Ok(Bytes::from(note))).await.is_err() {
                        return;
                    }
                }
            }
        };
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.send(Ok(error_event(&e))).await;
                return;
            }
        };
        let status = resp.status();
        let mut body = resp.into_body();
        if !status.is_success() {
            let text = body
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            let e = OpenAiError::new(
                status,
                "server_error",
                String::from_utf8_lossy(&text).into_owned(),
            )
            .code("upstream_error");
            let _ = tx.send(Ok(error_event(&e))).await;
            return;
        }
        loop {
            tokio::select! {
                _ = tx.closed() => return,
                frame = body.frame() => match frame {
                    Some(Ok(f)) => {
                        if let Ok(data) = f.into_data()
                            && tx.send(Ok(data)).await.is_err()
                        {
                            return;
                        }
                    }
                    _ => return,
                },
            }
        }
    });
    let mut resp =
        Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}
