//! `plan(desired, observed, ports, now)`: the level-based reconciler. It compares what should
//! be with what is and lists the actions that close the gap, plus when to look again.

use std::collections::BTreeMap;

use crate::model::{DesiredState, Device, LaunchSpec, Phase, ProviderKind, SlotName, SlotSpec};

use super::admission::{Admission, Demand, Holder, Make, admit, make_room};
use super::{ObservedSlot, Time};

/// Why a slot is being stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// It is no longer declared.
    Removed,
    /// It became idle and `server.unload_idle` is on.
    Idle,
    /// Its memory (or the NPU) is needed by another slot.
    Evicted { for_slot: SlotName },
    /// Someone asked for an unload.
    Unloaded,
    /// Its turn is over: requests for another slot that cannot be loaded next to it waited.
    Swapped { for_slot: SlotName },
    /// It was loading only for requests, and they all went away.
    Abandoned,
}

/// One step for the runtime (or the controller's bookkeeping).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start the slot's process.
    Start { slot: SlotName, launch: LaunchSpec },
    /// Replace the running process: a launch-relevant setting changed.
    Restart { slot: SlotName, launch: LaunchSpec },
    /// Stop the slot's process.
    Stop { slot: SlotName, reason: StopReason },
    /// No requests for `idle_timeout`: the slot is an unload candidate.
    MarkIdle { slot: SlotName },
    /// An idle slot got a request.
    MarkReady { slot: SlotName },
    /// The slot is wanted but cannot be loaded (memory, NPU); the message says why.
    Refuse { slot: SlotName, message: String },
    /// The slot is gone and stopped: drop what is known about it.
    Forget { slot: SlotName },
    /// Stop sending the slot new requests (they wait for its next turn) so that it can be
    /// swapped out for `for_slot` once the requests in flight end.
    Drain { slot: SlotName, for_slot: SlotName },
    /// The drain is no longer needed: serve new requests again.
    Undrain { slot: SlotName },
    /// Nobody waits for this stopped slot any more: it is no longer wanted.
    Abandon { slot: SlotName },
    /// Requests wait for this sleeping slot and its memory fits again: let them through (the
    /// provider wakes on the first).
    Wake { slot: SlotName },
    /// A launch-relevant change waits for requests in flight (`hold`: new requests wait for
    /// the restarted process instead of going to the old one), or no longer does.
    HoldRequests { slot: SlotName, hold: bool },
}

impl Action {
    pub fn slot(&self) -> &SlotName {
        match self {
            Action::Start { slot, .. }
            | Action::Restart { slot, .. }
            | Action::Stop { slot, .. }
            | Action::MarkIdle { slot }
            | Action::MarkReady { slot }
            | Action::Refuse { slot, .. }
            | Action::Forget { slot }
            | Action::Drain { slot, .. }
            | Action::Undrain { slot }
            | Action::Abandon { slot }
            | Action::Wake { slot } => slot,
            Action::HoldRequests { slot, .. } => slot,
        }
    }
}

/// The actions to take now, stops before starts, and when the plan may change by itself
/// (an idle timeout or a retry coming due).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub wake_at: Option<Time>,
}

impl Plan {
    fn wake(&mut self, at: Time) {
        self.wake_at = Some(self.wake_at.map_or(at, |w| w.min(at)));
    }
}

