//! Table tests of turn-taking: slots that cannot be loaded together (memory budget, the NPU)
//! take turns when requests wait for them, and loads nobody waits for any more are abandoned.

use crate::model::{Device, HumanDuration, Phase, ProviderKind, SlotSpec};

use super::plan_tests::{GIB, World, mem_world, n, spec, start, stop, t, two};
use super::{Action, StopReason};

fn drain(slot: &str, for_slot: &str) -> Action {
    Action::Drain {
        slot: n(slot),
        for_slot: n(for_slot),
    }
}

fn swapped(slot: &str, for_slot: &str) -> Action {
    stop(
        slot,
        StopReason::Swapped {
            for_slot: n(for_slot),
        },
    )
}

fn with(f: impl FnOnce(&mut SlotSpec)) -> SlotSpec {
    let mut s = spec();
    f(&mut s);
    s
}

struct Row {
    name: &'static str,
    world: World,
    now: u64,
    want: Vec<Action>,
    wake_at: Option<u64>,
}

#[test]
fn turns_table() {
    let rows = vec![
        Row {
            name: "a waiting request is not refused: it waits for the resident slot's min_residency",
            world: two(spec()),
            now: 5,
            want: vec![],
            wake_at: Some(10),
        },
        Row {
            name: "past min_residency the resident slot is drained, even with requests in flight",
            world: two(spec()).observe("a", Phase::Ready, |o| {
                o.memory_estimate = 6 * GIB;
                o.ready_since = Some(t(0));
                o.in_flight = 2;
            }),
            now: 10,
            want: vec![drain("a", "b")],
            // Its idle clock is looked at again (the end of its requests wakes nobody).
            wake_at: Some(610),
        },
        Row {
            name: "a ready slot that has not reached its idle_timeout is drained too",
            world: two(with(|s| {
                s.idle_timeout = Some(HumanDuration::from_secs(3600))
            })),
            now: 11,
            want: vec![drain("a", "b")],
            wake_at: Some(3600),
        },
        Row {
            name: "a drained slot with nothing in flight is swapped out",
            world: two(spec()).observe("a", Phase::Ready, |o| {
                o.memory_estimate = 6 * GIB;
                o.ready_since = Some(t(0));
                o.draining = Some(n("b"));
            }),
            now: 12,
            want: vec![swapped("a", "b")],
            wake_at: Some(600),
        },
        Row {
            name: "a drained slot finishes the requests in flight first",
            world: two(spec()).observe("a", Phase::Ready, |o| {
                o.memory_estimate = 6 * GIB;
                o.ready_since = Some(t(0));
                o.draining = Some(n("b"));
                o.in_flight = 1;
                o.waiting = 3;
            }),
            now: 12,
            want: vec![],
            wake_at: None,
        },
        Row {
            name: "while the swapped-out slot unloads, the waiting one waits",
            world: two(spec()).observe("a", Phase::Unloading, |o| {
                o.memory_estimate = 6 * GIB;
            }),
            now: 13,
            want: vec![],
            wake_at: Some(61),
        },
        Row {
            name: "a resident slot serves the requests waiting for it before it is drained",
            world: two(spec()).observe("a", Phase::Ready, |o| {
                o.memory_estimate = 6 * GIB;
                o.ready_since = Some(t(0));
                o.waiting = 1;
            }),
            now: 20,
            want: vec![],
            wake_at: Some(61),
        },
        Row {
            name: "max_wait wins over min_residency",
            world: two(with(|s| {
                s.min_residency = Some(HumanDuration::from_secs(600))
            })),
            now: 61,
            want: vec![drain("a", "b")],
            wake_at: Some(600),
        },
        Row {
            name: "min_residency 0s: the resident slot is drained as soon as a request waits",
            world: two(with(|s| {
                s.min_residency = Some(HumanDuration::from_secs(0))
            })),
            now: 1,
            want: vec![drain("a", "b")],
            wake_at: Some(600),
        },
        Row {
            name: "a loading slot is never swapped out: the waiting one waits for it",
            world: two(spec()).observe("a", Phase::Loading, |o| {
                o.memory_estimate = 6 * GIB;
            }),
            now: 30,
            want: vec![],
            wake_at: Some(61),
        },
        Row {
            name: "the drain is lifted when the requests waiting for the other slot leave",
            world: two(spec())
                .observe("a", Phase::Ready, |o| {
                    o.memory_estimate = 6 * GIB;
                    o.ready_since = Some(t(0));
                    o.draining = Some(n("b"));
                    o.in_flight = 1;
                })
                .observe("b", Phase::Stopped, |o| {
                    o.memory_estimate = 6 * GIB;
                    o.launch = None;
                    o.on_demand = true;
                }),
            now: 12,
            want: vec![
                Action::Abandon { slot: n("b") },
                Action::Undrain { slot: n("a") },
            ],
            wake_at: None,
        },
    ];
    for row in rows {
        let p = row.world.plan(row.now);
        assert_eq!(p.actions, row.want, "{}", row.name);
        assert_eq!(p.wake_at, row.wake_at.map(t), "{} (wake_at)", row.name);
    }
}

