//! `POST /v1/*`: check the key, read the body, find the model, route to its slot (waking it,
//! within the slot's wait queue), proxy, and count it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::time::Instant;

use super::control::InFlight;
use super::listen::{self, ReadBodyError};
use super::{GatewayState, OpenAiError, body, metrics, proxy, stream, wake};
use crate::model::{Resolution, Role, Route, RoutingTable, SlotName};

/// Requests waiting for each slot to load.
#[derive(Debug, Default)]
pub struct Queues(Mutex<HashMap<SlotName, u32>>);

/// A place in a slot's wait queue, given back on drop. The controller sees it as a request
/// waiting for the slot (since `since`), not one in flight.
pub struct QueueTicket {
    queues: Arc<Queues>,
    control: Arc<dyn super::SlotControl>,
    slot: SlotName,
    since: Instant,
}

impl QueueTicket {
    /// Joins the slot's queue, or refuses with 429 when `max` requests already wait.
    pub fn join(state: &GatewayState, slot: &SlotName) -> Result<QueueTicket, OpenAiError> {
        let mut q = state.queues.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = q.entry(slot.clone()).or_insert(0);
        if *n >= state.max_queue {
            let retry = state
                .statuses
                .borrow()
                .get(slot)
                .and_then(|s| s.last_load_ms)
                .map_or(5, |ms| ms.div_ceil(1000));
            return Err(OpenAiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                format!(
                    "{} requests are already waiting for slot {slot} to load; try again shortly",
                    state.max_queue
                ),
            )
            .code("queue_full")
            .retry_after(retry));
        }
        *n += 1;
        drop(q);
        let since = Instant::now();
        state.control.request_waiting(slot, since);
        Ok(QueueTicket {
            queues: state.queues.clone(),
            control: state.control.clone(),
            slot: slot.clone(),
            since,
        })
    }
}

impl Drop for QueueTicket {
    fn drop(&mut self) {
        {
            let mut q = self.queues.0.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = q.get_mut(&self.slot) {
                *n = n.saturating_sub(1);
            }
        }
        self.control.request_done_waiting(&self.slot, self.since);
    }
}

pub async fn forward(State(state): State<GatewayState>, req: Request) -> Response {
    let started = Instant::now();
    let endpoint = metrics::endpoint_label(req.uri().path());
    let mut slot = String::from("-");
    let resp = match handle(&state, req, started, &mut slot).await {
        Ok(r) if is_event_stream(&r) => {
            // On shutdown, a stream still open after the drain time ends with an error event.
            let (parts, body) = r.into_parts();
            let last = stream::error_event(
                &OpenAiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server_error",
                    "hal0 is shutting down; the stream was cut",
                )
                .code("shutting_down"),
            );
            let body = axum::body::Body::new(listen::Cuttable::new(body, state.cut.clone(), last));
            Response::from_parts(parts, body)
        }
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    state.metrics.request(&slot, endpoint, resp.status());
    resp
}

fn is_event_stream(r: &Response) -> bool {
    r.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"))
}

async fn handle(
    state: &GatewayState,
    req: Request,
    started: Instant,
    slot_label: &mut String,
) -> Result<Response, OpenAiError> {
    let (parts, body) = req.into_parts();
    let keys = state.keys.borrow().clone();
    let key = keys.check(&parts.headers)?;
    let path = parts.uri.path().to_string();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or(path.clone(), |p| p.to_string());
    let body = listen::read_body(body, state.max_body_bytes)
        .await
        .map_err(|e| match e {
            ReadBodyError::TooLarge => OpenAiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                format!(
                    "the request body is larger than server.max_body ({} bytes)",
                    state.max_body_bytes
                ),
            )
            .code("body_too_large"),
            ReadBodyError::TimedOut(m) => {
                OpenAiError::new(StatusCode::REQUEST_TIMEOUT, "invalid_request_error", m)
                    .code("request_timeout")
            }
            ReadBodyError::Failed(m) => OpenAiError::bad_request(m).code("bad_body"),
        })?;
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let parsed = body::parse(content_type, &body)?;
    let model = parsed.model.clone();
    let table = state.routes.borrow().clone();
    let route = resolve(&table, &model, &path)?;
    *slot_label = route.slot.to_string();
    if let Some(key) = key
        && !key.allows(&model, &route)
    {
        return Err(key.forbidden(&model));
    }
    let streaming = parsed.stream;
    let body = parsed.body_for(body, route.forwarded_model(&model));
    let upstream = proxy::Upstream {
        method: parts.method,
        path_and_query,
        headers: parts.headers,
        body,
    };
    // Counted in flight BEFORE looking at the status: if the controller drains the slot at
    // this moment, either it sees this request in flight or this request sees the drain.
    let in_flight = InFlight::begin(state.control.clone(), route.slot.clone());
    if !wake::accepts(state, &route.slot) {
        drop(in_flight);
        let ticket = QueueTicket::join(state, &route.slot)?;
        if streaming {
            // Answer at once and keep the client's connection alive while the slot loads.
            return Ok(stream::after_load(state.clone(), route, upstream, ticket));
        }
        let waited = Instant::now();
        let in_flight = wake::admitted(state, &route.slot, ticket).await?;
        state
            .metrics
            .queue_wait(route.slot.as_str(), waited.elapsed());
        return send(state, &route, upstream, in_flight, started).await;
    }
    send(state, &route, upstream, in_flight, started).await
}

/// Proxies and records time to first byte or the upstream error.
pub async fn send(
    state: &GatewayState,
    route: &Route,
    upstream: proxy::Upstream,
    in_flight: InFlight,
    started: Instant,
) -> Result<Response, OpenAiError> {
    match proxy::forward(&state.client, &route.target, upstream, in_flight).await {
        Ok(r) => {
            state.metrics.ttfb(route.slot.as_str(), started.elapsed());
            Ok(r)
        }
        Err(e) => {
            state.metrics.upstream_error(route.slot.as_str());
            Err(e)
        }
    }
}

fn resolve(table: &RoutingTable, model: &str, path: &str) -> Result<Route, OpenAiError> {
    let role = Role::of_path(path);
    match table.resolve(model, role) {
        Resolution::Found(r) => Ok(r.clone()),
        Resolution::WrongRole(r) => {
            let role_name = role.map_or("this", |r| r.as_str());
            let serving: Vec<String> = role.map_or_else(Vec::new, |role| {
                table
                    .slots_serving(role)
                    .iter()
                    .map(|s| s.to_string())
                    .collect()
            });
            Err(OpenAiError::bad_request(format!(
                "model {model:?} is served by slot {} ({}), which does not serve {role_name} requests ({path}); slots that do: {}",
                r.slot,
                r.roles.iter().map(|x| x.as_str()).collect::<Vec<_>>().join(", "),
                if serving.is_empty() { "none".to_string() } else { serving.join(", ") }
            ))
            .param("model")
            .code("wrong_endpoint_for_model"))
        }
        Resolution::NotFound => {
            let names = table.model_names();
            let hint = crate::core::suggest::closest(model, names.iter().copied())
                .map_or(String::new(), |c| format!("did you mean {c:?}? "));
            let known: Vec<&str> = names.into_iter().take(8).collect();
            Err(OpenAiError::new(
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
            .code("model_not_found"))
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
