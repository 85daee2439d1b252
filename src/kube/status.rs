//! The status a Slot should show, computed purely from what the controller observed: the spec's
//! validity, the Deployment's status, the previous conditions (to keep their transition times)
//! and the current time.

use k8s_openapi::api::apps::v1::DeploymentStatus;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::kube::crd::{Slot, SlotStatus, conditions, reasons};
use crate::model::Phase;

/// What reconciling a Slot found.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation<'a> {
    /// The spec breaks a rule (message names the fields); nothing was applied.
    Invalid(String),
    /// An external upstream: nothing runs in the cluster.
    Upstream,
    /// Writing the Deployment or the Service failed.
    ApplyFailed(String),
    /// Deployment and Service were applied; the Deployment's generation and status.
    Applied {
        generation: Option<i64>,
        status: Option<&'a DeploymentStatus>,
    },
}

/// One condition, keeping the previous transition time when its status did not change.
fn condition(
    previous: &[Condition],
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let status = if status { "True" } else { "False" };
    let since = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map_or(Time(now), |c| c.last_transition_time.clone());
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message,
        observed_generation: generation,
        last_transition_time: since,
    }
}

/// Why a Deployment cannot make progress, from its conditions.
fn deployment_trouble(st: &DeploymentStatus) -> Option<(&'static str, String)> {
    for c in st.conditions.iter().flatten() {
        let msg = || c.message.clone().unwrap_or_default();
        if c.type_ == "Progressing"
            && c.status == "False"
            && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
        {
            return Some((reasons::PROGRESS_DEADLINE_EXCEEDED, msg()));
        }
        if c.type_ == "ReplicaFailure" && c.status == "True" {
            return Some((reasons::REPLICA_FAILURE, msg()));
        }
    }
    None
}

/// The status to write. `lastActivity` is left out: the gateway owns it.
pub fn slot_status(
    slot: &Slot,
    observation: &Observation<'_>,
    endpoint: Option<String>,
    now: Timestamp,
) -> SlotStatus {
    let generation = slot.metadata.generation;
    let previous: &[Condition] = slot.status.as_ref().map_or(&[], |s| &s.conditions[..]);
    let cond =
        |t: &str, s: bool, r: &str, m: String| condition(previous, t, s, r, m, generation, now);
    let ok = || {
        cond(
            conditions::DEGRADED,
            false,
            reasons::AS_EXPECTED,
            String::new(),
        )
    };
    let (phase, replicas, conds) = match observation {
        Observation::Invalid(msg) => (
            Phase::Failed,
            None,
            vec![
                cond(conditions::READY, false, reasons::INVALID_SPEC, msg.clone()),
                cond(
                    conditions::LOADED,
                    false,
                    reasons::INVALID_SPEC,
                    String::new(),
                ),
                cond(
                    conditions::DEGRADED,
                    true,
                    reasons::INVALID_SPEC,
                    msg.clone(),
                ),
            ],
        ),
        Observation::ApplyFailed(msg) => (
            Phase::Failed,
            None,
            vec![
                cond(conditions::READY, false, reasons::APPLY_FAILED, msg.clone()),
                cond(
                    conditions::LOADED,
                    false,
                    reasons::APPLY_FAILED,
                    String::new(),
                ),
                cond(
                    conditions::DEGRADED,
                    true,
                    reasons::APPLY_FAILED,
                    msg.clone(),
                ),
            ],
        ),
        Observation::Upstream => (
            Phase::Ready,
            None,
            vec![
                cond(
                    conditions::READY,
                    true,
                    reasons::EXTERNAL_UPSTREAM,
                    String::new(),
                ),
                cond(
                    conditions::LOADED,
                    true,
                    reasons::EXTERNAL_UPSTREAM,
                    String::new(),
                ),
                ok(),
            ],
        ),
        Observation::Applied {
            generation: dep_generation,
            status: st,
        } => {
            let desired = slot.spec.desired_replicas();
            let running = st.and_then(|s| s.replicas).unwrap_or(0);
            // Ready pods count only once the Deployment controller has seen the latest spec
            // (observedGeneration) and they run it (updatedReplicas): right after a spec edit,
            // the old pods' readiness says nothing about the new ones.
            let observed = st.and_then(|s| s.observed_generation);
            let current = match (observed, dep_generation) {
                (Some(o), Some(g)) => o >= *g,
                (_, None) => true,
                (None, Some(_)) => false,
            };
            let updated = st.and_then(|s| s.updated_replicas).unwrap_or(0);
            let ready = if current {
                st.and_then(|s| s.ready_replicas).unwrap_or(0).min(updated)
            } else {
                0
            };
            let trouble = st.and_then(deployment_trouble);
            let (phase, loaded) = match (desired, ready, running, &trouble) {
                (0, _, r, _) if r > 0 => (Phase::Unloading, (false, reasons::UNLOADING)),
                (0, _, _, _) => (Phase::Stopped, (false, reasons::SCALED_TO_ZERO)),
                (_, r, _, _) if r > 0 => (Phase::Ready, (true, reasons::POD_READY)),
                (_, _, _, Some((reasons::PROGRESS_DEADLINE_EXCEEDED, _))) => (
                    Phase::CrashLoop,
                    (false, reasons::PROGRESS_DEADLINE_EXCEEDED),
                ),
                (_, _, _, Some(_)) => (Phase::Failed, (false, reasons::REPLICA_FAILURE)),
                _ => (Phase::Loading, (false, reasons::LOADING)),
            };
            let degraded = match &trouble {
                Some((reason, msg)) if desired > 0 => {
                    cond(conditions::DEGRADED, true, reason, msg.clone())
                }
                _ => ok(),
            };
            (
                phase,
                Some(running),
                vec![
                    cond(conditions::READY, true, reasons::RECONCILED, String::new()),
                    cond(conditions::LOADED, loaded.0, loaded.1, String::new()),
                    degraded,
                ],
            )
        }
    };
    SlotStatus {
        phase: Some(phase),
        conditions: conds,
        observed_generation: generation,
        endpoint,
        last_activity: None,
        replicas,
    }
}

/// Whether writing `new` would change what the Slot shows (ignoring `lastActivity`, which the
/// gateway owns): the controller writes status only when it changes.
pub fn status_changed(current: Option<&SlotStatus>, new: &SlotStatus) -> bool {
    let Some(current) = current else {
        return true;
    };
    let mut current = current.clone();
    current.last_activity = None;
    current != *new
}

/// Marks `status` Degraded with reason `NameConflict` (unless it is already Degraded for
/// another reason): the Slot runs, but names it claims are claimed by other Slots too.
pub fn with_conflict(
    mut status: SlotStatus,
    slot: &Slot,
    message: String,
    now: Timestamp,
) -> SlotStatus {
    let previous: &[Condition] = slot.status.as_ref().map_or(&[], |s| &s.conditions[..]);
    let degraded = status
        .conditions
        .iter_mut()
        .find(|c| c.type_ == conditions::DEGRADED);
    let conflict = || {
        condition(
            previous,
            conditions::DEGRADED,
            true,
            reasons::NAME_CONFLICT,
            message,
            slot.metadata.generation,
            now,
        )
    };
    match degraded {
        Some(c) if c.status == "True" => {}
        Some(c) => *c = conflict(),
        None => status.conditions.push(conflict()),
    }
    status
}
