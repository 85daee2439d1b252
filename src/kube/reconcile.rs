//! The Slot reconciler: level-based, from what is. For each Slot: decode and validate the spec,
//! apply its Deployment and Service (server-side apply, owned by the Slot), write the status
//! when it changed, publish an event on a phase change, scale an idle Slot to zero, and
//! requeue. A finalizer deletes the Deployment and Service before the Slot goes away.
//!
//! Slots are read as [`DynamicObject`]s and decoded one by one, so a Slot that cannot be
//! decoded (stored under an older, looser CRD) only marks itself `Degraded`; it never stops the
//! watch of every other Slot. A Slot whose spec is (or becomes) invalid has its Deployment
//! scaled to zero, so it does not hold a device the gateway no longer routes to.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as Finalized, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};

use super::metrics::Metrics;

use super::claims::{claims_of, conflicts};
use super::idle::{Idleness, idleness};
use super::settings::ClusterConfig;
use super::status::{Observation, slot_status, status_changed, with_conflict};
use super::validate::validate;
use super::{names, workload};
use crate::kube::crd::{Slot, SlotResourceSpec, SlotStatus};
use crate::model::{Phase, ProviderKind, SlotName, SlotSpec};

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
    /// Consecutive failures per Slot (namespace, name), for `error_policy`'s backoff. A std
    /// mutex: it is never held across an `.await`.
    pub failures: Mutex<HashMap<(String, String), u32>>,
    /// Reconcile counters and timings for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// The Deployments and Services the controller owns, as watched (set by the controller).
    pub owned: OnceLock<OwnedStores>,
    /// What was last applied per Slot uid, to skip applies that would change nothing.
    pub applied: Mutex<HashMap<String, AppliedState>>,
    /// Every watched Slot (set by the controller), to find names claimed twice.
    pub slots_store: OnceLock<Store<DynamicObject>>,
    /// Asks the controller to reconcile other Slots (set by the controller): a Slot whose
    /// names newly conflict, or no longer conflict, with the one being reconciled.
    pub poke: OnceLock<tokio::sync::mpsc::UnboundedSender<ObjectRef<DynamicObject>>>,
}

/// The caches of the objects the controller owns.
pub struct OwnedStores {
    pub deployments: Store<Deployment>,
    pub services: Store<Service>,
}

/// The last apply of a Slot's objects: the hash of what was applied, and the versions the API
/// server gave back. While the watched objects still show those versions, nothing drifted and
/// the apply is skipped, so a Slot at rest costs the API server no writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedState {
    pub hash: u64,
    pub deployment_generation: Option<i64>,
    pub service_version: Option<String>,
}

impl Context {
    pub fn new(client: Client, config: ClusterConfig, reporter: Reporter) -> Self {
        Context {
            client,
            config,
            reporter,
            clock: Arc::new(Timestamp::now),
            failures: Mutex::new(HashMap::new()),
            metrics: Arc::new(Metrics::default()),
            owned: OnceLock::new(),
            applied: Mutex::new(HashMap::new()),
            slots_store: OnceLock::new(),
            poke: OnceLock::new(),
        }
    }

    /// The Slots of `ns`, untyped: every read and write on a Slot goes through this, so a
    /// Slot that does not decode can still get its status and finalizer.
    pub fn slots(&self, ns: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), ns, &slot_resource())
    }
}

/// The Slot kind as a dynamic resource.
pub fn slot_resource() -> ApiResource {
    ApiResource::erase::<Slot>(&())
}

/// Reads a Slot out of its JSON; the error says what in the spec could not be read.
pub fn decode(obj: &DynamicObject) -> Result<Slot, String> {
    let value = serde_json::to_value(obj).map_err(|e| e.to_string())?;
    crate::kube::crd::read(value).map_err(|e| format!("spec cannot be read: {e}"))
}