#[test]
fn once_the_swapped_out_slot_has_stopped_the_waiting_one_starts() {
    let w = two(spec()).observe("a", Phase::Stopped, |o| {
        o.memory_estimate = 6 * GIB;
        o.want_loaded = false;
    });
    assert_eq!(w.plan(14).actions, vec![start(&w, "b")]);
}

#[test]
fn pinned_slots_are_never_swapped_out_so_the_wait_is_refused_with_the_reason() {
    let w = two(with(|s| s.pinned = true));
    let p = w.plan(100);
    let [Action::Refuse { slot, message }] = p.actions.as_slice() else {
        panic!("expected one refusal, got {:?}", p.actions);
    };
    assert_eq!(slot, &n("b"));
    assert!(message.contains("pinned slots hold the rest"), "{message}");
    assert!(message.contains("a 6GiB (ready, pinned)"), "{message}");
}

#[test]
fn without_waiting_requests_a_ready_slot_is_not_swapped_out() {
    // An autoload (or explicit load) nobody waits for does not take turns: refused as before.
    let w = two(spec()).observe("b", Phase::Stopped, |o| {
        o.memory_estimate = 6 * GIB;
        o.launch = None;
    });
    assert!(
        matches!(w.plan(100).actions.as_slice(), [Action::Refuse { slot, .. }] if slot == &n("b"))
    );
}

#[test]
fn priority_decides_which_resident_slot_gives_way() {
    let w = mem_world()
        .slot("low", with(|s| s.priority = Some(10)))
        .slot("high", with(|s| s.priority = Some(90)))
        .slot("new", spec())
        .observe("high", Phase::Ready, |o| o.memory_estimate = 4 * GIB)
        .observe("low", Phase::Ready, |o| o.memory_estimate = 4 * GIB)
        .observe("new", Phase::Stopped, |o| {
            o.memory_estimate = 4 * GIB;
            o.launch = None;
            o.waiting = 1;
            o.waiting_since = Some(t(1));
        });
    assert_eq!(w.plan(20).actions, vec![drain("low", "new")]);
}

#[test]
fn an_urgent_waiter_goes_before_a_higher_priority_one() {
    let w = mem_world()
        .slot("a", spec())
        .slot("hi", with(|s| s.priority = Some(90)))
        .slot("lo", with(|s| s.priority = Some(10)))
        .observe("a", Phase::Ready, |o| {
            o.memory_estimate = 6 * GIB;
            o.ready_since = Some(t(55));
        })
        .observe("hi", Phase::Stopped, |o| {
            o.memory_estimate = 6 * GIB;
            o.waiting = 1;
            o.waiting_since = Some(t(90));
        })
        .observe("lo", Phase::Stopped, |o| {
            o.memory_estimate = 6 * GIB;
            o.waiting = 1;
            o.waiting_since = Some(t(0));
        });
    // lo has waited 60s: it gets the (still resident-protected) slot; hi waits its turn.
    assert_eq!(w.plan(60).actions, vec![drain("a", "lo")]);
    // Before that, neither may interrupt a's residency.
    assert_eq!(w.plan(59).actions, vec![]);
}

