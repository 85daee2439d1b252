//! `plan(desired, observed, ports, now)`: the level-based reconciler. It compares what should
//! be with what is and lists the actions that close the gap, plus when to look again.

use std::collections::BTreeMap;

use crate::model::{DesiredState, Device, LaunchSpec, Phase, ProviderKind, SlotName, SlotSpec};

use super::admission::{Admission, Holder, admit};
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
            | Action::Forget { slot } => slot,
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
            Phase::Pulling | Phase::Loading | Phase::Ready | Phase::Idle if obs.in_flight == 0 => {
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
            Phase::Pulling | Phase::Loading | Phase::Ready | Phase::Idle => {
                if obs.in_flight > 0 {
                    if obs.phase == Phase::Idle {
                        marks.push(Action::MarkReady { slot: name.clone() });
                    }
                    // Never restart or unload under a request; look again when it ends.
                    continue;
                }
                if changed {
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
                if obs.want_loaded {
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

    let starts = admit_all(desired, observed, &mut stops, wanted);
    out.actions.extend(stops);
    out.actions.extend(marks);
    out.actions.extend(starts);
    out
}

/// Runs memory admission and the one-NPU-slot rule over the wanted loads, highest priority
/// first. Evictions are appended to `stops`; returns the starts and refusals.
fn admit_all(
    desired: &DesiredState,
    observed: &BTreeMap<SlotName, ObservedSlot>,
    stops: &mut Vec<Action>,
    mut wanted: Vec<(&SlotName, &SlotSpec, LaunchSpec)>,
) -> Vec<Action> {
    wanted.sort_by(|a, b| {
        b.1.effective_priority()
            .cmp(&a.1.effective_priority())
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
    for (name, _spec, launch) in wanted {
        let obs = observed.get(name);
        let need = obs.map_or(0, |o| o.memory_estimate);
        let npu = npu_admission(name, &launch, &holders);
        let decision = match npu {
            Admission::Fits => {
                let others: Vec<Holder> = holders.iter().map(|(h, _, _)| h.clone()).collect();
                admit(name, need, budget, &others)
            }
            other => other,
        };
        match decision {
            Admission::Fits => {
                holders.push((
                    Holder {
                        name: name.clone(),
                        phase: Phase::Loading,
                        memory: need,
                        priority: 100,
                        pinned: true,
                        in_flight: 0,
                        last_activity: None,
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
                for v in victims {
                    if let Some((h, _, _)) = holders.iter_mut().find(|(h, _, _)| h.name == v) {
                        h.phase = Phase::Unloading;
                    }
                    stops.push(Action::Stop {
                        slot: v,
                        reason: StopReason::Evicted {
                            for_slot: name.clone(),
                        },
                    });
                }
            }
            Admission::Wait => {}
            Admission::Refuse(message) => starts.push(Action::Refuse {
                slot: name.clone(),
                message,
            }),
        }
    }
    starts
}

/// FastFlowLM drives the whole NPU: one loaded NPU slot at a time. Another NPU slot with
/// nothing in flight and not pinned is swapped out; otherwise the load is refused.
fn npu_admission(
    name: &SlotName,
    launch: &LaunchSpec,
    holders: &[(Holder, Device, ProviderKind)],
) -> Admission {
    if launch.device != Device::Npu {
        return Admission::Fits;
    }
    let others: Vec<&Holder> = holders
        .iter()
        .filter(|(h, d, _)| *d == Device::Npu && h.name != *name)
        .map(|(h, _, _)| h)
        .collect();
    if others.is_empty() {
        return Admission::Fits;
    }
    if others.iter().all(|h| h.phase == Phase::Unloading) {
        return Admission::Wait;
    }
    let blocking: Vec<&&Holder> = others
        .iter()
        .filter(|h| {
            h.phase != Phase::Unloading
                && (h.pinned || h.in_flight > 0 || h.phase == Phase::Loading)
        })
        .collect();
    if let Some(b) = blocking.first() {
        let why = if b.pinned {
            "pinned"
        } else if b.in_flight > 0 {
            "serving requests"
        } else {
            "loading"
        };
        return Admission::Refuse(format!(
            "cannot load slot {name}: the NPU runs one slot at a time and slot {} holds it ({why})",
            b.name
        ));
    }
    Admission::Evict(
        others
            .iter()
            .filter(|h| h.phase != Phase::Unloading)
            .map(|h| h.name.clone())
            .collect(),
    )
}
