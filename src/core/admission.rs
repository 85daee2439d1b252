//! Memory admission: before a load, the estimate must fit `memory_budget`. Idle slots are
//! evicted by (priority, least recently used) to make room, pinned slots never. A slot with
//! requests waiting for it also takes its turn: a ready slot that has had its `min_residency`
//! (or any, once the waiting requests are urgent) is drained and swapped out.

use crate::model::{ByteSize, Phase, SlotName};

use super::Time;

/// One slot holding (or about to hold) memory, as admission sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub name: SlotName,
    pub phase: Phase,
    pub memory: u64,
    pub priority: u8,
    pub pinned: bool,
    pub in_flight: u32,
    pub last_activity: Option<Time>,
    /// Requests waiting for this slot; a ready slot serves them before it is swapped out.
    pub waiting: u32,
    /// Being drained for another slot's turn (new requests wait; published to the gateway).
    pub draining: bool,
    /// It has served for its `min_residency`.
    pub resident_enough: bool,
}

/// Whether the slot asking for memory has requests waiting for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Demand {
    /// No request waits (autoload, an explicit load): only idle slots make room, else refuse.
    None,
    /// Requests wait for it: it takes its turn. `urgent`: the oldest has waited `max_wait`,
    /// which overrides the residency of the slots in the way.
    Waiting { urgent: bool },
}

/// What happens to one slot in the way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Make {
    /// Idle with nothing in flight: stop it now.
    StopIdle,
    /// Drained and nothing in flight any more: swap it out now.
    SwapOut,
    /// Ready: stop sending it requests first (it is swapped out once those in flight end).
    Drain,
    /// Already draining, requests still in flight: wait for them.
    AwaitDrain,
}

/// The admission decision for one load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Load now.
    Fits,
    /// Make room first (stop, drain), then load.
    Evict(Vec<(SlotName, Make)>),
    /// Not now: memory is already being freed, or the slots in the way have not served their
    /// turn yet. Look again later.
    Wait,
    /// It cannot fit; the message says how much was needed and what holds memory.
    Refuse(String),
}

impl Admission {
    /// Admission with only idle evictions: `Evict` of `StopIdle`s.
    pub fn evict_idle(names: Vec<SlotName>) -> Self {
        Admission::Evict(names.into_iter().map(|n| (n, Make::StopIdle)).collect())
    }
}

/// Decides whether `need` bytes for `slot` fit next to `holders` (every other slot holding
/// memory, including loads already planned) within `budget`.
pub fn admit(
    slot: &SlotName,
    need: u64,
    budget: Option<u64>,
    holders: &[Holder],
    demand: Demand,
) -> Admission {
    let Some(budget) = budget else {
        return Admission::Fits;
    };
    let held: u64 = holders.iter().map(|h| h.memory).sum();
    if held.saturating_add(need) <= budget {
        return Admission::Fits;
    }
    if need > budget {
        return Admission::Refuse(format!(
            "cannot load slot {slot}: it needs {} but memory_budget is only {}",
            ByteSize(need),
            ByteSize(budget)
        ));
    }
    let freeing: u64 = holders
        .iter()
        .filter(|h| h.phase == Phase::Unloading)
        .map(|h| h.memory)
        .sum();
    let mut candidates: Vec<(&Holder, Make)> = holders
        .iter()
        .filter_map(|h| make_room(h, demand).map(|m| (h, m)))
        .collect();
    // Slots already draining first (the turn was promised to them), then by priority, idle
    // before sleeping (which frees little and wakes fast) before ready, least recently used.
    let rank = |p: Phase| match p {
        Phase::Idle => 0,
        Phase::Sleeping => 1,
        _ => 2,
    };
    candidates.sort_by(|(a, _), (b, _)| {
        (
            !a.draining,
            a.priority,
            rank(a.phase),
            a.last_activity,
            &a.name,
        )
            .cmp(&(
                !b.draining,
                b.priority,
                rank(b.phase),
                b.last_activity,
                &b.name,
            ))
    });
    let mut after = held.saturating_sub(freeing);
    let mut evict = Vec::new();
    for (c, make) in candidates {
        if after.saturating_add(need) <= budget {
            break;
        }
        after = after.saturating_sub(c.memory);
        evict.push((c.name.clone(), make));
    }
    if after.saturating_add(need) > budget {
        if let Demand::Waiting { .. } = demand {
            // Only pinned slots never leave; while they leave room, the turn will come.
            let pinned: u64 = holders
                .iter()
                .filter(|h| h.pinned && h.phase != Phase::Unloading)
                .map(|h| h.memory)
                .sum();
            if pinned.saturating_add(need) <= budget {
                return Admission::Wait;
            }
        }
        return Admission::Refuse(refusal(slot, need, budget, held, holders, demand));
    }
    if evict.is_empty() {
        Admission::Wait
    } else {
        Admission::Evict(evict)
    }
}

