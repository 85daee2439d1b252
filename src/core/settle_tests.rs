//! The plan settles: the controller plans again at once after a round that acted, until the
//! plan is empty. Here the actions of each plan are applied (`on_action`, as the controller
//! does) and the plan asked again at the same time, with nothing else happening: it must reach
//! a plan with no actions within a few rounds (the controller gives up, as a planner bug, after
//! 32).

use crate::model::{HumanDuration, Phase};

use super::plan_tests::{World, n, spec, t, two};
use super::{Action, on_action};

/// Rounds until the plan is empty, and every action taken on the way.
fn settle(mut w: World, now: u64) -> (usize, Vec<Action>) {
    let mut taken = Vec::new();
    for round in 0..8 {
        let p = w.plan(now);
        if p.actions.is_empty() {
            return (round, taken);
        }
        for a in p.actions {
            if let Action::Forget { slot } = &a {
                w.observed.remove(slot);
            } else if let Some(o) = w.observed.get_mut(a.slot()) {
                on_action(o, &a, t(now));
            }
            taken.push(a);
        }
    }
    panic!("the plan did not settle in 8 rounds; actions so far: {taken:?}");
}

#[test]
fn a_drain_with_nothing_in_flight_settles_into_the_swap_in_the_next_round() {
    let (rounds, taken) = settle(two(spec()), 12);
    assert_eq!(rounds, 2, "{taken:?}");
    assert!(matches!(taken[0], Action::Drain { .. }), "{taken:?}");
    assert!(
        matches!(&taken[1], Action::Stop { slot, .. } if *slot == n("a")),
        "{taken:?}"
    );
}

#[test]
fn an_idle_slot_with_unload_idle_is_marked_and_stopped_and_nothing_follows() {
    let mut w = World::new()
        .slot("a", {
            let mut s = spec();
            s.idle_timeout = Some(HumanDuration::from_secs(60));
            s
        })
        .observe("a", Phase::Ready, |_| {});
    w.desired.server.unload_idle = true;
    let (rounds, taken) = settle(w, 61);
    assert_eq!(rounds, 1, "{taken:?}");
}

#[test]
fn every_kind_of_world_settles_within_three_rounds() {
    let mut removed = World::new()
        .slot("gone", spec())
        .observe("gone", Phase::Stopped, |_| {});
    removed.desired.slots.clear();
    let worlds: Vec<(&str, World, u64)> = vec![
        ("a turn before min_residency", two(spec()), 5),
        ("a turn past max_wait", two(spec()), 61),
        (
            "a pinned slot in the way",
            two({
                let mut s = spec();
                s.pinned = true;
                s
            }),
            12,
        ),
        (
            "a slot loading for nobody",
            World::new()
                .slot("a", spec())
                .observe("a", Phase::Loading, |o| o.on_demand = true),
            3,
        ),
        (
            "a failed slot due for a retry",
            World::new()
                .slot("a", spec())
                .observe("a", Phase::Failed, |o| o.retry_at = Some(t(2))),
            3,
        ),
        ("a removed slot", removed, 3),
        (
            "an autoload slot never started",
            World::new()
                .slot("a", spec())
                .observe("a", Phase::Stopped, |_| {}),
            0,
        ),
    ];
    for (name, w, now) in worlds {
        let (rounds, taken) = settle(w, now);
        assert!(rounds <= 3, "{name}: {rounds} rounds: {taken:?}");
    }
}