/// Computes the plan. `ports` holds the assigned port of every slot that runs a process.
pub fn plan(
    desired: &DesiredState,
    observed: &BTreeMap<SlotName, ObservedSlot>,
    ports: &BTreeMap<SlotName, u16>,
    now: Time,
) -> Plan {
    let mut out = Plan::default();
    let mut stops = Vec::new();
    let mut marks = Vec::new();
    let mut wanted: Vec<(&SlotName, &SlotSpec, LaunchSpec)> = Vec::new();

    for (name, obs) in observed {
        let declared = desired
            .slots
            .get(name)
            .filter(|s| s.provider.runs_process());
        if declared.is_some() {
            continue;
        }
        match obs.phase {
            Phase::Pulling | Phase::Loading | Phase::Ready | Phase::Idle | Phase::Sleeping
                if obs.in_flight == 0 =>
            {
                stops.push(Action::Stop {
                    slot: name.clone(),
                    reason: StopReason::Removed,
                })
            }
            Phase::Stopped | Phase::Failed | Phase::CrashLoop => {
                marks.push(Action::Forget { slot: name.clone() })
            }
            _ => {}
        }
    }

    let default_obs = ObservedSlot::default();
    for (name, spec) in desired
        .slots
        .iter()
        .filter(|(_, s)| s.provider.runs_process())
    {
        let Some(&port) = ports.get(name) else {
            continue;
        };
        let launch = LaunchSpec::new(desired, name, spec, port);
        let obs = observed.get(name).unwrap_or(&default_obs);
        let changed = obs.launch.as_ref() != Some(&launch);
        match obs.phase {
            Phase::Pulling | Phase::Loading | Phase::Ready | Phase::Idle | Phase::Sleeping => {
                if obs.held_since.is_some() != (changed && obs.in_flight > 0) {
                    marks.push(Action::HoldRequests {
                        slot: name.clone(),
                        hold: obs.held_since.is_none(),
                    });
                }
                // A launch change under load: requests in flight get `restart_drain` to
                // finish; then the restart goes ahead anyway.
                let drain_over = obs.held_since.is_some_and(|since| {
                    let limit = since + desired.server.restart_drain.as_duration();
                    if now < limit {
                        out.wake(limit);
                    }
                    now >= limit
                });
                if changed && obs.in_flight > 0 && obs.held_since.is_none() {
                    out.wake(now + desired.server.restart_drain.as_duration());
                }
                if obs.in_flight > 0 && !(changed && drain_over) {
                    if matches!(obs.phase, Phase::Idle | Phase::Sleeping) {
                        marks.push(Action::MarkReady { slot: name.clone() });
                    }
                    // The end of a request does not wake the controller (see
                    // `watches_activity`): the slot can be idle no sooner than this.
                    let timeout = spec.effective_idle_timeout().as_duration();
                    // A draining slot is watched: the end of its last request wakes it.
                    if obs.phase == Phase::Ready && obs.draining.is_none() && !timeout.is_zero() {
                        out.wake(now + timeout);
                    }
                    // Never restart or unload under a request; look again when it ends.
                    continue;
                }
                if matches!(obs.phase, Phase::Pulling | Phase::Loading) && abandoned(spec, obs) {
                    stops.push(Action::Stop {
                        slot: name.clone(),
                        reason: StopReason::Abandoned,
                    });
                } else if changed {
                    stops.push(Action::Restart {
                        slot: name.clone(),
                        launch,
                    });
                } else if !obs.want_loaded {
                    stops.push(Action::Stop {
                        slot: name.clone(),
                        reason: StopReason::Unloaded,
                    });
                } else if obs.phase == Phase::Ready {
                    let timeout = spec.effective_idle_timeout().as_duration();
                    if !timeout.is_zero() {
                        let idle_at = obs.last_activity.unwrap_or(now) + timeout;
                        if now >= idle_at {
                            marks.push(Action::MarkIdle { slot: name.clone() });
                            if desired.server.unload_idle {
                                stops.push(Action::Stop {
                                    slot: name.clone(),
                                    reason: StopReason::Idle,
                                });
                            }
                        } else {
                            out.wake(idle_at);
                        }
                    }
                } else if obs.phase == Phase::Sleeping {
                    // Waiting requests wake it, through admission: its weights come back.
                    if obs.waiting > 0 {
                        wanted.push((name, spec, launch));
                    }
                } else if obs.phase == Phase::Idle {
                    let active_since_idle = match (obs.last_activity, obs.idle_since) {
                        (Some(a), Some(i)) => a > i,
                        _ => false,
                    };
                    if active_since_idle {
                        marks.push(Action::MarkReady { slot: name.clone() });
                    } else if desired.server.unload_idle {
                        stops.push(Action::Stop {
                            slot: name.clone(),
                            reason: StopReason::Idle,
                        });
                    }
                }
            }
            Phase::Unloading => {}
            Phase::Stopped => {
                if obs.want_loaded && abandoned(spec, obs) {
                    marks.push(Action::Abandon { slot: name.clone() });
                } else if obs.want_loaded {
                    wanted.push((name, spec, launch));
                }
            }
            Phase::Failed => {
                let due = obs.retry_at.is_none_or(|t| now >= t);
                if obs.want_loaded && (changed || due) {
                    wanted.push((name, spec, launch));
                } else if obs.want_loaded
                    && let Some(t) = obs.retry_at
                {
                    out.wake(t);
                }
            }
            Phase::CrashLoop => {
                if obs.want_loaded && changed {
                    wanted.push((name, spec, launch));
                }
            }
        }
    }

    let starts = admit_all(
        desired, observed, now, &mut stops, &mut marks, &mut out, wanted,
    );
    out.actions.extend(stops);
    out.actions.extend(marks);
    out.actions.extend(starts);
    out
}