/// A stand-in for a Slot whose spec cannot be decoded: its metadata and status, so the
/// status logic can keep condition times and the observed generation.
fn shell(obj: &DynamicObject) -> Slot {
    let status = obj
        .data
        .get("status")
        .and_then(|s| serde_json::from_value::<SlotStatus>(s.clone()).ok());
    Slot {
        metadata: obj.metadata.clone(),
        spec: SlotResourceSpec {
            slot: SlotSpec::new(ProviderKind::LlamaCpp, None),
            replicas: Some(0),
        },
        status,
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
    #[error("releasing the Deployment of Slot {0} failed")]
    ReleaseFailed(String, #[source] kube::Error),
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
pub async fn reconcile(obj: Arc<DynamicObject>, ctx: Arc<Context>) -> Result<Action> {
    let started = std::time::Instant::now();
    let ns = obj.namespace().ok_or(Error::NoNamespace)?;
    ctx.metrics.started(&ns, &obj.name_any());
    let slots = ctx.slots(&ns);
    let result = finalizer(&slots, names::FINALIZER, obj.clone(), |event| async {
        match event {
            Finalized::Apply(obj) => match decode(&obj) {
                Ok(slot) => apply(&slot, &ctx, &ns).await,
                Err(why) => refuse(&shell(&obj), why, &ctx, &ns).await,
            },
            Finalized::Cleanup(obj) => cleanup(&obj, &ctx, &ns).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    ctx.metrics.finished(started.elapsed(), result.is_ok());
    let action = result?;
    if let Ok(mut f) = ctx.failures.lock() {
        f.remove(&(ns, obj.name_any()));
    }
    Ok(action)
}

/// Requeue a failed Slot with exponential backoff: 5 s, 10 s, ... up to 5 minutes.
pub fn error_policy(slot: Arc<DynamicObject>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = (slot.namespace().unwrap_or_default(), slot.name_any());
    let failures = match ctx.failures.lock() {
        Ok(mut f) => {
            let n = f.entry(key).or_insert(0);
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

/// A Slot that cannot be applied: its Deployment (if any) is scaled to zero, and it is marked
/// Degraded with `why`.
async fn refuse(slot: &Slot, why: String, ctx: &Context, ns: &str) -> Result<Action> {
    if let Ok(name) = SlotName::parse(&slot.name_any()) {
        release(&name, ctx, ns).await?;
    }
    let obs = Observation::Invalid(why);
    let now = (ctx.clock)();
    write_status(slot, ctx, ns, slot_status(slot, &obs, None, now)).await?;
    Ok(Action::requeue(PERIODIC_REQUEUE))
}

/// Scales the Slot's Deployment to zero, if it exists and runs pods.
async fn release(name: &SlotName, ctx: &Context, ns: &str) -> Result<()> {
    let object = names::object_name(name);
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
    let current = match deployments.get_opt(&object).await {
        Ok(d) => d,
        Err(e) => return Err(Error::ReleaseFailed(name.to_string(), e)),
    };
    let running = current
        .as_ref()
        .and_then(|d| d.spec.as_ref())
        .and_then(|s| s.replicas)
        .unwrap_or(0);
    if running == 0 {
        return Ok(());
    }
    let pp = PatchParams::apply(names::CONTROLLER_MANAGER).force();
    let body = serde_json::json!({
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "spec": {"replicas": 0},
    });
    deployments
        .patch_scale(&object, &pp, &Patch::Apply(&body))
        .await
        .map_err(|e| Error::ReleaseFailed(name.to_string(), e))?;
    tracing::info!(slot = %name, namespace = ns, "spec is invalid: Deployment scaled to zero");
    Ok(())
}

async fn apply(slot: &Slot, ctx: &Context, ns: &str) -> Result<Action> {
    let now = (ctx.clock)();
    let name = match validate(slot) {
        Ok(name) => name,
        Err(invalid) => return refuse(slot, invalid.to_string(), ctx, ns).await,
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
        Err(e) => return refuse(slot, error_chain(&e), ctx, ns).await,
    };
    let object = names::object_name(&name);
    let applied = match unchanged(slot, &object, ns, &deployment, &service, ctx) {
        Some(current) => current,
        None => apply_objects(slot, &object, ns, deployment, service, ctx, now).await?,
    };
    let endpoint = names::endpoint(&name, ns, ctx.config.port);
    let obs = Observation::Applied {
        generation: applied.metadata.generation,
        status: applied.status.as_ref(),
    };
    let mut status = slot_status(slot, &obs, Some(endpoint), now);
    if let Some(message) = name_conflicts(slot, ctx, ns) {
        status = with_conflict(status, slot, message, now);
    }
    let version = write_status(slot, ctx, ns, status)
        .await?
        .or_else(|| slot.resource_version());

    match idleness(slot, now) {
        Idleness::Idle => match scale_to_zero(slot, version, ctx, ns).await? {
            true => Ok(Action::requeue(PERIODIC_REQUEUE)),
            // The Slot changed since this decision (a wake, new activity): look again.
            false => Ok(Action::requeue(Duration::from_millis(200))),
        },
        Idleness::Busy(left) => Ok(Action::requeue(left.min(PERIODIC_REQUEUE))),
        Idleness::Exempt => Ok(Action::requeue(PERIODIC_REQUEUE)),
    }
}

/// The names this Slot claims that other Slots of its namespace claim too, as one message;
/// pokes the peers whose own condition must change because of this Slot.
fn name_conflicts(slot: &Slot, ctx: &Context, ns: &str) -> Option<String> {
    let store = ctx.slots_store.get()?;
    let me = slot.name_any();
    let spec = serde_json::to_value(&slot.spec).ok()?;
    let mine = claims_of(&me, &spec);
    // Each peer's claims, computed once for both uses below.
    let peers: Vec<(Arc<DynamicObject>, String, Vec<super::claims::Claim>)> = store
        .state()
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(ns) && p.name_any() != me)
        .map(|p| {
            let name = p.name_any();
            let claims = claims_of(&name, &p.data["spec"]);
            (p, name, claims)
        })
        .collect();
    let found = conflicts(
        &me,
        &mine,
        peers
            .iter()
            .map(|(_, name, claims)| (name.as_str(), claims.clone())),
    );
    if let Some(poke) = ctx.poke.get() {
        let mention = format!("Slot {me:?}");
        for (p, name, theirs) in &peers {
            let conflicting = !conflicts(name, theirs, [(me.as_str(), mine.clone())]).is_empty();
            let shown = p.data["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| {
                    c["type"] == "Degraded"
                        && c["reason"] == crate::kube::crd::reasons::NAME_CONFLICT
                        && c["message"].as_str().is_some_and(|m| m.contains(&mention))
                });
            if conflicting != shown {
                let _ = poke.send(ObjectRef::new_with(name, slot_resource()).within(ns));
            }
        }
    }
    if found.is_empty() {
        return None;
    }
    Some(
        found
            .iter()
            .map(|c| c.message())
            .collect::<Vec<_>>()
            .join("; "),
    )
}

/// What the API server said, for a status message: its message, not the whole error value.
fn api_message(kind: &str, e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("applying the {kind} failed ({}): {}", s.code, s.message),
        other => format!("applying the {kind} failed: {other}"),
    }
}

fn objects_hash(deployment: &Deployment, service: &Service) -> u64 {
    let mut h = DefaultHasher::new();
    serde_json::to_string(deployment)
        .unwrap_or_default()
        .hash(&mut h);
    serde_json::to_string(service)
        .unwrap_or_default()
        .hash(&mut h);
    h.finish()
}

/// The watched Deployment, when the last apply for this Slot was of exactly these objects and
/// neither object changed since (no drift to correct).
fn unchanged(
    slot: &Slot,
    object: &str,
    ns: &str,
    deployment: &Deployment,
    service: &Service,
    ctx: &Context,
) -> Option<Deployment> {
    let uid = slot.uid()?;
    let stores = ctx.owned.get()?;
    let last = ctx.applied.lock().ok()?.get(&uid).cloned()?;
    if last.hash != objects_hash(deployment, service) {
        return None;
    }
    let dep = stores.deployments.get(&ObjectRef::new(object).within(ns))?;
    let svc = stores.services.get(&ObjectRef::new(object).within(ns))?;
    (dep.metadata.generation == last.deployment_generation
        && svc.metadata.resource_version == last.service_version)
        .then(|| (*dep).clone())
}

/// Server-side applies the Deployment and the Service; the applied Deployment.
async fn apply_objects(
    slot: &Slot,
    object: &str,
    ns: &str,
    deployment: Deployment,
    service: Service,
    ctx: &Context,
    now: Timestamp,
) -> Result<Deployment> {
    let hash = objects_hash(&deployment, &service);
    let pp = PatchParams::apply(names::CONTROLLER_MANAGER).force();
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
    let applied = match deployments
        .patch(object, &pp, &Patch::Apply(&deployment))
        .await
    {
        Ok(d) => d,
        Err(source) => {
            let obs = Observation::ApplyFailed(api_message("Deployment", &source));
            write_status(slot, ctx, ns, slot_status(slot, &obs, None, now)).await?;
            return Err(Error::ApplyFailed {
                kind: "Deployment",
                name: object.to_string(),
                source,
            });
        }
    };
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), ns);
    let svc = match services.patch(object, &pp, &Patch::Apply(&service)).await {
        Ok(s) => s,
        Err(source) => {
            let obs = Observation::ApplyFailed(api_message("Service", &source));
            write_status(slot, ctx, ns, slot_status(slot, &obs, None, now)).await?;
            return Err(Error::ApplyFailed {
                kind: "Service",
                name: object.to_string(),
                source,
            });
        }
    };
    if let (Some(uid), Ok(mut map)) = (slot.uid(), ctx.applied.lock()) {
        map.insert(
            uid,
            AppliedState {
                hash,
                deployment_generation: applied.metadata.generation,
                service_version: svc.metadata.resource_version,
            },
        );
    }
    Ok(applied)
}

/// Writes the status if it changed; the Slot's new resourceVersion when it wrote.
async fn write_status(
    slot: &Slot,
    ctx: &Context,
    ns: &str,
    status: SlotStatus,
) -> Result<Option<String>> {
    let old_phase = slot.status.as_ref().and_then(|s| s.phase);
    if !status_changed(slot.status.as_ref(), &status) {
        return Ok(None);
    }
    let new_phase = status.phase;
    let name = slot.name_any();
    let slots = ctx.slots(ns);
    let body = serde_json::json!({
        "apiVersion": "hal0.dev/v1alpha1",
        "kind": "Slot",
        "status": status,
    });
    let pp = PatchParams::apply(names::CONTROLLER_MANAGER).force();
    let written = slots
        .patch_status(&name, &pp, &Patch::Apply(&body))
        .await
        .map_err(|e| Error::StatusFailed(name.clone(), e))?;
    if let Some(phase) = new_phase
        && old_phase != Some(phase)
    {
        publish(slot, ctx, phase, &status).await;
    }
    Ok(written.resource_version())
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

/// Scales an idle Slot to zero, on condition that it is still at `version` (the version the
/// idle decision was made from). False when it changed meanwhile (409): a wake or new activity
/// must never be undone by a stale idle decision.
async fn scale_to_zero(
    slot: &Slot,
    version: Option<String>,
    ctx: &Context,
    ns: &str,
) -> Result<bool> {
    let name = slot.name_any();
    let slots = ctx.slots(ns);
    use k8s_openapi::api::autoscaling::v1::{Scale, ScaleSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    let scale = Scale {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(ns.to_string()),
            resource_version: version,
            ..ObjectMeta::default()
        },
        spec: Some(ScaleSpec { replicas: Some(0) }),
        status: None,
    };
    let pp = PostParams {
        field_manager: Some(names::CONTROLLER_MANAGER.into()),
        ..PostParams::default()
    };
    match slots.replace_scale(&name, &pp, &scale).await {
        Ok(_) => {
            tracing::info!(slot = %name, namespace = ns, "idle: scaled to zero");
            Ok(true)
        }
        Err(kube::Error::Api(s)) if s.code == 409 => {
            tracing::debug!(slot = %name, "idle decision is stale (the Slot changed); not scaling");
            Ok(false)
        }
        Err(e) => Err(Error::ScaleFailed(name, e)),
    }
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

async fn cleanup(slot: &DynamicObject, ctx: &Context, ns: &str) -> Result<Action> {
    // A Slot whose name is not a slot name never got objects; nothing to clean.
    if let Ok(name) = SlotName::parse(&slot.name_any()) {
        delete_objects(&name, ctx, ns).await?;
    }
    // What was last applied for it is of no use any more (the map would only grow).
    if let (Some(uid), Ok(mut map)) = (slot.uid(), ctx.applied.lock()) {
        map.remove(&uid);
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
