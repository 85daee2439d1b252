//! The management API under `/api`: every slot's status and spec, create/update/delete through
//! the config file, load and unload, provider logs (tail and follow), a live event stream, the
//! config's errors, and an OpenAPI document generated from the handlers' types.
//!
//! - `error`    ApiError: JSON `{"error":{"code","message","details"}}` with a status
//! - `auth`     the admin token and cross-origin check on writes
//! - `views`    the response and request types (their JSON Schemas feed the OpenAPI document)
//! - `slots`    GET /api/slots, GET /api/slots/{name}, POST load/unload
//! - `write`    POST /api/slots, PUT/PATCH/DELETE /api/slots/{name}: edits of hal0.toml
//! - `logs`     GET /api/slots/{name}/logs (tail, or follow as SSE)
//! - `file_spec` GET /api/slots/{name}/file: the slot as the file has it now, with its revision
//! - `events`   GET /api/events: SSE of slot state changes and config reloads
//! - `config`   GET /api/config, GET /api/config/errors
//! - `rules`    GET /api/rules: slot-name rules, providers and their roles, devices
//! - `pulls`    POST /api/models/pull, GET /api/models/pulls: model downloads with progress
//! - `openapi`  GET /api/openapi.json

mod auth;
mod config;
mod error;
mod events;
mod file_spec;
mod logs;
pub mod openapi;
pub mod pulls;
pub mod rules;
mod slots;
pub mod views;
mod write;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::middleware;
use axum::routing::{any, get, post};
use tokio::sync::watch;

pub use error::ApiError;

use crate::config::store::ConfigStore;
use crate::model::{DesiredState, SlotName, SlotStatus};
use crate::source::{ConfigPublisher, ConfigReport};

/// What the API needs from whoever runs the slots.
pub trait SlotAdmin: Send + Sync + 'static {
    /// An explicit load (lifts a crash-loop).
    fn load(&self, slot: &SlotName);
    fn unload(&self, slot: &SlotName);
    /// The last `n` lines the slot's provider printed.
    fn logs(&self, slot: &SlotName, n: usize) -> Option<Vec<String>>;
}

/// Shared by the API handlers. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    /// Every declared slot's observed status, from the controller.
    pub statuses: watch::Receiver<Arc<BTreeMap<SlotName, SlotStatus>>>,
    /// The config as last applied: slot specs and the server settings (admin token).
    pub desired: watch::Receiver<Arc<DesiredState>>,
    /// The outcome of the file source's last read (rejected edits and their errors).
    pub reports: watch::Receiver<Arc<ConfigReport>>,
    /// Writes go through the file.
    pub store: Arc<ConfigStore>,
    /// A written version is published at once (not when the file watcher sees it).
    pub publisher: Arc<ConfigPublisher>,
    /// The desired state the controller has taken in: a write answers once it is the one
    /// published, so reads, loads and `/v1` see the change as soon as the write returns.
    pub applied: watch::Receiver<Arc<DesiredState>>,
    pub admin: Arc<dyn SlotAdmin>,
    /// The address hal0 is bound to: writes need the admin token beyond loopback.
    pub listen: SocketAddr,
    /// Becomes true when hal0 stops: open event streams end, so shutdown does not wait on them.
    pub shutdown: watch::Receiver<bool>,
    /// Model downloads started through the API.
    pub pulls: pulls::Pulls,
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/api/slots", get(slots::list).post(write::create))
        .route(
            "/api/slots/{name}",
            get(slots::get_one)
                .put(write::replace)
                .patch(write::merge)
                .delete(write::delete),
        )
        .route("/api/slots/{name}/load", post(slots::load))
        .route("/api/slots/{name}/unload", post(slots::unload))
        .route("/api/slots/{name}/logs", get(logs::logs))
        .route("/api/slots/{name}/file", get(file_spec::get))
        .route("/api/events", get(events::events))
        .route("/api/config", get(config::state))
        .route("/api/config/errors", get(config::errors))
        .route("/api/rules", get(rules::get))
        .route("/api/models/pull", post(pulls::start))
        .route("/api/models/pulls", get(pulls::list))
        .route("/api/openapi.json", get(openapi::document))
        .route("/api/{*rest}", any(unknown))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_admin,
        ))
        .layer(middleware::map_response(error::json_errors))
        .with_state(state)
}

async fn unknown(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::NOT_FOUND,
        "unknown_endpoint",
        format!(
            "{} is not an API endpoint; see /api/openapi.json",
            uri.path()
        ),
    )
}