/// How `h` can make room for a slot with `demand`, if it can now. Idle, unpinned slots with
/// nothing in flight always can. For waiting requests, a ready, unpinned slot that has served
/// its own waiting requests and its `min_residency` (or any, when urgent) is drained, then
/// swapped out.
pub fn make_room(h: &Holder, demand: Demand) -> Option<Make> {
    if h.pinned || h.phase == Phase::Unloading {
        return None;
    }
    let quiet = h.in_flight == 0 && h.waiting == 0;
    if matches!(h.phase, Phase::Idle | Phase::Sleeping) && quiet && !h.draining {
        return Some(Make::StopIdle);
    }
    let Demand::Waiting { urgent } = demand else {
        return None;
    };
    if !h.phase.is_serving() {
        return None;
    }
    match (h.draining, h.in_flight) {
        (true, 0) => Some(Make::SwapOut),
        (true, _) => Some(Make::AwaitDrain),
        (false, _) if h.waiting == 0 && (h.resident_enough || urgent) => Some(Make::Drain),
        _ => None,
    }
}

fn refusal(
    slot: &SlotName,
    need: u64,
    budget: u64,
    held: u64,
    holders: &[Holder],
    demand: Demand,
) -> String {
    let mut list: Vec<&Holder> = holders.iter().filter(|h| h.memory > 0).collect();
    list.sort_by(|a, b| b.memory.cmp(&a.memory).then(a.name.cmp(&b.name)));
    let described: Vec<String> = list
        .iter()
        .map(|h| {
            let mut why = vec![h.phase.to_string()];
            if h.pinned {
                why.push("pinned".into());
            }
            if h.in_flight > 0 {
                why.push(format!("{} requests in flight", h.in_flight));
            }
            format!("{} {} ({})", h.name, ByteSize(h.memory), why.join(", "))
        })
        .collect();
    let why = match demand {
        Demand::None => "no idle, unpinned slot can be evicted to make room",
        Demand::Waiting { .. } => "pinned slots hold the rest, and they are never swapped out",
    };
    format!(
        "cannot load slot {slot}: it needs {} but only {} of the {} memory_budget is free and {why}; memory is held by: {}",
        ByteSize(need),
        ByteSize(budget.saturating_sub(held)),
        ByteSize(budget),
        if described.is_empty() {
            "nothing".to_string()
        } else {
            described.join(", ")
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const GIB: u64 = 1 << 30;

    fn n(s: &str) -> SlotName {
        SlotName::parse(s).unwrap()
    }

    fn holder(name: &str, phase: Phase, gib: u64, priority: u8, last: u64) -> Holder {
        Holder {
            name: n(name),
            phase,
            memory: gib * GIB,
            priority,
            pinned: false,
            in_flight: 0,
            last_activity: Some(Duration::from_secs(last)),
            waiting: 0,
            draining: false,
            resident_enough: true,
        }
    }

    struct Case {
        name: &'static str,
        need: u64,
        budget: Option<u64>,
        holders: Vec<Holder>,
        want: Admission,
    }

    #[test]
    fn admission_table() {
        let mut pinned = holder("p", Phase::Idle, 4, 0, 1);
        pinned.pinned = true;
        let mut busy = holder("busy", Phase::Idle, 4, 0, 1);
        busy.in_flight = 2;
        let cases = vec![
            Case {
                name: "no budget always fits",
                need: 100 * GIB,
                budget: None,
                holders: vec![],
                want: Admission::Fits,
            },
            Case {
                name: "fits next to others",
                need: 2 * GIB,
                budget: Some(8 * GIB),
                holders: vec![holder("a", Phase::Ready, 4, 50, 1)],
                want: Admission::Fits,
            },
            Case {
                name: "lowest priority idle slot is evicted first",
                need: 4 * GIB,
                budget: Some(8 * GIB),
                holders: vec![
                    holder("hi", Phase::Idle, 4, 90, 1),
                    holder("lo", Phase::Idle, 4, 10, 5),
                ],
                want: Admission::evict_idle(vec![n("lo")]),
            },
            Case {
                name: "same priority: least recently used goes first",
                need: 4 * GIB,
                budget: Some(8 * GIB),
                holders: vec![
                    holder("new", Phase::Idle, 4, 50, 9),
                    holder("old", Phase::Idle, 4, 50, 2),
                ],
                want: Admission::evict_idle(vec![n("old")]),
            },
            Case {
                name: "several evictions when one is not enough",
                need: 6 * GIB,
                budget: Some(8 * GIB),
                holders: vec![
                    holder("a", Phase::Idle, 3, 50, 1),
                    holder("b", Phase::Idle, 3, 50, 2),
                ],
                want: Admission::evict_idle(vec![n("a"), n("b")]),
            },
            Case {
                name: "ready slots are not evicted",
                need: 4 * GIB,
                budget: Some(8 * GIB),
                holders: vec![holder("a", Phase::Ready, 6, 0, 1)],
                want: Admission::Refuse(String::new()),
            },
            Case {
                name: "pinned slots are never evicted",
                need: 6 * GIB,
                budget: Some(8 * GIB),
                holders: vec![pinned.clone()],
                want: Admission::Refuse(String::new()),
            },
            Case {
                name: "slots with requests in flight are never evicted",
                need: 6 * GIB,
                budget: Some(8 * GIB),
                holders: vec![busy],
                want: Admission::Refuse(String::new()),
            },
            Case {
                name: "memory already being freed means wait",
                need: 4 * GIB,
                budget: Some(8 * GIB),
                holders: vec![holder("a", Phase::Unloading, 6, 50, 1)],
                want: Admission::Wait,
            },
            Case {
                name: "larger than the whole budget",
                need: 9 * GIB,
                budget: Some(8 * GIB),
                holders: vec![],
                want: Admission::Refuse(String::new()),
            },
        ];
        for c in cases {
            let got = admit(&n("new-slot"), c.need, c.budget, &c.holders, Demand::None);
            match (&c.want, &got) {
                (Admission::Refuse(_), Admission::Refuse(msg)) => {
                    assert!(
                        msg.contains("cannot load slot new-slot"),
                        "{}: {msg}",
                        c.name
                    )
                }
                _ => assert_eq!(got, c.want, "{}", c.name),
            }
        }
    }

    #[test]
    fn refusal_says_what_was_needed_and_what_holds_memory() {
        let mut p = holder("big", Phase::Ready, 6, 50, 1);
        p.pinned = true;
        let Admission::Refuse(msg) = admit(&n("x"), 4 * GIB, Some(8 * GIB), &[p], Demand::None)
        else {
            panic!("expected a refusal");
        };
        assert!(msg.contains("needs 4GiB"), "{msg}");
        assert!(msg.contains("only 2GiB of the 8GiB"), "{msg}");
        assert!(msg.contains("big 6GiB (ready, pinned)"), "{msg}");
    }
}