/// A load that only requests asked for, and none waits any more.
fn abandoned(spec: &SlotSpec, obs: &ObservedSlot) -> bool {
    obs.on_demand && obs.waiting == 0 && obs.in_flight == 0 && !spec.autoload && !spec.pinned
}

/// Whether the slot has served its `min_residency` at `now`.
fn resident_enough(spec: Option<&SlotSpec>, obs: &ObservedSlot, now: Time) -> bool {
    let min = spec.map_or(Time::ZERO, |s| s.effective_min_residency().as_duration());
    obs.ready_since.is_none_or(|r| now >= r + min)
}

/// Runs memory admission and the one-NPU-slot rule over the wanted loads: urgent ones first
/// (requests waited `max_wait`), then by priority, then the longest waiting. Evictions are
/// appended to `stops`, drains to `marks`; returns the starts and refusals.
fn admit_all(
    desired: &DesiredState,
    observed: &BTreeMap<SlotName, ObservedSlot>,
    now: Time,
    stops: &mut Vec<Action>,
    marks: &mut Vec<Action>,
    out: &mut Plan,
    mut wanted: Vec<(&SlotName, &SlotSpec, LaunchSpec)>,
) -> Vec<Action> {
    let max_wait = desired.server.max_wait.as_duration();
    let demand_of = |name: &SlotName| -> Demand {
        match observed.get(name) {
            Some(o) if o.waiting > 0 => Demand::Waiting {
                urgent: o.waiting_since.is_some_and(|w| now >= w + max_wait),
            },
            _ => Demand::None,
        }
    };
    let urgent = |name: &SlotName| demand_of(name) == Demand::Waiting { urgent: true };
    let since = |name: &SlotName| observed.get(name).and_then(|o| o.waiting_since);
    wanted.sort_by(|a, b| {
        urgent(b.0)
            .cmp(&urgent(a.0))
            .then(b.1.effective_priority().cmp(&a.1.effective_priority()))
            .then(since(a.0).is_none().cmp(&since(b.0).is_none()))
            .then(since(a.0).cmp(&since(b.0)))
            .then(a.0.cmp(b.0))
    });
    let budget = desired.server.memory_budget.map(|b| b.0);
    let mut holders: Vec<(Holder, Device, ProviderKind)> = observed
        .iter()
        .filter(|(_, o)| o.phase.is_running())
        .map(|(name, o)| {
            let spec = desired.slots.get(name);
            let stopping = stops
                .iter()
                .any(|a| a.slot() == name && matches!(a, Action::Stop { .. }));
            let holder = Holder {
                name: name.clone(),
                phase: if stopping { Phase::Unloading } else { o.phase },
                memory: o.memory_held(),
                priority: spec.map_or(0, SlotSpec::effective_priority),
                pinned: spec.is_some_and(|s| s.pinned),
                in_flight: o.in_flight,
                last_activity: o.last_activity,
                waiting: o.waiting,
                draining: o.draining.is_some(),
                resident_enough: resident_enough(spec, o, now),
            };
            let device = o.launch.as_ref().map_or(Device::Cpu, |l| l.device);
            let provider = o
                .launch
                .as_ref()
                .map_or(ProviderKind::LlamaCpp, |l| l.provider);
            (holder, device, provider)
        })
        .collect();

    let mut starts = Vec::new();
    // Slots that stay drained for a turn this plan; other drained slots serve again.
    let mut keep_draining: Vec<SlotName> = Vec::new();
    for (name, spec, launch) in wanted {
        let obs = observed.get(name);
        let need = obs.map_or(0, |o| o.memory_estimate);
        let demand = demand_of(name);
        let npu = npu_admission(name, &launch, &holders, demand);
        let decision = match npu {
            Admission::Fits => {
                // A sleeping slot is among the holders at its sleeping footprint.
                let others: Vec<Holder> = holders
                    .iter()
                    .filter(|(h, _, _)| h.name != *name)
                    .map(|(h, _, _)| h.clone())
                    .collect();
                admit(name, need, budget, &others, demand)
            }
            other => other,
        };
        let sleeping = obs.is_some_and(|o| o.phase == Phase::Sleeping);
        match decision {
            Admission::Fits if sleeping => {
                if let Some((h, _, _)) = holders.iter_mut().find(|(h, _, _)| h.name == *name) {
                    h.phase = Phase::Ready;
                    h.memory = need;
                    h.resident_enough = false;
                }
                starts.push(Action::Wake { slot: name.clone() });
            }
            Admission::Fits => {
                holders.push((
                    Holder {
                        name: name.clone(),
                        phase: Phase::Loading,
                        memory: need,
                        priority: spec.effective_priority(),
                        pinned: spec.pinned,
                        in_flight: 0,
                        last_activity: None,
                        waiting: 0,
                        draining: false,
                        resident_enough: false,
                    },
                    launch.device,
                    launch.provider,
                ));
                starts.push(Action::Start {
                    slot: name.clone(),
                    launch,
                });
            }
            Admission::Evict(victims) => {
                for (v, make) in victims {
                    if let Some((h, _, _)) = holders.iter_mut().find(|(h, _, _)| h.name == v) {
                        h.phase = Phase::Unloading;
                    }
                    match make {
                        Make::StopIdle => stops.push(Action::Stop {
                            slot: v,
                            reason: StopReason::Evicted {
                                for_slot: name.clone(),
                            },
                        }),
                        Make::SwapOut => stops.push(Action::Stop {
                            slot: v,
                            reason: StopReason::Swapped {
                                for_slot: name.clone(),
                            },
                        }),
                        Make::Drain => {
                            keep_draining.push(v.clone());
                            marks.push(Action::Drain {
                                slot: v,
                                for_slot: name.clone(),
                            });
                        }
                        Make::AwaitDrain => keep_draining.push(v),
                    }
                }
            }
            Admission::Wait => {
                if let Demand::Waiting { urgent: false } = demand
                    && let Some(w) = obs.and_then(|o| o.waiting_since)
                {
                    out.wake(w + max_wait);
                }
                if let Demand::Waiting { .. } = demand {
                    // The turn may come when a resident slot has served its min_residency.
                    for (n, o) in observed {
                        let spec = desired.slots.get(n);
                        if o.phase.is_serving()
                            && !resident_enough(spec, o, now)
                            && let (Some(r), Some(s)) = (o.ready_since, spec)
                        {
                            out.wake(r + s.effective_min_residency().as_duration());
                        }
                    }
                }
            }
            Admission::Refuse(message) => starts.push(Action::Refuse {
                slot: name.clone(),
                message,
            }),
        }
    }
    for (n, o) in observed {
        let stopping = stops.iter().any(|a| a.slot() == n);
        if o.draining.is_some() && !stopping && !keep_draining.contains(n) {
            marks.push(Action::Undrain { slot: n.clone() });
        }
    }
    starts
}

