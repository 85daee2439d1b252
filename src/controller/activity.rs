//! Request activity, recorded by the gateway and read by the controller: requests in flight,
//! requests waiting for the slot to serve (with when each arrived) and the last request time
//! per slot. A request in flight is counted on its slot's [`SlotCounter`] — atomics the gateway
//! holds a handle to, so counting takes no lock and no lookup; waiting requests (the rare path)
//! are a short std-mutex section. The controller is woken only for slots it is watching (an
//! idle slot that may become ready, a restart or unload waiting for requests to end), and only
//! when the in-flight count crosses zero: on a busy, ready slot requests cost the controller
//! nothing. Waiting requests (only for a slot that does not serve) always wake it: they may
//! need a load or a turn.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

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

/// One slot's requests in flight and when one last began or ended.
#[derive(Debug)]
pub struct SlotCounter {
    in_flight: AtomicU32,
    /// Nanoseconds after the tracker's `base`, plus one; 0: no request yet.
    last: AtomicU64,
    watched: AtomicBool,
    base: Instant,
    changed: Arc<Notify>,
}

impl SlotCounter {
    fn touch(&self) {
        let nanos = Instant::now()
            .saturating_duration_since(self.base)
            .as_nanos();
        self.last
            .store(u64::try_from(nanos).unwrap_or(u64::MAX - 1) + 1, SeqCst);
    }

    /// A request began.
    pub fn started(&self) {
        if self.in_flight.fetch_add(1, SeqCst) == 0 {
            self.touch();
            if self.watched.load(SeqCst) {
                self.changed.notify_one();
            }
        }
    }

    /// That request ended (completed, failed or cancelled).
    pub fn finished(&self) {
        let Ok(before) = self
            .in_flight
            .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
        else {
            return;
        };
        self.touch();
        if before == 1 && self.watched.load(SeqCst) {
            self.changed.notify_one();
        }
    }

    fn last(&self) -> Option<Instant> {
        match self.last.load(SeqCst) {
            0 => None,
            n => Some(self.base + std::time::Duration::from_nanos(n - 1)),
        }
    }
}

#[derive(Debug)]
struct Entry {
    counter: Arc<SlotCounter>,
    waiting: Vec<Instant>,
    last_waiting: Option<Instant>,
}

#[derive(Debug)]
pub struct ActivityTracker {
    slots: Mutex<HashMap<SlotName, Entry>>,
    changed: Arc<Notify>,
    base: Instant,
}

impl Default for ActivityTracker {
    fn default() -> Self {
        ActivityTracker {
            slots: Mutex::default(),
            changed: Arc::default(),
            base: Instant::now(),
        }
    }
}

impl ActivityTracker {
    /// `slot`'s entry, made on first use (a slot the controller has not seen is watched).
    fn entry<'m>(&self, m: &'m mut HashMap<SlotName, Entry>, slot: &SlotName) -> &'m mut Entry {
        m.entry(slot.clone()).or_insert_with(|| Entry {
            counter: Arc::new(SlotCounter {
                in_flight: AtomicU32::new(0),
                last: AtomicU64::new(0),
                watched: AtomicBool::new(true),
                base: self.base,
                changed: self.changed.clone(),
            }),
            waiting: Vec::new(),
            last_waiting: None,
        })
    }

    /// `slot`'s counter.
    pub fn counter(&self, slot: &SlotName) -> Arc<SlotCounter> {
        let mut m = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        self.entry(&mut m, slot).counter.clone()
    }

    pub fn started(&self, slot: &SlotName) {
        self.counter(slot).started();
    }

    pub fn finished(&self, slot: &SlotName) {
        let counter = {
            let m = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            m.get(slot).map(|e| e.counter.clone())
        };
        if let Some(c) = counter {
            c.finished();
        }
    }

    /// A request started waiting for the slot to serve, at `since`.
    pub fn waiting(&self, slot: &SlotName, since: Instant) {
        {
            let mut m = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            let e = self.entry(&mut m, slot);
            e.waiting.push(since);
            e.last_waiting = Some(e.last_waiting.map_or(since, |l| l.max(since)));
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
        let m = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        for (slot, e) in m.iter() {
            e.counter.watched.store(watched(slot), SeqCst);
        }
    }

    /// Every slot a request has come for (in flight, ended or waiting).
    pub fn snapshot(&self) -> HashMap<SlotName, Activity> {
        let m = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        m.iter()
            .filter_map(|(slot, e)| {
                let last = match (e.counter.last(), e.last_waiting) {
                    (Some(a), Some(b)) => a.max(b),
                    (a, b) => a.or(b)?,
                };
                let activity = Activity {
                    in_flight: e.counter.in_flight.load(SeqCst),
                    last,
                    watched: e.counter.watched.load(SeqCst),
                    waiting: e.waiting.clone(),
                };
                Some((slot.clone(), activity))
            })
            .collect()
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
    async fn a_counter_taken_ahead_counts_without_the_tracker() {
        let t = ActivityTracker::default();
        // The gateway takes the counter when a routing table is published: no request yet, so
        // the slot has no activity to report.
        let c = t.counter(&n("a"));
        assert!(t.snapshot().is_empty());
        c.finished();
        assert!(
            t.snapshot().is_empty(),
            "an end without a start counts nothing"
        );
        c.started();
        c.started();
        tokio::time::timeout(std::time::Duration::from_secs(1), t.changed())
            .await
            .expect("a new slot is watched: the first request wakes the controller");
        assert_eq!(t.snapshot()[&n("a")].in_flight, 2);
        // The same counter whichever way it is reached.
        t.finished(&n("a"));
        let before = t.snapshot()[&n("a")].last;
        c.finished();
        let a = &t.snapshot()[&n("a")];
        assert_eq!(a.in_flight, 0);
        assert!(a.last >= before);
        tokio::time::timeout(std::time::Duration::from_secs(1), t.changed())
            .await
            .expect("crossing zero on a watched slot wakes the controller");
        // watch_only reaches counters already handed out.
        t.watch_only(|_| false);
        c.started();
        c.finished();
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), t.changed())
                .await
                .is_err(),
            "an unwatched slot's requests cost the controller nothing"
        );
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
