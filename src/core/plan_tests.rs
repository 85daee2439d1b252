//! Table-driven tests of `plan()`: one row per rule.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::model::{
    ByteSize, DesiredState, Device, HumanDuration, LaunchSpec, Phase, ProviderKind, SlotName,
    SlotSpec,
};

use super::{Action, ObservedSlot, StopReason, Time, plan};

pub(super) const GIB: u64 = 1 << 30;

pub(super) fn n(s: &str) -> SlotName {
    SlotName::parse(s).unwrap()
}

pub(super) fn t(secs: u64) -> Time {
    Duration::from_secs(secs)
}

pub(super) fn spec() -> SlotSpec {
    SlotSpec::new(ProviderKind::LlamaCpp, Some("file:/m/a.gguf"))
}

/// A scenario: desired slots, observed slots, ports, and the time.
pub(super) struct World {
    pub(super) desired: DesiredState,
    pub(super) observed: BTreeMap<SlotName, ObservedSlot>,
    pub(super) ports: BTreeMap<SlotName, u16>,
}

impl World {
    pub(super) fn new() -> Self {
        World {
            desired: DesiredState::default(),
            observed: BTreeMap::new(),
            ports: BTreeMap::new(),
        }
    }

    pub(super) fn slot(mut self, name: &str, spec: SlotSpec) -> Self {
        let port = 9000 + self.ports.len() as u16;
        self.ports.insert(n(name), port);
        self.desired.slots.insert(n(name), spec);
        self
    }

    pub(super) fn launch(&self, name: &str) -> LaunchSpec {
        let name = n(name);
        LaunchSpec::new(
            &self.desired,
            &name,
            &self.desired.slots[&name],
            self.ports[&name],
        )
    }

    /// Observes the slot in `phase`, running the currently desired launch spec.
    pub(super) fn observe(
        mut self,
        name: &str,
        phase: Phase,
        f: impl FnOnce(&mut ObservedSlot),
    ) -> Self {
        let mut o = ObservedSlot {
            phase,
            want_loaded: true,
            launch: self
                .desired
                .slots
                .contains_key(&n(name))
                .then(|| self.launch(name)),
            last_activity: Some(t(0)),
            ..Default::default()
        };
        f(&mut o);
        self.observed.insert(n(name), o);
        self
    }

    pub(super) fn plan(&self, now: u64) -> super::Plan {
        plan(&self.desired, &self.observed, &self.ports, t(now))
    }
}

pub(super) fn start(w: &World, name: &str) -> Action {
    Action::Start {
        slot: n(name),
        launch: w.launch(name),
    }
}

fn restart(w: &World, name: &str) -> Action {
    Action::Restart {
        slot: n(name),
        launch: w.launch(name),
    }
}

pub(super) fn stop(name: &str, reason: StopReason) -> Action {
    Action::Stop {
        slot: n(name),
        reason,
    }
}

#[test]
fn launch_relevant_changes_restart_only_that_slot() {
    let base = || {
        World::new()
            .slot("a", spec())
            .slot("b", spec())
            .observe("a", Phase::Ready, |_| {})
            .observe("b", Phase::Ready, |_| {})
    };
    type Edit = fn(&mut SlotSpec);
    let launch_changes: Vec<(&str, Edit)> = vec![
        ("model", |s| s.model = Some("file:/m/other.gguf".into())),
        ("args", |s| {
            s.args = vec!["--ctx-size".into(), "4096".into()]
        }),
        ("env", |s| {
            s.env.insert("X".into(), "1".into());
        }),
        ("device", |s| s.device = Some(Device::Igpu)),
        ("provider", |s| s.provider = ProviderKind::Flm),
        ("role", |s| s.role = Some(crate::model::Role::Embeddings)),
    ];
    for (what, edit) in launch_changes {
        let mut w = base();
        edit(w.desired.slots.get_mut(&n("a")).unwrap());
        let p = w.plan(1);
        assert_eq!(p.actions, vec![restart(&w, "a")], "changing {what}");
    }
}

#[test]
fn port_and_provider_command_changes_restart() {
    let mut w = World::new()
        .slot("a", spec())
        .observe("a", Phase::Ready, |_| {});
    w.ports.insert(n("a"), 9500);
    assert_eq!(w.plan(1).actions, vec![restart(&w, "a")], "port");

    let mut w = World::new()
        .slot("a", spec())
        .observe("a", Phase::Idle, |o| o.idle_since = Some(t(5)));
    w.desired.providers.insert(
        ProviderKind::LlamaCpp,
        crate::model::ProviderOverride {
            command: Some(vec!["/opt/llama-server".into()]),
            env: BTreeMap::new(),
        },
    );
    assert_eq!(
        w.plan(6).actions,
        vec![restart(&w, "a")],
        "provider command"
    );
}