/// FastFlowLM drives the whole NPU: one loaded NPU slot at a time. Another NPU slot that can
/// make room (see `make_room`) is swapped out; a pinned one refuses the load; otherwise
/// requests waiting for the slot wait for its turn, and a load nobody waits for is refused.
fn npu_admission(
    name: &SlotName,
    launch: &LaunchSpec,
    holders: &[(Holder, Device, ProviderKind)],
    demand: Demand,
) -> Admission {
    if launch.device != Device::Npu {
        return Admission::Fits;
    }
    let others: Vec<&Holder> = holders
        .iter()
        .filter(|(h, d, _)| *d == Device::Npu && h.name != *name && h.phase != Phase::Unloading)
        .map(|(h, _, _)| h)
        .collect();
    if others.is_empty() {
        let unloading = holders
            .iter()
            .any(|(h, d, _)| *d == Device::Npu && h.name != *name);
        return if unloading {
            Admission::Wait
        } else {
            Admission::Fits
        };
    }
    let mut victims = Vec::new();
    for h in &others {
        // Without waiting requests, a ready NPU slot with nothing in flight is swapped out too:
        // the NPU has no memory budget to share.
        let make = match demand {
            Demand::None if !h.pinned && h.in_flight == 0 && h.phase.is_serving() => {
                Some(Make::StopIdle)
            }
            _ => make_room(h, demand),
        };
        match make {
            Some(m) => victims.push((h.name.clone(), m)),
            None if h.pinned || demand == Demand::None => {
                let why = if h.pinned {
                    "pinned"
                } else if h.in_flight > 0 {
                    "serving requests"
                } else {
                    "loading"
                };
                return Admission::Refuse(format!(
                    "cannot load slot {name}: the NPU runs one slot at a time and slot {} holds it ({why})",
                    h.name
                ));
            }
            None => return Admission::Wait,
        }
    }
    Admission::Evict(victims)
}
