//! The controller with a fake runtime on tokio's virtual time: starts, health, crashes and
//! backoff, idle stops and turn-taking, checked against the exact virtual times the plan
//! promises. No sleeps: every wait is on a published status, bounded in virtual time.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

mod fake_runtime;

use fake_runtime::{Call, FakeRuntime, Script};
use hal0::controller::{Controller, Published};
use hal0::core::RestartPolicy;
use hal0::model::{DesiredState, LoadError, Phase, SlotName, SlotStatus, Target};

/// How long a fake load takes.
const LOAD: Duration = Duration::from_secs(2);

/// A bound in virtual time for anything to happen: a test that waits longer fails.
const BOUND: Duration = Duration::from_secs(3600);

struct Harness {
    desired: watch::Sender<Arc<DesiredState>>,
    out: Published,
    script: Script,
    _stop: oneshot::Sender<()>,
}

fn n(s: &str) -> SlotName {
    SlotName::parse(s).expect("valid slot name")
}

fn config(text: &str) -> Arc<DesiredState> {
    match hal0::config::parse(Path::new("hal0.toml"), text) {
        Ok(d) => Arc::new(d),
        Err(e) => panic!("invalid test config: {e}\n{text}"),
    }
}

/// A llama.cpp slot with `extra` lines in its table.
fn slot(name: &str, extra: &str) -> String {
    format!("[slots.{name}]\nprovider = \"llama.cpp\"\nmodel = \"/models/{name}.gguf\"\n{extra}\n")
}

/// Lets `d` of virtual time pass. The clock is paused: this returns at once, after every timer
/// due before then has fired, in order. It stands for time in the story (a request arriving
/// later, a long request), never for waiting on something to happen.
async fn pass(d: Duration) {
    tokio::time::sleep(d).await;
}

fn start(text: &str) -> Harness {
    let (desired, rx) = watch::channel(config(text));
    let (events_tx, events_rx) = hal0::runtime::events();
    let (fake, script) = FakeRuntime::new(events_tx, LOAD);
    let (controller, out) = Controller::new(rx, fake, events_rx, RestartPolicy::default());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(controller.run(async {
        let _ = stopped.await;
    }));
    Harness {
        desired,
        out,
        script,
        _stop: stop,
    }
}

impl Harness {
    /// Waits (in virtual time, bounded) until `slot`'s published status satisfies `f`.
    async fn until(&self, slot: &str, what: &str, f: impl Fn(&SlotStatus) -> bool) -> SlotStatus {
        let slot = n(slot);
        let mut rx = self.out.statuses.clone();
        let wait = rx.wait_for(|all| all.get(&slot).is_some_and(&f));
        match tokio::time::timeout(BOUND, wait).await {
            Ok(Ok(all)) => all[&slot].clone(),
            _ => panic!(
                "slot {slot} never became {what}; last status: {:?}; runtime calls: {:?}",
                self.out.statuses.borrow().get(&slot),
                self.script.calls()
            ),
        }
    }

    async fn phase(&self, slot: &str, phase: Phase) -> SlotStatus {
        self.until(slot, phase.as_str(), |s| s.phase == phase).await
    }

    fn port(&self, slot: &str) -> u16 {
        self.out.statuses.borrow()[&n(slot)]
            .port
            .expect("a port is assigned")
    }
}

#[tokio::test(start_paused = true)]
async fn an_autoload_slot_is_started_with_its_launch_spec_and_ready_after_its_load() {
    let h = start(&slot("chat", "autoload = true\nmemory = \"700MiB\""));
    let t0 = Instant::now();
    let ready = h.phase("chat", Phase::Ready).await;
    assert_eq!(
        Instant::now() - t0,
        LOAD,
        "ready exactly one load after the start"
    );
    assert_eq!(ready.last_load_ms, Some(2000));
    let starts = h.script.starts();
    assert_eq!(starts.len(), 1, "{starts:?}");
    let Call::Start { launch, .. } = &h.script.calls()[0] else {
        panic!("the first call is the start");
    };
    assert_eq!(launch.generation, 1);
    assert_eq!(launch.process.model.as_deref(), Some("/models/chat.gguf"));
    assert_eq!(launch.port(), h.port("chat"));
    assert_eq!(launch.memory, 700 << 20);
    assert!(!launch.models.pull_on_load);
    // The change is live for a writer waiting on `applied`.
    assert!(Arc::ptr_eq(&h.out.applied.borrow(), &h.desired.borrow()));
}