#[test]
fn in_place_changes_restart_nothing() {
    type Edit = fn(&mut SlotSpec);
    let in_place: Vec<(&str, Edit)> = vec![
        ("idle_timeout", |s| {
            s.idle_timeout = Some(HumanDuration::from_secs(3600))
        }),
        ("aliases", |s| s.aliases = vec!["fast".into()]),
        ("priority", |s| s.priority = Some(90)),
        ("pinned", |s| s.pinned = true),
        ("autoload", |s| s.autoload = true),
        ("memory", |s| s.memory = Some(ByteSize::gib(2))),
        ("min_residency", |s| {
            s.min_residency = Some(HumanDuration::from_secs(1))
        }),
    ];
    for (what, edit) in in_place {
        let mut w = World::new()
            .slot("a", spec())
            .observe("a", Phase::Ready, |_| {});
        edit(w.desired.slots.get_mut(&n("a")).unwrap());
        assert_eq!(w.plan(1).actions, vec![], "changing {what}");
    }
}

fn hold(name: &str, hold: bool) -> Action {
    Action::HoldRequests {
        slot: n(name),
        hold,
    }
}

#[test]
fn a_slot_with_requests_in_flight_holds_new_ones_and_restarts_when_they_end() {
    let mut w = World::new()
        .slot("a", spec())
        .observe("a", Phase::Ready, |o| o.in_flight = 1);
    w.desired.slots.get_mut(&n("a")).unwrap().args = vec!["-c".into(), "512".into()];
    let p = w.plan(1);
    assert_eq!(p.actions, vec![hold("a", true)]);
    assert_eq!(p.wake_at, Some(t(11)), "the default restart_drain is 10 s");
    w.observed.get_mut(&n("a")).unwrap().held_since = Some(t(1));
    assert_eq!(w.plan(2).actions, vec![]);
    w.observed.get_mut(&n("a")).unwrap().in_flight = 0;
    assert_eq!(w.plan(3).actions, vec![restart(&w, "a"), hold("a", false)]);
}

#[test]
fn a_restart_under_constant_load_waits_at_most_restart_drain() {
    let mut w = World::new()
        .slot("a", spec())
        .observe("a", Phase::Ready, |o| {
            o.in_flight = 3;
            o.held_since = Some(t(10));
        });
    w.desired.server.restart_drain = HumanDuration::from_secs(5);
    w.desired.slots.get_mut(&n("a")).unwrap().args = vec!["-c".into(), "512".into()];
    let p = w.plan(14);
    assert_eq!(p.actions, vec![]);
    assert_eq!(p.wake_at, Some(t(15)));
    assert_eq!(w.plan(15).actions, vec![restart(&w, "a")]);
}

#[test]
fn a_change_reverted_while_held_releases_the_hold() {
    let w = World::new()
        .slot("a", spec())
        .observe("a", Phase::Ready, |o| {
            o.in_flight = 1;
            o.held_since = Some(t(1));
        });
    assert_eq!(w.plan(2).actions, vec![hold("a", false)]);
}

