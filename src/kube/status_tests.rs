//! Observations → Slot status, pure.

use k8s_openapi::api::apps::v1::{DeploymentCondition, DeploymentStatus};
use k8s_openapi::jiff::Timestamp;

use super::status::{Observation, slot_status, status_changed};
use crate::kube::crd::{Slot, SlotResourceSpec, conditions, reasons};
use crate::model::{Phase, ProviderKind, SlotSpec};

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + secs).expect("valid time")
}

fn slot(replicas: i32) -> Slot {
    let spec = SlotSpec::new(ProviderKind::LlamaCpp, Some("hf:o/r/m.gguf"));
    let mut s = Slot::new(
        "fast",
        SlotResourceSpec {
            slot: spec,
            replicas: Some(replicas),
        },
    );
    s.metadata.generation = Some(3);
    s
}

fn deployment(replicas: i32, ready: i32) -> DeploymentStatus {
    DeploymentStatus {
        replicas: Some(replicas),
        ready_replicas: Some(ready),
        updated_replicas: Some(replicas),
        observed_generation: Some(2),
        ..DeploymentStatus::default()
    }
}

/// A Deployment at generation 2 with this status.
fn applied(st: &DeploymentStatus) -> Observation<'_> {
    Observation::Applied {
        generation: Some(2),
        status: Some(st),
    }
}

#[test]
fn ready_pods_count_only_once_the_rollout_is_observed_and_updated() {
    let mut stale = deployment(1, 1);
    stale.observed_generation = Some(1);
    let s = slot_status(&slot(1), &applied(&stale), None, at(0));
    assert_eq!(s.phase, Some(Phase::Loading), "old generation's readiness");
    let mut old_pods = deployment(1, 1);
    old_pods.updated_replicas = Some(0);
    let s = slot_status(&slot(1), &applied(&old_pods), None, at(0));
    assert_eq!(s.phase, Some(Phase::Loading), "ready pods of the old spec");
    let s = slot_status(&slot(1), &applied(&deployment(1, 1)), None, at(0));
    assert_eq!(s.phase, Some(Phase::Ready));
}

fn reason(s: &crate::kube::crd::SlotStatus, type_: &str) -> (String, String) {
    let c = s.condition(type_).expect("condition");
    (c.status.clone(), c.reason.clone())
}

#[test]
fn phases_follow_desired_and_ready_replicas() {
    let cases = [
        (0, deployment(0, 0), Phase::Stopped, reasons::SCALED_TO_ZERO),
        (0, deployment(1, 1), Phase::Unloading, reasons::UNLOADING),
        (1, deployment(1, 0), Phase::Loading, reasons::LOADING),
        (1, deployment(1, 1), Phase::Ready, reasons::POD_READY),
    ];
    for (desired, st, phase, loaded) in cases {
        let s = slot_status(&slot(desired), &applied(&st), None, at(0));
        assert_eq!(s.phase, Some(phase), "{desired} {st:?}");
        assert_eq!(reason(&s, conditions::LOADED).1, loaded);
        assert_eq!(
            reason(&s, conditions::READY),
            ("True".into(), reasons::RECONCILED.into())
        );
        assert_eq!(s.observed_generation, Some(3));
    }
}

#[test]
fn a_stuck_rollout_is_degraded_and_parked() {
    let mut st = deployment(1, 0);
    st.conditions = Some(vec![DeploymentCondition {
        type_: "Progressing".into(),
        status: "False".into(),
        reason: Some("ProgressDeadlineExceeded".into()),
        message: Some("ImagePullBackOff".into()),
        ..DeploymentCondition::default()
    }]);
    let s = slot_status(&slot(1), &applied(&st), None, at(0));
    assert_eq!(s.phase, Some(Phase::CrashLoop));
    let d = s.condition(conditions::DEGRADED).expect("degraded");
    assert_eq!(
        (d.status.as_str(), d.reason.as_str()),
        ("True", reasons::PROGRESS_DEADLINE_EXCEEDED)
    );
    assert_eq!(d.message, "ImagePullBackOff");
}

#[test]
fn invalid_specs_and_upstreams() {
    let s = slot_status(
        &slot(1),
        &Observation::Invalid("spec.port: no".into()),
        None,
        at(0),
    );
    assert_eq!(s.phase, Some(Phase::Failed));
    assert_eq!(
        reason(&s, conditions::DEGRADED),
        ("True".into(), reasons::INVALID_SPEC.into())
    );
    let u = slot_status(&slot(0), &Observation::Upstream, None, at(0));
    assert_eq!(u.phase, Some(Phase::Ready));
    assert_eq!(
        reason(&u, conditions::LOADED),
        ("True".into(), reasons::EXTERNAL_UPSTREAM.into())
    );
}

#[test]
fn transition_times_move_only_on_a_change() {
    let mut s = slot(1);
    let loading = deployment(1, 0);
    s.status = Some(slot_status(&s, &applied(&loading), None, at(0)));
    let again = slot_status(&s, &applied(&loading), None, at(50));
    assert!(
        !status_changed(s.status.as_ref(), &again),
        "same observation, same status"
    );
    let ready = deployment(1, 1);
    let later = slot_status(&s, &applied(&ready), None, at(60));
    let t = |st: &crate::kube::crd::SlotStatus, ty| {
        st.condition(ty)
            .map(|c| c.last_transition_time.0)
            .expect("condition")
    };
    assert_eq!(t(&later, conditions::LOADED), at(60));
    assert_eq!(t(&later, conditions::READY), at(0));
    assert!(status_changed(s.status.as_ref(), &later));
}
