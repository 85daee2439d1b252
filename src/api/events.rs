//! `GET /api/events`: a server-sent event stream of what changes.
//!
//! - `snapshot`      first, once: the whole `SlotList` (so a client needs no separate GET)
//! - `slot`          a slot appeared or its status or spec changed: its `SlotView`
//! - `slot-removed`  a slot is no longer declared: `{"name"}`
//! - `config`        the file was read again: `ConfigState` (`ok: false` with the errors when
//!   the edit was rejected and the running slots kept their last good config)

use std::collections::BTreeMap;
use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::ApiState;
use super::views::{SlotRemoved, SlotView};
use crate::model::SlotName;

fn event(name: &str, data: &impl Serialize) -> Option<Event> {
    Event::default().event(name).json_data(data).ok()
}

pub async fn events(
    State(state): State<ApiState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let (tx, rx) = mpsc::channel::<Event>(256);
    tokio::spawn(follow(state, tx));
    let stream = futures_util::StreamExt::map(ReceiverStream::new(rx), Ok);
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// Sends the snapshot, then one event per change, until the client goes away or hal0 stops.
async fn follow(state: ApiState, tx: mpsc::Sender<Event>) {
    let mut statuses = state.statuses.clone();
    let mut desired = state.desired.clone();
    let mut reports = state.reports.clone();
    let mut shutdown = state.shutdown.clone();
    statuses.borrow_and_update();
    desired.borrow_and_update();
    let mut report = reports.borrow_and_update().clone();
    let list = state.slot_list();
    let mut slots: BTreeMap<SlotName, SlotView> = list
        .slots
        .iter()
        .map(|v| (v.status.name.clone(), v.clone()))
        .collect();
    if let Some(e) = event("snapshot", &list)
        && tx.send(e).await.is_err()
    {
        return;
    }
    loop {
        let alive = tokio::select! {
            _ = tx.closed() => false,
            _ = shutdown.wait_for(|stop| *stop) => false,
            r = statuses.changed() => r.is_ok(),
            r = desired.changed() => r.is_ok(),
            r = reports.changed() => r.is_ok(),
        };
        if !alive {
            return;
        }
        statuses.borrow_and_update();
        desired.borrow_and_update();
        let mut out = Vec::new();
        let now_report = reports.borrow_and_update().clone();
        if now_report != report {
            report = now_report;
            out.extend(event("config", &state.config_state()));
        }
        let now = state.slot_views();
        for name in slots.keys().filter(|n| !now.contains_key(*n)) {
            out.extend(event("slot-removed", &SlotRemoved { name: name.clone() }));
        }
        for (name, view) in &now {
            if slots.get(name) != Some(view) {
                out.extend(event("slot", view));
            }
        }
        slots = now;
        for e in out {
            if tx.send(e).await.is_err() {
                return;
            }
        }
    }
}