#[test]
fn lifecycle_table() {
    struct Row {
        name: &'static str,
        world: World,
        now: u64,
        want: Vec<Action>,
        wake_at: Option<u64>,
    }
    let w = || World::new().slot("a", spec());
    let timeout = |secs| {
        let mut s = spec();
        s.idle_timeout = Some(HumanDuration::from_secs(secs));
        s
    };
    let rows = vec![
        Row {
            name: "a stopped slot nobody wants stays stopped",
            world: w().observe("a", Phase::Stopped, |o| o.want_loaded = false),
            now: 1,
            want: vec![],
            wake_at: None,
        },
        Row {
            name: "a new slot is not loaded before it is wanted",
            world: w(),
            now: 1,
            want: vec![],
            wake_at: None,
        },
        Row {
            name: "a wanted stopped slot starts",
            world: w().observe("a", Phase::Stopped, |o| o.launch = None),
            now: 1,
            want: vec![],
            wake_at: None,
        },
        Row {
            name: "ready slot becomes idle after idle_timeout",
            world: World::new()
                .slot("a", timeout(60))
                .observe("a", Phase::Ready, |o| o.last_activity = Some(t(10))),
            now: 70,
            want: vec![Action::MarkIdle { slot: n("a") }],
            wake_at: None,
        },
        Row {
            name: "ready slot within idle_timeout wakes the loop when it expires",
            world: World::new()
                .slot("a", timeout(60))
                .observe("a", Phase::Ready, |o| o.last_activity = Some(t(10))),
            now: 30,
            want: vec![],
            wake_at: Some(70),
        },
        Row {
            name: "idle_timeout 0s never idles",
            world: World::new()
                .slot("a", timeout(0))
                .observe("a", Phase::Ready, |_| {}),
            now: 100_000,
            want: vec![],
            wake_at: None,
        },
        Row {
            name: "a request in flight keeps a slot ready; it may be idle idle_timeout from now at the earliest",
            world: World::new()
                .slot("a", timeout(60))
                .observe("a", Phase::Ready, |o| o.in_flight = 1),
            now: 1000,
            want: vec![],
            wake_at: Some(1060),
        },
        Row {
            name: "activity on an idle slot makes it ready",
            world: w().observe("a", Phase::Idle, |o| {
                o.idle_since = Some(t(100));
                o.last_activity = Some(t(120));
            }),
            now: 121,
            want: vec![Action::MarkReady { slot: n("a") }],
            wake_at: None,
        },
        Row {
            name: "an idle slot stays loaded (it is only a candidate)",
            world: w().observe("a", Phase::Idle, |o| o.idle_since = Some(t(100))),
            now: 5000,
            want: vec![],
            wake_at: None,
        },
        Row {
            name: "explicit unload stops a ready slot",
            world: w().observe("a", Phase::Ready, |o| o.want_loaded = false),
            now: 1,
            want: vec![stop("a", StopReason::Unloaded)],
            wake_at: None,
        },
        Row {
            name: "a failed slot waits for its backoff",
            world: w().observe("a", Phase::Failed, |o| o.retry_at = Some(t(12))),
            now: 11,
            want: vec![],
            wake_at: Some(12),
        },
        Row {
            name: "a crash-looping slot stays parked",
            world: w().observe("a", Phase::CrashLoop, |_| {}),
            now: 1000,
            want: vec![],
            wake_at: None,
        },
        Row {
            name: "a removed running slot is stopped",
            world: World::new().observe("gone", Phase::Ready, |_| {}),
            now: 1,
            want: vec![stop("gone", StopReason::Removed)],
            wake_at: None,
        },
        Row {
            name: "a removed stopped slot is forgotten",
            world: World::new().observe("gone", Phase::Stopped, |_| {}),
            now: 1,
            want: vec![Action::Forget { slot: n("gone") }],
            wake_at: None,
        },
        Row {
            name: "a removed slot with requests in flight drains first",
            world: World::new().observe("gone", Phase::Ready, |o| o.in_flight = 2),
            now: 1,
            want: vec![],
            wake_at: None,
        },
        Row {
            name: "a slot being unloaded is left alone",
            world: w().observe("a", Phase::Unloading, |_| {}),
            now: 1,
            want: vec![],
            wake_at: None,
        },
    ];
    for row in rows {
        let p = row.world.plan(row.now);
        let want: Vec<Action> = if row.name == "a wanted stopped slot starts" {
            vec![start(&row.world, "a")]
        } else {
            row.want
        };
        assert_eq!(p.actions, want, "{}", row.name);
        assert_eq!(p.wake_at, row.wake_at.map(t), "{} (wake_at)", row.name);
    }
}

#[test]
fn a_failed_slot_restarts_when_its_backoff_is_due() {
    let w = World::new()
        .slot("a", spec())
        .observe("a", Phase::Failed, |o| o.retry_at = Some(t(12)));
    assert_eq!(w.plan(12).actions, vec![start(&w, "a")]);
}

#[test]
fn a_config_change_lifts_crash_loop_and_skips_backoff() {
    let mut w = World::new()
        .slot("a", spec())
        .observe("a", Phase::CrashLoop, |_| {});
    w.desired.slots.get_mut(&n("a")).unwrap().args = vec!["--fixed".into()];
    assert_eq!(w.plan(1).actions, vec![start(&w, "a")]);

    let mut w = World::new()
        .slot("a", spec())
        .observe("a", Phase::Failed, |o| o.retry_at = Some(t(60)));
    w.desired.slots.get_mut(&n("a")).unwrap().args = vec!["--fixed".into()];
    assert_eq!(w.plan(1).actions, vec![start(&w, "a")]);
}

#[test]
fn unload_idle_stops_idle_slots_at_once() {
    let mut s = spec();
    s.idle_timeout = Some(HumanDuration::from_secs(10));
    let mut w = World::new().slot("a", s).observe("a", Phase::Ready, |_| {});
    w.desired.server.unload_idle = true;
    assert_eq!(
        w.plan(11).actions,
        vec![
            stop("a", StopReason::Idle),
            Action::MarkIdle { slot: n("a") }
        ]
    );
}

pub(super) fn mem_world() -> World {
    let mut w = World::new();
    w.desired.server.memory_budget = Some(ByteSize(8 * GIB));
    w
}

