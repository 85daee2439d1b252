//! The gateway's wake and activity bookkeeping, on virtual time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use k8s_openapi::jiff::Timestamp;
use tokio::sync::watch;
use tokio::time::Instant;

use super::wake::{KubeSlotControl, SlotWriter, Throttle, WakeWrites};
use crate::gateway::SlotControl;
use crate::model::SlotName;

fn n(s: &str) -> SlotName {
    SlotName::parse(s).expect("valid name")
}

#[test]
fn activity_is_written_once_per_window_however_many_requests() {
    let t0 = Instant::now();
    let mut t = Throttle::default();
    // However many requests came and went between two looks, the look says "used".
    t.observe(&n("fast"), 0, true);
    assert_eq!(t.due(t0), vec![n("fast")]);
    t.observe(&n("fast"), 0, true);
    assert!(t.due(t0 + Duration::from_secs(29)).is_empty());
    t.observe(&n("fast"), 0, false);
    assert_eq!(t.due(t0 + Duration::from_secs(30)), vec![n("fast")]);
    assert!(
        t.due(t0 + Duration::from_secs(90)).is_empty(),
        "quiet: nothing to write"
    );
}

#[test]
fn a_long_request_keeps_the_slot_active() {
    let t0 = Instant::now();
    let mut t = Throttle::default();
    t.observe(&n("fast"), 1, true);
    assert_eq!(t.due(t0), vec![n("fast")]);
    t.observe(&n("fast"), 1, false);
    assert_eq!(
        t.due(t0 + Duration::from_secs(30)),
        vec![n("fast")],
        "in flight, though nothing started or ended"
    );
    t.observe(&n("fast"), 0, true);
    assert_eq!(t.due(t0 + Duration::from_secs(60)), vec![n("fast")]);
    t.observe(&n("fast"), 0, false);
    assert!(t.due(t0 + Duration::from_secs(120)).is_empty());
}

#[test]
fn wakes_are_not_repeated_within_ten_seconds_and_write_activity_once() {
    let t0 = Instant::now();
    let mut t = Throttle::default();
    assert_eq!(t.wake(&n("fast"), t0), Some(WakeWrites { activity: true }));
    assert_eq!(t.wake(&n("fast"), t0 + Duration::from_secs(5)), None);
    assert_eq!(
        t.wake(&n("fast"), t0 + Duration::from_secs(11)),
        Some(WakeWrites { activity: false }),
        "activity was written 11 s ago"
    );
    t.observe(&n("fast"), 1, true);
    assert!(t.due(t0 + Duration::from_secs(20)).is_empty());
}

#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<String>>,
}

impl SlotWriter for Recorder {
    fn scale_up(&self, slot: &SlotName) -> BoxFuture<'static, Result<(), kube::Error>> {
        if let Ok(mut c) = self.calls.lock() {
            c.push(format!("scale {slot}"));
        }
        Box::pin(async { Ok(()) })
    }

    fn activity(
        &self,
        slot: &SlotName,
        _at: Timestamp,
    ) -> BoxFuture<'static, Result<(), kube::Error>> {
        if let Ok(mut c) = self.calls.lock() {
            c.push(format!("activity {slot}"));
        }
        Box::pin(async { Ok(()) })
    }
}

fn calls(r: &Recorder) -> Vec<String> {
    r.calls.lock().map(|c| c.clone()).unwrap_or_default()
}

#[tokio::test(start_paused = true)]
async fn the_control_task_scales_once_and_throttles_activity() {
    let rec = Arc::new(Recorder::default());
    let control = KubeSlotControl::spawn(
        rec.clone(),
        Arc::new(Timestamp::now),
        watch::channel(Arc::default()).1,
        watch::channel(Arc::default()).1,
    );
    let fast = n("fast");
    control.wake(&fast);
    control.wake(&fast);
    // Counted as the gateway counts: on the counter it took once, and (a request that waited
    // for the wake) through the trait.
    let counter = control.counter(&fast).expect("a counter per Slot");
    for _ in 0..50 {
        counter.started();
        counter.finished();
    }
    control.request_started(&fast);
    control.request_finished(&fast);
    tokio::time::sleep(Duration::from_secs(5)).await; // virtual time: lets the task run
    assert_eq!(calls(&rec), vec!["activity fast", "scale fast"]);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(
        calls(&rec),
        vec!["activity fast", "scale fast", "activity fast"],
        "the requests after the wake are written once, 30 s later"
    );
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(calls(&rec).len(), 3, "no requests: no writes");
    // A request that stays open keeps the Slot active: written every window while it lasts.
    counter.started();
    tokio::time::sleep(Duration::from_secs(65)).await;
    assert_eq!(calls(&rec).len(), 6, "{:?}", calls(&rec));
    counter.finished();
    tokio::time::sleep(Duration::from_secs(31)).await;
    assert_eq!(calls(&rec).len(), 7, "the end is activity too");
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(calls(&rec).len(), 7, "then quiet");
}

#[test]
fn a_counter_never_goes_below_zero_and_a_look_resets_used() {
    use crate::gateway::RequestCounter;
    let c = super::wake::ActivityCounter::default();
    assert_eq!(c.look(), (0, false));
    c.finished();
    assert_eq!(c.look(), (0, true), "an end without a start counts nothing");
    c.started();
    c.started();
    assert_eq!(c.look(), (2, true));
    assert_eq!(c.look(), (2, false), "nothing since the last look");
    c.finished();
    assert_eq!(c.look(), (1, true));
}
