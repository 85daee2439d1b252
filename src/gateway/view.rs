//! What a connection's requests read of the gateway's published state — the `/v1` keys, the
//! prepared routing table, the slot statuses — held by the connection and caught up when
//! something new is published.
//!
//! Reading a `watch` channel takes its lock, and cloning what it holds writes its reference
//! count: with each worker thread serving requests, every request wrote to the same few cache
//! lines (the locks, the counts) as every other, a handful of times. A view reads the
//! channels' versions (loads of lines that stay shared until something is published) and
//! lends what it holds.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{Ordering, fence};

use tokio::sync::watch;

use super::GatewayState;
use super::auth::KeySet;
use super::targets::Prepared;
use crate::model::{RoutingTable, SlotName, SlotStatus};

type Statuses = BTreeMap<SlotName, SlotStatus>;

/// A connection's view of the published keys, routes and statuses (see the module doc).
pub struct View {
    keys_rx: watch::Receiver<Arc<KeySet>>,
    keys: Arc<KeySet>,
    routes_rx: watch::Receiver<Arc<RoutingTable>>,
    prepared: Arc<Prepared>,
    statuses_rx: watch::Receiver<Arc<Statuses>>,
    statuses: Arc<Statuses>,
}

impl View {
    pub fn new(state: &GatewayState) -> Self {
        let mut keys_rx = state.keys.clone();
        let keys = keys_rx.borrow_and_update().clone();
        let mut routes_rx = state.routes.clone();
        let table = routes_rx.borrow_and_update().clone();
        let prepared = state.targets.get(&table);
        let mut statuses_rx = state.statuses.clone();
        let statuses = statuses_rx.borrow_and_update().clone();
        View {
            keys_rx,
            keys,
            routes_rx,
            prepared,
            statuses_rx,
            statuses,
        }
    }

    /// Catches up with what was published since; called before each request, so a request
    /// sees every key, route and status published before it began.
    pub fn refresh(&mut self, state: &GatewayState) {
        if self.keys_rx.has_changed().unwrap_or(false) {
            self.keys = self.keys_rx.borrow_and_update().clone();
        }
        if self.routes_rx.has_changed().unwrap_or(false) {
            let table = self.routes_rx.borrow_and_update().clone();
            self.prepared = state.targets.get(&table);
        }
        if self.statuses_rx.has_changed().unwrap_or(false) {
            self.statuses = self.statuses_rx.borrow_and_update().clone();
        }
    }

    pub fn keys(&self) -> &KeySet {
        &self.keys
    }

    pub fn prepared(&self) -> &Prepared {
        &self.prepared
    }

    /// Whether a new request may be sent to `slot` now: the latest status, not the one the
    /// view holds, when a newer one was published meanwhile.
    pub fn accepts(&self, slot: &SlotName) -> bool {
        // A request is counted in flight, then looked at again here, while the controller
        // publishes a drain, then looks at what is in flight: one of the two must see the
        // other's write.
        fence(Ordering::SeqCst);
        match self.statuses_rx.has_changed() {
            Ok(false) => accepts_in(&self.statuses, slot),
            _ => accepts_in(&self.statuses_rx.borrow(), slot),
        }
    }
}

/// Whether `slot` accepts new requests in `statuses`.
pub fn accepts_in(statuses: &Statuses, slot: &SlotName) -> bool {
    statuses
        .get(slot)
        .is_some_and(crate::model::SlotStatus::accepts_requests)
}