#[tokio::test(start_paused = true)]
async fn ensure_ready_wakes_a_stopped_slot_and_one_load_answers_every_waiter() {
    let h = start(&slot("chat", ""));
    h.phase("chat", Phase::Stopped).await;
    let (a, b) = tokio::join!(
        h.out.handle.ensure_ready(&n("chat")),
        h.out.handle.ensure_ready(&n("chat"))
    );
    let port = h.port("chat");
    assert_eq!(a, Ok(Target::Local { port }));
    assert_eq!(b, Ok(Target::Local { port }));
    assert_eq!(h.script.starts().len(), 1, "one load for both");
    // Ready: answered at once, nothing started.
    assert_eq!(
        h.out.handle.ensure_ready(&n("chat")).await,
        Ok(Target::Local { port })
    );
    assert_eq!(h.script.starts().len(), 1);
    assert_eq!(
        h.out.handle.ensure_ready(&n("nope")).await,
        Err(LoadError::Removed { slot: n("nope") })
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_load_fails_every_waiting_request_with_its_reason() {
    let h = start(&slot("chat", ""));
    h.phase("chat", Phase::Stopped).await;
    h.script
        .fail_next_load(&n("chat"), "provider exited with code 1");
    let (a, b) = tokio::join!(
        h.out.handle.ensure_ready(&n("chat")),
        h.out.handle.ensure_ready(&n("chat"))
    );
    for r in [a, b] {
        match r {
            Err(LoadError::Failed { why, .. }) => assert_eq!(why, "provider exited with code 1"),
            other => panic!("expected a failed load, got {other:?}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_crash_is_retried_after_the_backoff_and_repeated_failures_end_in_crash_loop() {
    let h = start(&slot("chat", "autoload = true"));
    h.phase("chat", Phase::Ready).await;
    let crashed = Instant::now();
    h.script
        .crash(&n("chat"), "provider was killed by signal 9");
    let failed = h.phase("chat", Phase::Failed).await;
    assert_eq!(
        failed.last_error.as_deref(),
        Some("provider was killed by signal 9")
    );
    h.phase("chat", Phase::Ready).await;
    let starts = h.script.starts();
    assert_eq!(starts.len(), 2, "{starts:?}");
    assert_eq!(starts[1].2, 2, "a new generation");
    assert_eq!(
        starts[1].0 - crashed,
        RestartPolicy::default().base,
        "retried exactly one backoff after the crash"
    );

    // A second crash, and the three loads after it fail: the delays double, and the fifth
    // failure in the window parks the slot in crash-loop, which a waiting request hears at once.
    let policy = RestartPolicy::default();
    for _ in 0..policy.max_failures - 2 {
        h.script.fail_next_load(&n("chat"), "bad model");
    }
    h.script.crash(&n("chat"), "provider exited with code 1");
    let parked = h.phase("chat", Phase::CrashLoop).await;
    assert_eq!(parked.last_error.as_deref(), Some("bad model"));
    let starts = h.script.starts();
    let gaps: Vec<Duration> = starts.windows(2).skip(1).map(|w| w[1].0 - w[0].0).collect();
    assert_eq!(
        gaps,
        [2, 4, 8].map(|s| Duration::from_secs(s) + LOAD),
        "each retry waits the doubled backoff after a failed load"
    );
    match h.out.handle.ensure_ready(&n("chat")).await {
        Err(LoadError::CrashLoop { why, .. }) => assert_eq!(why, "bad model"),
        other => panic!("expected crash-loop, got {other:?}"),
    }
    // An explicit load lifts it.
    h.out.handle.load(&n("chat"));
    h.phase("chat", Phase::Ready).await;
}

#[tokio::test(start_paused = true)]
async fn an_idle_slot_is_stopped_exactly_at_its_idle_timeout_with_unload_idle() {
    let h = start(&format!(
        "[server]\nunload_idle = true\n\n{}",
        slot("chat", "autoload = false\nidle_timeout = \"30s\"")
    ));
    h.phase("chat", Phase::Stopped).await;
    h.out.handle.load(&n("chat"));
    h.phase("chat", Phase::Ready).await;
    let ready = Instant::now();
    // A request 10 s in moves the idle point.
    pass(Duration::from_secs(10)).await;
    h.out.handle.request_started(&n("chat"));
    h.out.handle.request_finished(&n("chat"));
    h.phase("chat", Phase::Stopped).await;
    let stops = h.script.stops();
    assert_eq!(stops.len(), 1, "{stops:?}");
    assert_eq!(
        stops[0].0 - ready,
        Duration::from_secs(40),
        "30 s after the last request"
    );
}

/// Two slots of 700MiB under a 1GiB budget: they take turns.
fn two_slots(alpha: &str) -> String {
    format!(
        "[server]\nmemory_budget = \"1GiB\"\n\n{}\n{}",
        slot("alpha", &format!("memory = \"700MiB\"\n{alpha}")),
        slot("beta", "memory = \"700MiB\"")
    )
}

#[tokio::test(start_paused = true)]
async fn a_waiting_request_swaps_out_the_slot_in_its_way_after_its_min_residency() {
    let h = start(&two_slots("autoload = true\nmin_residency = \"5s\""));
    h.phase("alpha", Phase::Ready).await;
    let alpha_ready = Instant::now();
    let since = Instant::now();
    h.out.handle.request_waiting(&n("beta"), since);
    let target = h.out.handle.ensure_ready(&n("beta")).await;
    h.out.handle.request_done_waiting(&n("beta"), since);
    assert_eq!(
        target,
        Ok(Target::Local {
            port: h.port("beta")
        })
    );
    let stops = h.script.stops();
    assert_eq!(stops.len(), 1, "{stops:?}");
    assert_eq!(
        (stops[0].0 - alpha_ready, &stops[0].1),
        (Duration::from_secs(5), &n("alpha"))
    );
    let starts = h.script.starts();
    assert_eq!(
        starts.last().map(|s| (s.0, &s.1)),
        Some((stops[0].0, &n("beta"))),
        "beta loads once alpha is stopped"
    );
    let alpha = h.out.statuses.borrow()[&n("alpha")].clone();
    assert_eq!((alpha.phase, alpha.swaps), (Phase::Stopped, 1));
}

#[tokio::test(start_paused = true)]
async fn a_drained_slot_finishes_its_requests_in_flight_before_the_swap() {
    let h = start(&two_slots("autoload = true\nmin_residency = \"1s\""));
    h.phase("alpha", Phase::Ready).await;
    h.out.handle.request_started(&n("alpha"));
    let since = Instant::now();
    h.out.handle.request_waiting(&n("beta"), since);
    let beta = tokio::spawn({
        let handle = h.out.handle.clone();
        async move { handle.ensure_ready(&n("beta")).await }
    });
    let drained = h
        .until("alpha", "drained for beta", |s| {
            s.draining_for == Some(n("beta"))
        })
        .await;
    assert!(
        !drained.accepts_requests(),
        "new requests for alpha wait for its next turn"
    );
    assert_eq!(drained.phase, Phase::Ready, "not stopped under a request");
    pass(Duration::from_secs(30)).await; // a long request
    assert!(
        h.script.stops().is_empty(),
        "nothing stops while the request is in flight"
    );
    let ended = Instant::now();
    h.out.handle.request_finished(&n("alpha"));
    let target = beta.await.expect("the waiter task");
    h.out.handle.request_done_waiting(&n("beta"), since);
    assert_eq!(
        target,
        Ok(Target::Local {
            port: h.port("beta")
        })
    );
    assert_eq!(
        h.script.stops().first().map(|s| s.0),
        Some(ended),
        "swapped as the request ended"
    );
}

#[tokio::test(start_paused = true)]
async fn a_load_nobody_waits_for_any_more_is_stopped() {
    let h = start(&slot("chat", ""));
    h.phase("chat", Phase::Stopped).await;
    let since = Instant::now();
    h.out.handle.request_waiting(&n("chat"), since);
    let wait = h.out.handle.ensure_ready(&n("chat"));
    // The client goes away while the slot loads.
    let _ = tokio::time::timeout(LOAD / 2, wait).await;
    h.out.handle.request_done_waiting(&n("chat"), since);
    h.phase("chat", Phase::Stopped).await;
    assert_eq!(h.script.stops().len(), 1, "the load was stopped");
    assert!(
        h.script.stops()[0].0 - since < LOAD,
        "before it finished loading"
    );
}

#[tokio::test(start_paused = true)]
async fn a_removed_slot_ends_its_waits_and_is_stopped() {
    let h = start(&format!("{}{}", slot("chat", ""), slot("other", "")));
    h.script.fail_next_load(&n("chat"), "unused");
    let wait = tokio::spawn({
        let handle = h.out.handle.clone();
        async move { handle.ensure_ready(&n("chat")).await }
    });
    h.phase("chat", Phase::Loading).await;
    h.desired.send_replace(config(&slot("other", "")));
    assert_eq!(
        wait.await.expect("the waiter task"),
        Err(LoadError::Removed { slot: n("chat") })
    );
    let mut statuses = h.out.statuses.clone();
    let gone = statuses.wait_for(|s| !s.contains_key(&n("chat")));
    assert!(
        tokio::time::timeout(BOUND, gone).await.is_ok(),
        "chat is forgotten"
    );
    assert_eq!(h.script.stops().len(), 1);
}
