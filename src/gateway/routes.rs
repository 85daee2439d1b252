//! `POST /v1/*`: check the key, read the body, find the model, route to its slot (waking it,
//! within the slot's wait queue), proxy, and count it.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::uri::PathAndQuery;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::time::Instant;

use super::control::InFlight;
use super::listen::{self, ReadBodyError};
use super::queue::QueueTicket;
use super::reply::{self, Reply, ReplyBody};
use super::targets::SlotEntry;
use super::view::View;
use super::{GatewayState, OpenAiError, body, errors, metrics, proxy, stream, wake};
use crate::model::{Resolution, Role, RoutingTable, Target};

/// Whether `req` is for [`direct`]: a `POST /v1/…` that no other gateway route takes.
pub fn is_v1_post<B>(req: &http::Request<B>) -> bool {
    req.method() == Method::POST && is_v1_post_path(req.uri().path())
}

/// Whether a `POST` to `path` is for [`direct`].
pub fn is_v1_post_path(path: &str) -> bool {
    path.len() > "/v1/".len()
        && path.starts_with("/v1/")
        && path != "/v1/models"
        && !path.starts_with("/v1/models/")
}

/// `POST /v1/*` without the router, errors in OpenAI's shape included. `view` is the
/// connection's (see [`View`]), caught up before the request.
///
/// One `async fn` from here to the upstream pool where there could be several: each level's
/// future is built, then moved whole into its caller's, a copy of a few KiB per level and
/// request.
pub async fn direct<B>(state: &GatewayState, view: &View, req: http::Request<B>) -> Reply
where
    B: hyper::body::Body<Data = bytes::Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    let method = req.method().clone();
    let uri = req.uri().clone();
    let started = Instant::now();
    let endpoint = metrics::Endpoint::of_path(req.uri().path());
    let mut slot = None;
    let resp = match handle(state, view, req, started, &mut slot).await {
        Ok(r) if is_event_stream(&r) => {
            // On shutdown, a stream still open after the drain time ends with an error event.
            let (parts, body) = r.into_parts();
            let last = stream::cut_event();
            let body = listen::Cuttable::new(body.into_axum(), state.cut.clone(), last);
            Reply::from_parts(parts, ReplyBody::Other(axum::body::Body::new(body)))
        }
        Ok(r) => r,
        Err(e) => reply::of(e.into_response()),
    };
    match slot {
        Some(entry) => entry.metrics.request(endpoint, resp.status()),
        None => state.metrics.request("-", endpoint.label(), resp.status()),
    }
    errors::openai_shape(&method, &uri, resp).await
}

/// The routed form of [`direct`] (`POST /v1/{*rest}`).
pub async fn forward(State(state): State<GatewayState>, req: Request) -> Response {
    let view = View::new(&state);
    direct(&state, &view, req).await.map(ReplyBody::into_axum)
}

fn is_event_stream(r: &Reply) -> bool {
    r.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"))
}

fn body_error(e: ReadBodyError, max_body_bytes: usize) -> OpenAiError {
    match e {
        ReadBodyError::TooLarge => OpenAiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            format!("the request body is larger than server.max_body ({max_body_bytes} bytes)"),
        )
        .code("body_too_large"),
        ReadBodyError::TimedOut(m) => {
            OpenAiError::new(StatusCode::REQUEST_TIMEOUT, "invalid_request_error", m)
                .code("request_timeout")
        }
        ReadBodyError::Failed(m) => OpenAiError::bad_request(m).code("bad_body"),
    }
}

async fn handle<'v, B>(
    state: &GatewayState,
    view: &'v View,
    req: http::Request<B>,
    started: Instant,
    slot_out: &mut Option<&'v SlotEntry>,
) -> Result<Reply, OpenAiError>
where
    B: hyper::body::Body<Data = bytes::Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    let (parts, body) = req.into_parts();
    let key = view.keys().check(&parts.headers)?;
    let body = listen::read_body(body, state.max_body_bytes)
        .await
        .map_err(|e| body_error(e, state.max_body_bytes))?;
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let (entry, streaming, rewritten) = {
        let parsed = body::parse(content_type, &body)?;
        let model = parsed.model.as_ref();
        let prepared = view.prepared();
        let path = parts.uri.path();
        let Some(entry) = prepared.find(model, Role::of_path(path)) else {
            return Err(resolve(prepared.table(), model, path));
        };
        *slot_out = Some(entry.as_ref());
        if let Some(key) = key
            && !key.allows(model, &entry.route)
        {
            return Err(key.forbidden(model));
        }
        let rewritten = parsed.rewritten(&body, entry.route.forwarded_model(model));
        (entry, parsed.stream, rewritten)
    };
    let upstream = proxy::Upstream {
        method: parts.method,
        path_and_query: parts
            .uri
            .into_parts()
            .path_and_query
            .unwrap_or_else(|| PathAndQuery::from_static("/")),
        headers: parts.headers,
        body: rewritten.unwrap_or(body),
    };
    // Counted in flight, then the status looked at again: if the controller drains the slot
    // at this moment, either it sees this request in flight or this request sees the drain. A
    // slot that does not accept requests (loading, sleeping, stopped) is not counted at all:
    // a request in flight on a sleeping slot would mark it ready, its weights back without
    // the memory admission that waking it takes.
    let slot = &entry.route.slot;
    let in_flight = view
        .accepts(slot)
        .then(|| InFlight::on(entry.counter.as_ref(), &state.control, &entry.slot))
        .filter(|_| view.accepts(slot));
    let Some(in_flight) = in_flight else {
        let ticket = QueueTicket::join(state, slot)?;
        if streaming {
            // Answer at once and keep the client's connection alive while the slot loads.
            let state = state.clone();
            let slot = slot.clone();
            let entry = entry.clone();
            let work = async move { after_wait(&state, entry, upstream, ticket, started).await };
            return Ok(reply::of(stream::after_load(slot, work)));
        }
        // Boxed: waiting for a load is the rare path; every request's future stays small.
        return Box::pin(after_wait(state, entry.clone(), upstream, ticket, started)).await;
    };
    send(entry, upstream, in_flight, started).await
}

