//! The Slot reconciler: level-based, from what is. For each Slot: validate the spec, apply its
//! Deployment and Service (server-side apply, owned by the Slot), write the status when it
//! changed, publish an event on a phase change, scale an idle Slot to zero, and requeue.
//! A finalizer deletes the Deployment and Service before the Slot goes away.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as Finalized, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::{Client, Resource, ResourceExt};

use super::config::ClusterConfig;
use super::idle::{Idleness, idleness};
use super::status::{Observation, slot_status, status_changed};
use super::validate::validate;
use super::{names, workload};
use crate::crd::{Slot, SlotStatus};
use crate::model::{Phase, SlotName};

/// How often every Slot is reconciled even when nothing changed.
pub const PERIODIC_REQUEUE: Duration = Duration::from_secs(300);

/// The clock the reconciler reads; tests substitute their own.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// What every reconcile needs.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Images, model volume, port.
    pub config: ClusterConfig,
    /// Who publishes events (controller name, pod name).
    pub reporter: Reporter,
    /// Now.
    pub clock: Clock,
    /// Consecutive failures per Slot, for `error_policy`'s backoff. A std mutex: it is never
    /// held across an `.await`.
    pub failures: Mutex<HashMap<ObjectRef<Slot>, u32>>,
}

impl Context {
    pub fn new(client: Client, config: ClusterConfig, reporter: Reporter) -> Self {
        Context {
            client,
            config,
            reporter,
            clock: Arc::new(Timestamp::now),
            failures: Mutex::new(HashMap::new()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the Slot has no namespace")]
    NoNamespace,
    #[error("applying {kind} {name} failed")]
    ApplyFailed {
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("writing the status of Slot {0} failed")]
    StatusFailed(String, #[source] kube::Error),
    #[error("scaling Slot {0} to zero failed")]
    ScaleFailed(String, #[source] kube::Error),
    #[error("deleting {kind} {name} failed")]
    DeleteFailed {
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("finalizer")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The reconcile entry point for `kube::runtime::Controller`.
pub async fn reconcile(slot: Arc<Slot>, ctx: Arc<Context>) -> Result<Action> {
    let ns = slot.namespace().ok_or(Error::NoNamespace)?;
    let slots: Api<Slot> = Api::namespaced(ctx.client.clone(), &ns);
    let action = finalizer(&slots, names::FINALIZER, slot.clone(), |event| async {
        match event {
            Finalized::Apply(slot) => apply(&slot, &ctx, &ns).await,
            Finalized::Cleanup(slot) => cleanup(&slot, &ctx, &ns).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))?;
    if let Ok(mut f) = ctx.failures.lock() {
        f.remove(&ObjectRef::from_obj(&*slot));
    }
    Ok(action)
}

/// Requeue a failed Slot with exponential backoff: 5 s, 10 s, ... up to 5 minutes.
pub fn error_policy(slot: Arc<Slot>, error: &Error, ctx: Arc<Context>) -> Action {
    let failures = match ctx.failures.lock() {
        Ok(mut f) => {
            let n = f.entry(ObjectRef::from_obj(&*slot)).or_insert(0);
            *n = n.saturating_add(1);
            *n
        }
        Err(_) => 1,
    };
    tracing::warn!(slot = %slot.name_any(), error = %error_chain(error), failures, "reconcile failed");
    Action::requeue(backoff(failures))
}

/// The delay before retry number `failures` (1-based).
pub fn backoff(failures: u32) -> Duration {
    let secs = 5u64.saturating_mul(1 << failures.saturating_sub(1).min(6));
    Duration::from_secs(secs.min(300))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

async fn apply(slot: &Slot, ctx: &Context, ns: &str) -> Result<Action> {
    let now = (ctx.clock)();
    let name = match validate(slot) {
        Ok(name) => name,
        Err(invalid) => {
            let obs = Observation::Invalid(invalid.to_string());
            write_status(slot, ctx, ns, slot_status(slot, &obs, None, now)).await?;
            return Ok(Action::requeue(PERIODIC_REQUEUE));
        }
    };
    if !slot.spec.slot.provider.runs_process() {
        delete_objects(&name, ctx, ns).await?;
        let endpoint = slot.spec.slot.upstream.clone();
        let st = slot_status(slot, &Observation::Upstream, endpoint, now);
        write_status(slot, ctx, ns, st).await?;
        return Ok(Action::requeue(PERIODIC_REQUEUE));
    }
    let built = workload::deployment(&name, slot, &ctx.config)
        .and_then(|d| Ok((d, workload::service(&name, slot, &ctx.config)?)));
    let (deployment, service) = match built {
        Ok(objects) => objects,
        Err(e) => {
            let obs = Observation::Invalid(error_chain(&e));
            write_status(slot, ctx, ns, slot_status(slot, &obs, None, now)).await?;
            return Ok(Action::requeue(PERIODIC_REQUEUE));
        }
    };
    let pp = PatchParams::apply(names::CONTROLLER_MANAGER).force();
    let object = names::object_name(&name);
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
    let applied = match deployments
        .patch(&object, &pp, &Patch::Apply(&deployment))
        .await
    {
        Ok(d) => d,
        Err(source) => {
            let obs = Observation::ApplyFailed(source.to_string());
            write_status(slot, ctx, ns, slot_status(slot, &obs, None, now)).await?;
            return Err(Error::ApplyFailed {
                kind: "Deployment",
                name: object,
                source,
            });
        }
    };
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), ns);
    if let Err(source) = services.patch(&object, &pp, &Patch::Apply(&service)).await {
        let obs = Observation::ApplyFailed(source.to_string());
        write_status(slot, ctx, ns, slot_status(slot, &obs, None, now)).await?;
        return Err(Error::ApplyFailed {
            kind: "Service",
            name: object,
            source,
        });
    }
    let endpoint = names::endpoint(&name, ns, ctx.config.port);
    let obs = Observation::Applied(applied.status.as_ref());
    write_status(slot, ctx, ns, slot_status(slot, &obs, Some(endpoint), now)).await?;

    match idleness(slot, now) {
        Idleness::Idle => {
            scale_to_zero(slot, ctx, ns).await?;
            Ok(Action::requeue(PERIODIC_REQUEUE))
        }
        Idleness::Busy(left) => Ok(Action::requeue(left.min(PERIODIC_REQUEUE))),
        Idleness::Exempt => Ok(Action::requeue(PERIODIC_REQUEUE)),
    }
}

async fn write_status(slot: &Slot, ctx: &Context, ns: &str, status: SlotStatus) -> Result<()> {
    let old_phase = slot.status.as_ref().and_then(|s| s.phase);
    if !status_changed(slot.status.as_ref(), &status) {
        return Ok(());
    }
    let new_phase = status.phase;
    let name = slot.name_any();
    let slots: Api<Slot> = Api::namespaced(ctx.client.clone(), ns);
    let body = serde_json::json!({
        "apiVersion": "hal0.dev/v1alpha1",
        "kind": "Slot",
        "status": status,
    });
    let pp = PatchParams::apply(names::CONTROLLER_MANAGER).force();
    slots
        .patch_status(&name, &pp, &Patch::Apply(&body))
        .await
        .map_err(|e| Error::StatusFailed(name.clone(), e))?;
    if let Some(phase) = new_phase
        && old_phase != Some(phase)
    {
        publish(slot, ctx, phase, &status).await;
    }
    Ok(())
}

/// One event per phase transition; failures to publish are logged, never fatal.
async fn publish(slot: &Slot, ctx: &Context, phase: Phase, status: &SlotStatus) {
    let warning = matches!(phase, Phase::Failed | Phase::CrashLoop);
    let note = status
        .conditions
        .iter()
        .find(|c| !c.message.is_empty())
        .map(|c| c.message.chars().take(1000).collect::<String>());
    let reason: String = phase
        .as_str()
        .split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect();
    let ev = KubeEvent {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason,
        note: Some(note.unwrap_or_else(|| format!("slot is {phase}"))),
        action: "Reconcile".into(),
        secondary: None,
    };
    let recorder = Recorder::new(ctx.client.clone(), ctx.reporter.clone());
    if let Err(e) = recorder.publish(&ev, &slot.object_ref(&())).await {
        tracing::warn!(slot = %slot.name_any(), error = %e, "cannot publish event");
    }
    tracing::info!(slot = %slot.name_any(), %phase, "slot phase changed");
}

async fn scale_to_zero(slot: &Slot, ctx: &Context, ns: &str) -> Result<()> {
    let name = slot.name_any();
    let slots: Api<Slot> = Api::namespaced(ctx.client.clone(), ns);
    let pp = PatchParams::default();
    let body = serde_json::json!({"spec": {"replicas": 0}});
    slots
        .patch_scale(&name, &pp, &Patch::Merge(&body))
        .await
        .map_err(|e| Error::ScaleFailed(name.clone(), e))?;
    tracing::info!(slot = %name, "idle: scaled to zero");
    Ok(())
}

async fn delete_objects(name: &SlotName, ctx: &Context, ns: &str) -> Result<()> {
    let object = names::object_name(name);
    let dp = DeleteParams::background();
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
    if let Err(source) = deployments.delete(&object, &dp).await
        && !is_not_found(&source)
    {
        return Err(Error::DeleteFailed {
            kind: "Deployment",
            name: object,
            source,
        });
    }
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), ns);
    if let Err(source) = services.delete(&object, &dp).await
        && !is_not_found(&source)
    {
        return Err(Error::DeleteFailed {
            kind: "Service",
            name: object,
            source,
        });
    }
    Ok(())
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

async fn cleanup(slot: &Slot, ctx: &Context, ns: &str) -> Result<Action> {
    // A Slot whose name is not a slot name never got objects; nothing to clean.
    if let Ok(name) = SlotName::parse(&slot.name_any()) {
        delete_objects(&name, ctx, ns).await?;
    }
    tracing::info!(slot = %slot.name_any(), "deleted: cleaned up");
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::backoff;
    use std::time::Duration;

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        assert_eq!(backoff(1), Duration::from_secs(5));
        assert_eq!(backoff(2), Duration::from_secs(10));
        assert_eq!(backoff(7), Duration::from_secs(300));
        assert_eq!(backoff(100), Duration::from_secs(300));
    }
}
