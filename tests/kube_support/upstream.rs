//! A tiny OpenAI-style upstream standing in for a slot pod behind its Service.

use axum::Json;
use axum::Router;
use axum::routing::post;
use serde_json::{Value, json};

/// Serves `POST /v1/chat/completions` echoing the model; returns its base URL.
pub async fn start() -> (String, tokio::task::JoinHandle<()>) {
    let app = Router::new().route(
        "/v1/chat/completions",
        post(|Json(body): Json<Value>| async move {
            Json(json!({"object": "chat.completion", "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}]}))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, task)
}