#[test]
fn npu_slots_take_turns_too() {
    let npu = || {
        let mut s = SlotSpec::new(ProviderKind::Flm, Some("flm:llama3.2:1b"));
        s.device = Some(Device::Npu);
        s
    };
    let w = World::new()
        .slot("n1", npu())
        .slot("n2", npu())
        .observe("n1", Phase::Ready, |o| {
            o.in_flight = 1;
            o.ready_since = Some(t(0));
        })
        .observe("n2", Phase::Stopped, |o| {
            o.launch = None;
            o.waiting = 2;
            o.waiting_since = Some(t(3));
        });
    assert_eq!(w.plan(5).actions, vec![], "within n1's min_residency");
    assert_eq!(w.plan(10).actions, vec![drain("n1", "n2")]);
}

#[test]
fn loads_nobody_waits_for_any_more_are_abandoned() {
    let loading = |f: fn(&mut SlotSpec), on_demand: bool| {
        World::new()
            .slot("a", with(f))
            .observe("a", Phase::Loading, |o| o.on_demand = on_demand)
    };
    assert_eq!(
        loading(|_| {}, true).plan(1).actions,
        vec![stop("a", StopReason::Abandoned)]
    );
    let pulling = World::new()
        .slot("a", spec())
        .observe("a", Phase::Pulling, |o| o.on_demand = true);
    assert_eq!(
        pulling.plan(1).actions,
        vec![stop("a", StopReason::Abandoned)]
    );
    assert_eq!(
        loading(|s| s.autoload = true, true).plan(1).actions,
        vec![],
        "autoload"
    );
    assert_eq!(
        loading(|s| s.pinned = true, true).plan(1).actions,
        vec![],
        "pinned"
    );
    assert_eq!(
        loading(|_| {}, false).plan(1).actions,
        vec![],
        "an explicit load"
    );
    let waited = World::new()
        .slot("a", spec())
        .observe("a", Phase::Loading, |o| {
            o.on_demand = true;
            o.waiting = 1;
        });
    assert_eq!(waited.plan(1).actions, vec![], "a request still waits");
    let queued = World::new()
        .slot("a", spec())
        .observe("a", Phase::Stopped, |o| o.on_demand = true);
    assert_eq!(
        queued.plan(1).actions,
        vec![Action::Abandon { slot: n("a") }],
        "waiting for its turn"
    );
}

#[test]
fn a_sleeping_slot_counts_at_its_measured_footprint_and_wakes_through_admission() {
    let sleeping = |waiting: u32| {
        mem_world()
            .slot("a", spec())
            .slot("b", spec())
            .observe("a", Phase::Sleeping, |o| {
                o.memory_estimate = 6 * GIB;
                o.memory_rss = Some(GIB / 16);
                o.waiting = waiting;
                o.waiting_since = Some(t(1));
            })
    };
    // b (6 GiB) fits next to the sleeping a (64 MiB measured).
    let w = sleeping(0).observe("b", Phase::Stopped, |o| {
        o.memory_estimate = 6 * GIB;
        o.launch = None;
    });
    assert_eq!(w.plan(2).actions, vec![start(&w, "b")]);
    // Nobody waits for a sleeping slot: it stays asleep.
    assert_eq!(sleeping(0).plan(2).actions, vec![]);
    // A request for it: its 6 GiB fit again, so it wakes.
    assert_eq!(
        sleeping(1).plan(2).actions,
        vec![Action::Wake { slot: n("a") }]
    );
    // They do not while b holds the memory: b takes its turn first.
    let w = sleeping(1).observe("b", Phase::Ready, |o| {
        o.memory_estimate = 6 * GIB;
        o.ready_since = Some(t(0));
    });
    assert_eq!(w.plan(5).actions, vec![]);
    assert_eq!(w.plan(10).actions, vec![drain("b", "a")]);
}

#[test]
fn a_sleeping_slot_is_evicted_like_an_idle_one() {
    let w = mem_world()
        .slot("a", spec())
        .slot("b", spec())
        .observe("a", Phase::Sleeping, |o| {
            o.memory_estimate = 6 * GIB;
            o.memory_rss = Some(3 * GIB);
        })
        .observe("b", Phase::Stopped, |o| {
            o.memory_estimate = 6 * GIB;
            o.launch = None;
        });
    assert_eq!(
        w.plan(2).actions,
        vec![stop("a", StopReason::Evicted { for_slot: n("b") })]
    );
}
