//! The endpoints: llama-server's /health and the OpenAI-compatible /v1 surface.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::state::{self, Health, Shared, error, multipart_field};
use crate::stream::{self, Kind};

pub fn router(state: Shared) -> Router {
    let mut router = Router::new();
    for prefix in ["", "/v1"] {
        router = router
            .route(&format!("{prefix}/health"), get(health))
            .route(&format!("{prefix}/models"), get(models))
            .route(&format!("{prefix}/chat/completions"), post(chat))
            .route(&format!("{prefix}/completions"), post(completions))
            .route(&format!("{prefix}/embeddings"), post(embeddings))
            .route(&format!("{prefix}/rerank"), post(rerank))
            .route(&format!("{prefix}/reranking"), post(rerank));
    }
    router
        .route("/v1/audio/transcriptions", post(transcriptions))
        .route("/v1/audio/speech", post(speech))
        .fallback(not_found)
        .layer(DefaultBodyLimit::disable())
        .layer(from_fn_with_state(state.clone(), state::behaviours))
        .layer(from_fn_with_state(
            state.clone(),
            state::port_header_and_log,
        ))
        .with_state(state)
}

async fn health(State(s): State<Shared>) -> Response {
    match s.health() {
        Health::Ok => Json(json!({"status": "ok"})).into_response(),
        Health::Loading => state::loading_response(),
        Health::Failing(why) => error(StatusCode::SERVICE_UNAVAILABLE, "unavailable_error", why),
    }
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not_found_error", "File Not Found")
}

async fn models(State(s): State<Shared>) -> Response {
    let id = s.args.model_id();
    Json(json!({
        "object": "list",
        "data": [{"id": id, "object": "model", "created": 0, "owned_by": "hal0-fake-provider"}],
    }))
    .into_response()
}

/// A JSON object body; anything else is answered 400 the OpenAI way.
struct JsonBody(Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        let body = Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        match serde_json::from_slice::<Value>(&body) {
            Ok(v) if v.is_object() => Ok(JsonBody(v)),
            Ok(_) => Err(bad_request("request body must be a JSON object")),
            Err(e) => Err(bad_request(&format!("invalid JSON body: {e}"))),
        }
    }
}

fn bad_request(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "invalid_request_error", message)
}

fn model_of(s: &Shared, req: &Value) -> String {
    s.echo_model(req.get("model").and_then(Value::as_str))
}

fn wants_stream(req: &Value) -> bool {
    req.get("stream").and_then(Value::as_bool).unwrap_or(false)
}

/// A message's text: a plain string or the text parts of a content array.
fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

fn usage(prompt: &str, completion: &str) -> Value {
    let (p, c) = (words(prompt), words(completion));
    json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c})
}

fn words(text: &str) -> usize {
    text.split_whitespace().count()
}

async fn chat(State(s): State<Shared>, JsonBody(req): JsonBody) -> Response {
    let Some(messages) = req.get("messages").and_then(Value::as_array) else {
        return bad_request("'messages' is required and must be an array");
    };
    let model = model_of(&s, &req);
    if wants_stream(&req) {
        return stream::sse(s, Kind::Chat, model);
    }
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .and_then(|m| m.get("content"))
        .map(text_of)
        .unwrap_or_default();
    let reply = format!("fake reply to: {last_user}");
    Json(json!({
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": reply},
            "finish_reason": "stop",
        }],
        "usage": usage(&last_user, &reply),
    }))
    .into_response()
}

async fn completions(State(s): State<Shared>, JsonBody(req): JsonBody) -> Response {
    let prompt = match req.get("prompt") {
        Some(Value::String(p)) => p.clone(),
        Some(Value::Array(items)) => items.first().map(text_of).unwrap_or_default(),
        _ => return bad_request("'prompt' is required"),
    };
    let model = model_of(&s, &req);
    if wants_stream(&req) {
        return stream::sse(s, Kind::Completion, model);
    }
    let text = format!("fake completion of: {prompt}");
    Json(json!({
        "id": "cmpl-fake",
        "object": "text_completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "text": text, "finish_reason": "stop"}],
        "usage": usage(&prompt, &text),
    }))
    .into_response()
}

async fn embeddings(State(s): State<Shared>, JsonBody(req): JsonBody) -> Response {
    let inputs: Vec<String> = match req.get("input") {
        Some(Value::String(text)) => vec![text.clone()],
        // Token arrays (numbers) count as one input; arrays of strings or of arrays as many.
        Some(Value::Array(items)) if items.iter().all(Value::is_number) => {
            vec![Value::Array(items.clone()).to_string()]
        }
        Some(Value::Array(items)) => items.iter().map(key_of).collect(),
        _ => return bad_request("'input' is required"),
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, input)| {
            json!({"object": "embedding", "index": i, "embedding": vector(input, s.args.embedding_dim)})
        })
        .collect();
    let tokens: usize = inputs.iter().map(|i| words(i)).sum();
    Json(json!({
        "object": "list",
        "data": data,
        "model": model_of(&s, &req),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }))
    .into_response()
}

fn key_of(item: &Value) -> String {
    item.as_str()
        .map(str::to_string)
        .unwrap_or_else(|| item.to_string())
}

/// A deterministic unit vector derived from the input text.
pub fn vector(input: &str, dim: usize) -> Vec<f32> {
    let mut seed = input.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let raw: Vec<f32> = (0..dim)
        .map(|_| {
            // splitmix64
            seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = seed;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            (z >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect();
    let norm = raw.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm == 0.0 {
        return raw;
    }
    raw.iter().map(|x| x / norm).collect()
}

async fn rerank(State(s): State<Shared>, JsonBody(req): JsonBody) -> Response {
    let (Some(query), Some(documents)) = (
        req.get("query").and_then(Value::as_str),
        req.get("documents").and_then(Value::as_array),
    ) else {
        return bad_request("'query' (string) and 'documents' (array) are required");
    };
    let query_words: Vec<String> = query.split_whitespace().map(str::to_lowercase).collect();
    let mut results: Vec<(usize, f64)> = documents
        .iter()
        .enumerate()
        .map(|(i, doc)| {
            let doc = doc.get("text").map(text_of).unwrap_or_else(|| text_of(doc));
            let doc_words: Vec<String> = doc.split_whitespace().map(str::to_lowercase).collect();
            let hits = query_words.iter().filter(|w| doc_words.contains(w)).count();
            (i, hits as f64 / query_words.len().max(1) as f64)
        })
        .collect();
    results.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    if let Some(n) = req.get("top_n").and_then(Value::as_u64) {
        results.truncate(n as usize);
    }
    let results: Vec<Value> = results
        .into_iter()
        .map(|(index, score)| json!({"index": index, "relevance_score": score}))
        .collect();
    let tokens = words(query);
    Json(json!({
        "object": "list",
        "model": model_of(&s, &req),
        "results": results,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }))
    .into_response()
}

async fn transcriptions(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("multipart/form-data") {
        return bad_request("expected a multipart/form-data body");
    }
    let text = format!("fake transcript of {} bytes", body.len());
    if multipart_field(&body, "response_format").as_deref() == Some("text") {
        return text.into_response();
    }
    let model = s.echo_model(multipart_field(&body, "model").as_deref());
    Json(json!({"text": text, "model": model})).into_response()
}

async fn speech(State(s): State<Shared>, JsonBody(req): JsonBody) -> Response {
    if req.get("input").and_then(Value::as_str).is_none() {
        return bad_request("'input' is required");
    }
    stream::wav_response(&s)
}
