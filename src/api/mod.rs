//! The management API under `/api`: slot statuses, load and unload, provider logs.
//!
//! - `slots`  GET /api/slots, GET /api/slots/{name}, POST load/unload, GET logs

mod slots;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use tokio::sync::watch;

use crate::model::{SlotName, SlotStatus};

/// What the API needs from whoever runs the slots.
pub trait SlotAdmin: Send + Sync + 'static {
    /// An explicit load (lifts a crash-loop).
    fn load(&self, slot: &SlotName);
    fn unload(&self, slot: &SlotName);
    /// The last `n` lines the slot's provider printed.
    fn logs(&self, slot: &SlotName, n: usize) -> Option<Vec<String>>;
}

/// Shared by the API handlers.
#[derive(Clone)]
pub struct ApiState {
    pub statuses: watch::Receiver<Arc<BTreeMap<SlotName, SlotStatus>>>,
    pub admin: Arc<dyn SlotAdmin>,
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/api/slots", get(slots::list))
        .route("/api/slots/{name}", get(slots::get_one))
        .route("/api/slots/{name}/load", post(slots::load))
        .route("/api/slots/{name}/unload", post(slots::unload))
        .route("/api/slots/{name}/logs", get(slots::logs))
        .with_state(state)
}