/// `a` (6 GiB) is resident since t=0; `b` (6 GiB) is stopped with one request waiting since
/// t=1. The budget (8 GiB) holds only one of them. Default min_residency 10s, max_wait 60s.
pub(super) fn two(a: SlotSpec) -> World {
    mem_world()
        .slot("a", a)
        .slot("b", spec())
        .observe("a", Phase::Ready, |o| {
            o.memory_estimate = 6 * GIB;
            o.ready_since = Some(t(0));
        })
        .observe("b", Phase::Stopped, |o| {
            o.memory_estimate = 6 * GIB;
            o.launch = None;
            o.on_demand = true;
            o.waiting = 1;
            o.waiting_since = Some(t(1));
        })
}

#[test]
fn admission_evicts_idle_slots_by_priority_then_lru_and_loads_after() {
    let mut low = spec();
    low.priority = Some(10);
    let mut high = spec();
    high.priority = Some(90);
    let w = mem_world()
        .slot("low", low)
        .slot("high", high)
        .slot("new", spec())
        .observe("low", Phase::Idle, |o| o.memory_estimate = 4 * GIB)
        .observe("high", Phase::Idle, |o| o.memory_estimate = 4 * GIB)
        .observe("new", Phase::Stopped, |o| {
            o.memory_estimate = 3 * GIB;
            o.launch = None;
        });
    let p = w.plan(1);
    assert_eq!(
        p.actions,
        vec![stop("low", StopReason::Evicted { for_slot: n("new") })]
    );

    // Once the evicted slot has stopped, the load goes ahead.
    let mut w = w;
    w.observed.get_mut(&n("low")).unwrap().phase = Phase::Stopped;
    w.observed.get_mut(&n("low")).unwrap().want_loaded = false;
    assert_eq!(w.plan(2).actions, vec![start(&w, "new")]);
}

#[test]
fn admission_waits_while_memory_is_being_freed() {
    let w = mem_world()
        .slot("old", spec())
        .slot("new", spec())
        .observe("old", Phase::Unloading, |o| o.memory_estimate = 6 * GIB)
        .observe("new", Phase::Stopped, |o| o.memory_estimate = 4 * GIB);
    assert_eq!(w.plan(1).actions, vec![]);
}

#[test]
fn admission_refuses_with_a_message_when_nothing_can_be_evicted() {
    let mut pinned = spec();
    pinned.pinned = true;
    let w = mem_world()
        .slot("keep", pinned)
        .slot("new", spec())
        .observe("keep", Phase::Idle, |o| o.memory_estimate = 6 * GIB)
        .observe("new", Phase::Stopped, |o| o.memory_estimate = 4 * GIB);
    let p = w.plan(1);
    let [Action::Refuse { slot, message }] = p.actions.as_slice() else {
        panic!("expected one refusal, got {:?}", p.actions);
    };
    assert_eq!(slot, &n("new"));
    assert!(message.contains("needs 4GiB"), "{message}");
    assert!(message.contains("keep 6GiB (idle, pinned)"), "{message}");
}

#[test]
fn two_loads_in_one_plan_share_the_budget() {
    let w = mem_world()
        .slot("a", spec())
        .slot("b", spec())
        .observe("a", Phase::Stopped, |o| o.memory_estimate = 5 * GIB)
        .observe("b", Phase::Stopped, |o| o.memory_estimate = 5 * GIB);
    let p = w.plan(1);
    assert_eq!(p.actions.len(), 2, "{:?}", p.actions);
    assert_eq!(p.actions[0], start(&w, "a"));
    assert!(matches!(&p.actions[1], Action::Refuse { slot, .. } if slot == &n("b")));
}

#[test]
fn the_npu_runs_one_slot_at_a_time() {
    let npu = || {
        let mut s = SlotSpec::new(ProviderKind::Flm, Some("flm:llama3.2:1b"));
        s.device = Some(Device::Npu);
        s
    };
    let w = World::new()
        .slot("n1", npu())
        .slot("n2", npu())
        .observe("n1", Phase::Ready, |_| {})
        .observe("n2", Phase::Stopped, |o| o.launch = None);
    assert_eq!(
        w.plan(1).actions,
        vec![stop("n1", StopReason::Evicted { for_slot: n("n2") })]
    );

    let busy = World::new()
        .slot("n1", npu())
        .slot("n2", npu())
        .observe("n1", Phase::Ready, |o| o.in_flight = 1)
        .observe("n2", Phase::Stopped, |o| o.launch = None);
    let p = busy.plan(1);
    assert!(
        matches!(p.actions.as_slice(), [Action::Refuse { message, .. }] if message.contains("NPU runs one slot at a time")),
        "{:?}",
        p.actions
    );
}

#[test]
fn upstream_slots_need_no_actions() {
    let mut up = SlotSpec::new(ProviderKind::OpenAiCompatible, None);
    up.upstream = Some("https://example.invalid/v1".into());
    let mut w = World::new();
    w.desired.slots.insert(n("up"), up);
    assert_eq!(w.plan(1), super::Plan::default());
}
