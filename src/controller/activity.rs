//! Request activity, recorded by the gateway and read by the controller: requests in flight,
//! requests waiting for the slot to serve (with when each arrived) and the last request time
//! per slot. Updates are a short std-mutex section. The controller
//! is woken only for slots it is watching (an idle slot that may become ready, a restart or
//! unload waiting for requests to end), and only when the in-flight count crosses zero: on a
//! busy, ready slot requests cost the controller nothing. Waiting requests (only for a slot
//! that does not serve) always wake it: they may need a load or a turn.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::model::SlotName;

#[derive(Debug, Clone)]
pub struct Activity {
    pub in_flight: u32,
    pub last: Instant,
    /// Whether the controller wants to hear when `in_flight` crosses zero.
    pub watched: bool,
    /// When each waiting request started waiting.
    pub waiting: Vec<Instant>,
}

#[derive(Debug, Default)]
pub struct ActivityTracker {
    slots: Mutex<HashMap<SlotName, Activity>>,
    changed: Notify,
}

impl ActivityTracker {
    pub fn started(&self, slot: &SlotName) {
        let notify = {
            let mut m = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let e = match m.get_mut(slot) {
                Some(e) => e,
                // First request ever for this slot: the controller has not seen it yet.
                None => m.entry(slot.clone()).or_insert(Activity {
                    in_flight: 0,
                    last: now,
                    watched: true,
                    waiting: Vec::new(),
                }),
            };
            e.in_flight += 1;
            e.last = now;
            e.in_flight == 1 && e.watched
        };
        if notify {
            self.changed.notify_one();
        }
    }

    pub fn finished(&self, slot: &SlotName) {
        let notify = {
            let mut m = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            match m.get_mut(slot) {
                Some(e) => {
                    e.in_flight = e.in_flight.saturating_sub(1);
                    e.last = Instant::now();
                    e.in_flight == 0 && e.watched
                }
                None => false,
            }
        };
        if notify {
            self.changed.notify_one();
        }
    }

    /// A request started waiting for the slot to serve, at `since`.
    pub fn waiting(&self, slot: &SlotName, since: Instant) {
        {
            let mut m = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            m.entry(slot.clone())
                .or_insert(Activity {
                    in_flight: 0,
                    last: since,
                    watched: true,
                    waiting: Vec::new(),
                })
                .waiting
                .push(since);
        }
        self.changed.notify_one();
    }

    /// The request that started waiting at `since` stopped waiting (it is served, failed or
    /// went away).
    pub fn done_waiting(&self, slot: &SlotName, since: Instant) {
        {
            let mut m = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(e) = m.get_mut(slot)
                && let Some(i) = e.waiting.iter().position(|t| *t == since)
            {
                e.waiting.swap_remove(i);
            }
        }
        self.changed.notify_one();
    }

    /// Sets which slots the controller wants to hear about.
    pub fn watch_only(&self, watched: impl Fn(&SlotName) -> bool) {
        let mut m = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        for (slot, a) in m.iter_mut() {
            a.watched = watched(slot);
        }
    }

    pub fn snapshot(&self) -> HashMap<SlotName, Activity> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Resolves when a watched slot's in-flight count crossed zero since the last call.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> SlotName {
        SlotName::parse(s).unwrap()
    }

    #[tokio::test]
    async fn only_watched_slots_wake_the_controller() {
        let t = ActivityTracker::default();
        t.started(&n("a"));
        // A new slot is watched: the controller hears of it.
        tokio::time::timeout(std::time::Duration::from_secs(1), t.changed())
            .await
            .expect("notified");
        t.watch_only(|_| false);
        t.finished(&n("a"));
        t.started(&n("a"));
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), t.changed())
                .await
                .is_err(),
            "an unwatched ready slot costs the controller nothing"
        );
        t.watch_only(|_| true);
        t.finished(&n("a"));
        tokio::time::timeout(std::time::Duration::from_secs(1), t.changed())
            .await
            .expect("notified");
        assert_eq!(t.snapshot()[&n("a")].in_flight, 0);
    }

    #[tokio::test]
    async fn waiting_requests_are_counted_with_their_arrival_and_always_wake() {
        let t = ActivityTracker::default();
        t.watch_only(|_| false);
        let first = Instant::now();
        let second = first + std::time::Duration::from_millis(5);
        t.waiting(&n("a"), first);
        t.waiting(&n("a"), second);
        tokio::time::timeout(std::time::Duration::from_secs(1), t.changed())
            .await
            .expect("notified");
        assert_eq!(t.snapshot()[&n("a")].waiting, vec![first, second]);
        t.done_waiting(&n("a"), first);
        tokio::time::timeout(std::time::Duration::from_secs(1), t.changed())
            .await
            .expect("notified");
        assert_eq!(t.snapshot()[&n("a")].waiting, vec![second]);
        assert_eq!(t.snapshot()[&n("a")].in_flight, 0);
    }
}
