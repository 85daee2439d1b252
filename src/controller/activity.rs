//! Request activity, recorded by the gateway and read by the controller: requests in flight
//! and the last request time per slot. Updates are a short std-mutex section; the controller is
//! only woken when a slot's in-flight count changes between zero and non-zero.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::model::SlotName;

#[derive(Debug, Clone, Copy)]
pub struct Activity {
    pub in_flight: u32,
    pub last: Instant,
}

#[derive(Debug, Default)]
pub struct ActivityTracker {
    slots: Mutex<HashMap<SlotName, Activity>>,
    changed: Notify,
}

impl ActivityTracker {
    pub fn started(&self, slot: &SlotName) {
        let first = {
            let mut m = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let e = m.entry(slot.clone()).or_insert(Activity {
                in_flight: 0,
                last: now,
            });
            e.in_flight += 1;
            e.last = now;
            e.in_flight == 1
        };
        if first {
            self.changed.notify_one();
        }
    }

    pub fn finished(&self, slot: &SlotName) {
        let last = {
            let mut m = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            match m.get_mut(slot) {
                Some(e) => {
                    e.in_flight = e.in_flight.saturating_sub(1);
                    e.last = Instant::now();
                    e.in_flight == 0
                }
                None => false,
            }
        };
        if last {
            self.changed.notify_one();
        }
    }

    pub fn snapshot(&self) -> HashMap<SlotName, Activity> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Resolves when a slot's in-flight count crossed zero since the last call.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }
}
