//! When a loaded Slot becomes idle and is scaled to zero. Pure: time is an argument.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::kube::crd::{Slot, conditions, reasons};

/// What the idle rule says about a Slot right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idleness {
    /// Not subject to idling: scaled to zero already, pinned, `idle_timeout = 0s`, or an
    /// external upstream.
    Exempt,
    /// Used recently, or still loading; it becomes idle after this long without activity.
    Busy(Duration),
    /// No activity for `idle_timeout`: scale it to zero.
    Idle,
}

/// The last sign of use: the gateway's `lastActivity`, the time the Slot last became loaded or
/// started loading (a wake), or its creation.
fn last_used(slot: &Slot) -> Option<Timestamp> {
    let status = slot.status.as_ref();
    let activity = status.and_then(|s| s.last_activity.as_ref()).map(|t| t.0);
    let loaded = status
        .and_then(|s| s.condition(conditions::LOADED))
        .map(|c| c.last_transition_time.0);
    let created = slot.metadata.creation_timestamp.as_ref().map(|t| t.0);
    [activity, loaded, created].into_iter().flatten().max()
}

/// Whether the Slot's pod is still coming up (Loaded is False for reason Loading).
fn loading(slot: &Slot) -> bool {
    slot.status
        .as_ref()
        .and_then(|s| s.condition(conditions::LOADED))
        .is_some_and(|c| c.status == "False" && c.reason == reasons::LOADING)
}

pub fn idleness(slot: &Slot, now: Timestamp) -> Idleness {
    let spec = &slot.spec.slot;
    let timeout = spec.effective_idle_timeout().as_duration();
    if slot.spec.desired_replicas() == 0
        || spec.pinned
        || timeout.is_zero()
        || !spec.provider.runs_process()
    {
        return Idleness::Exempt;
    }
    // The idle clock runs while a Slot is loaded, as on one box: a load slower than
    // `idle_timeout` is not scaled away under the request that woke it. Loaded's transition
    // to True then starts the clock.
    let Some(last) = last_used(slot).filter(|_| !loading(slot)) else {
        return Idleness::Busy(timeout);
    };
    let quiet = Duration::try_from(now.duration_since(last)).unwrap_or(Duration::ZERO);
    match timeout.checked_sub(quiet) {
        Some(left) if !left.is_zero() => Idleness::Busy(left),
        _ => Idleness::Idle,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::crd::{SlotResourceSpec, SlotStatus};
    use crate::model::{HumanDuration, ProviderKind, SlotSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::SignedDuration;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).expect("valid time")
    }

    fn loaded_slot(idle: &str, activity: Option<i64>) -> Slot {
        let mut spec = SlotSpec::new(ProviderKind::LlamaCpp, Some("hf:o/r/m.gguf"));
        spec.idle_timeout = Some(HumanDuration::parse(idle).expect("duration"));
        let mut s = Slot::new(
            "fast",
            SlotResourceSpec {
                slot: spec,
                replicas: Some(1),
            },
        );
        s.metadata.creation_timestamp = Some(Time(at(0)));
        s.status = Some(SlotStatus {
            last_activity: activity.map(|a| Time(at(a))),
            ..SlotStatus::default()
        });
        s
    }

    #[test]
    fn a_slot_used_recently_is_busy_until_its_timeout() {
        let s = loaded_slot("10m", Some(100));
        assert_eq!(
            idleness(&s, at(160)),
            Idleness::Busy(Duration::from_secs(540))
        );
    }

    #[test]
    fn a_slot_quiet_for_its_timeout_is_idle() {
        let s = loaded_slot("10m", Some(100));
        assert_eq!(idleness(&s, at(700)), Idleness::Idle);
        let never_used = loaded_slot("1m", None);
        assert_eq!(idleness(&never_used, at(61)), Idleness::Idle);
    }

    #[test]
    fn pinned_zero_timeout_and_scaled_down_slots_are_exempt() {
        let mut pinned = loaded_slot("1m", None);
        pinned.spec.slot.pinned = true;
        assert_eq!(idleness(&pinned, at(9999)), Idleness::Exempt);
        assert_eq!(
            idleness(&loaded_slot("0s", None), at(9999)),
            Idleness::Exempt
        );
        let mut down = loaded_slot("1m", None);
        down.spec.replicas = Some(0);
        assert_eq!(idleness(&down, at(9999)), Idleness::Exempt);
    }

    #[test]
    fn a_loading_slot_is_not_idle_and_its_clock_starts_when_loaded() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
        let loaded = |status: &str, reason: &str, since: i64| Condition {
            type_: conditions::LOADED.into(),
            status: status.into(),
            reason: reason.into(),
            message: String::new(),
            last_transition_time: Time(at(since)),
            observed_generation: None,
        };
        let mut s = loaded_slot("2s", None);
        if let Some(st) = s.status.as_mut() {
            st.conditions = vec![loaded("False", reasons::LOADING, 0)];
        }
        assert_eq!(idleness(&s, at(90)), Idleness::Busy(Duration::from_secs(2)));
        if let Some(st) = s.status.as_mut() {
            st.conditions = vec![loaded("True", reasons::POD_READY, 89)];
        }
        assert_eq!(idleness(&s, at(90)), Idleness::Busy(Duration::from_secs(1)));
        assert_eq!(idleness(&s, at(91)), Idleness::Idle);
        // A Slot that cannot come up (not Loading) still idles away.
        if let Some(st) = s.status.as_mut() {
            st.conditions = vec![loaded("False", reasons::PROGRESS_DEADLINE_EXCEEDED, 0)];
        }
        assert_eq!(idleness(&s, at(90)), Idleness::Idle);
    }

    #[test]
    fn a_future_activity_counts_as_now() {
        let s = loaded_slot("1m", Some(100));
        let earlier = at(100)
            .checked_sub(SignedDuration::from_secs(5))
            .expect("time");
        assert_eq!(
            idleness(&s, earlier),
            Idleness::Busy(Duration::from_secs(60))
        );
    }
}
