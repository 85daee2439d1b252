//! Requests waiting for a slot to serve (`ensure_ready`), answered by the controller after
//! each round from what it just published: one load answers all of them, and a failed load
//! fails all of them. A waiter knows a load failed when the slot's failure count grows past
//! what it was when the wait began; the controller sees every round, so no failure is missed.

use std::collections::BTreeMap;

use tokio::time::Instant;

use super::handle::ReadyReply;
use crate::core::StatusMap;
use crate::model::{LoadError, RoutingTable, SlotName};

struct Waiter {
    reply: ReadyReply,
    failures_before: u64,
    since: Instant,
}

#[derive(Default)]
pub struct Waiters(BTreeMap<SlotName, Vec<Waiter>>);

impl Waiters {
    /// Answers at once from the published views if it can, else keeps the waiter.
    pub fn add(
        &mut self,
        slot: SlotName,
        reply: ReadyReply,
        statuses: &StatusMap,
        routes: &RoutingTable,
    ) {
        let failures_before = statuses.get(&slot).map_or(0, |s| s.load_failures);
        let waiter = Waiter {
            reply,
            failures_before,
            since: Instant::now(),
        };
        match answer(&slot, failures_before, statuses, routes) {
            Some(result) => {
                let _ = waiter.reply.send(result);
            }
            None => self.0.entry(slot).or_default().push(waiter),
        }
    }

    /// Slots that live requests wait for (waiters that went away are dropped).
    pub fn wanted(&mut self) -> Vec<SlotName> {
        self.0.retain(|_, ws| {
            ws.retain(|w| !w.reply.is_closed());
            !ws.is_empty()
        });
        self.0.keys().cloned().collect()
    }

    /// Per slot: how many requests wait (live waiters) and since when the oldest does. A
    /// waiter is demand like a request in the gateway's queue (which the activity tracker
    /// counts too; the controller takes the larger of the two counts).
    pub fn demand(&self) -> BTreeMap<SlotName, (u32, Instant)> {
        self.0
            .iter()
            .filter_map(|(slot, ws)| {
                let live: Vec<&Waiter> = ws.iter().filter(|w| !w.reply.is_closed()).collect();
                let since = live.iter().map(|w| w.since).min()?;
                Some((
                    slot.clone(),
                    (u32::try_from(live.len()).unwrap_or(u32::MAX), since),
                ))
            })
            .collect()
    }

    /// Answers every waiter whose slot now serves or cannot.
    pub fn resolve(&mut self, statuses: &StatusMap, routes: &RoutingTable) {
        self.0.retain(|slot, ws| {
            let mut keep = Vec::with_capacity(ws.len());
            for w in ws.drain(..) {
                match answer(slot, w.failures_before, statuses, routes) {
                    Some(result) => {
                        let _ = w.reply.send(result);
                    }
                    None if !w.reply.is_closed() => keep.push(w),
                    None => {}
                }
            }
            *ws = keep;
            !ws.is_empty()
        });
    }

    /// Ends every wait: hal0 is shutting down.
    pub fn shut_down(&mut self) {
        for w in std::mem::take(&mut self.0).into_values().flatten() {
            let _ = w.reply.send(Err(LoadError::ShuttingDown));
        }
    }
}

fn answer(
    slot: &SlotName,
    failures_before: u64,
    statuses: &StatusMap,
    routes: &RoutingTable,
) -> Option<Result<crate::model::Target, LoadError>> {
    let removed = || Err(LoadError::Removed { slot: slot.clone() });
    let Some(status) = statuses.get(slot) else {
        return Some(removed());
    };
    if status.accepts_requests() {
        return Some(
            routes
                .routes
                .get(slot)
                .map_or_else(removed, |r| Ok(r.target.clone())),
        );
    }
    LoadError::verdict(slot, status, failures_before).map(Err)
}