/// Waits in the queue for the slot to serve (`ticket`), then sends the request to where the
/// slot serves now (the entry of the table published with the reply, should its target have
/// changed meanwhile).
async fn after_wait(
    state: &GatewayState,
    entry: Arc<SlotEntry>,
    upstream: proxy::Upstream,
    ticket: QueueTicket,
    started: Instant,
) -> Result<Reply, OpenAiError> {
    let waited = Instant::now();
    let (in_flight, target) = wake::admitted(state, &entry, ticket).await?;
    entry.metrics.queue_wait(waited.elapsed());
    let entry = current_entry(state, entry, &target)?;
    send(&entry, upstream, in_flight, started).await
}

/// The entry for `entry`'s slot that sends to `target`.
fn current_entry(
    state: &GatewayState,
    entry: Arc<SlotEntry>,
    target: &Target,
) -> Result<Arc<SlotEntry>, OpenAiError> {
    if entry.route.target == *target {
        return Ok(entry);
    }
    let table = state.routes.borrow().clone();
    state
        .targets
        .get(&table)
        .slot(&entry.route.slot)
        .filter(|e| e.route.target == *target)
        .cloned()
        .ok_or_else(|| {
            OpenAiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                format!("slot {} is being reconfigured; try again", entry.route.slot),
            )
            .retry_after(1)
        })
}

/// Proxies and records time to first byte or the upstream error.
async fn send(
    entry: &SlotEntry,
    upstream: proxy::Upstream,
    in_flight: InFlight,
    started: Instant,
) -> Result<Reply, OpenAiError> {
    // The upstream request is built before the await, and the response finished after it:
    // the future holds little more than the pool's.
    let sent = match proxy::request(&entry.upstream, upstream) {
        Ok((pool, req)) => pool.send(req).await.map_err(proxy::upstream_failed),
        Err(e) => Err(e),
    };
    match sent {
        Ok(r) => {
            entry.metrics.ttfb(started.elapsed());
            Ok(proxy::response(r, in_flight))
        }
        Err(e) => {
            entry.metrics.upstream_error();
            Err(e)
        }
    }
}

/// The error for a model that does not resolve to a slot serving the endpoint.
fn resolve(table: &RoutingTable, model: &str, path: &str) -> OpenAiError {
    let role = Role::of_path(path);
    match table.resolve(model, role) {
        // The prepared table found none: the two disagree only while a table is replaced.
        Resolution::Found(r) => OpenAiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            format!("slot {} is being reconfigured; try again", r.slot),
        )
        .retry_after(1),
        Resolution::WrongRole(r) => {
            let role_name = role.map_or("this", |r| r.as_str());
            let serving: Vec<String> = role.map_or_else(Vec::new, |role| {
                table
                    .slots_serving(role)
                    .iter()
                    .map(|s| s.to_string())
                    .collect()
            });
            OpenAiError::bad_request(format!(
                "model {model:?} is served by slot {} ({}), which does not serve {role_name} requests ({path}); slots that do: {}",
                r.slot,
                r.roles.iter().map(|x| x.as_str()).collect::<Vec<_>>().join(", "),
                if serving.is_empty() { "none".to_string() } else { serving.join(", ") }
            ))
            .param("model")
            .code("wrong_endpoint_for_model")
        }
        Resolution::NotFound => {
            let names = table.model_names();
            let hint = crate::core::suggest::closest(model, names.iter().copied())
                .map_or(String::new(), |c| format!("did you mean {c:?}? "));
            let known: Vec<&str> = names.into_iter().take(8).collect();
            OpenAiError::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                format!(
                    "model {model:?} does not exist; {hint}known models: {}",
                    if known.is_empty() {
                        "none (no slots are declared)".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            )
            .param("model")
            .code("model_not_found")
        }
    }
}

pub async fn not_found(req: Request) -> OpenAiError {
    OpenAiError::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        format!("no route for {} {}", req.method(), req.uri().path()),
    )
    .code("unknown_url")
}
