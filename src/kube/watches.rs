//! `hal0 controller`: runs the Slot reconciler under `kube::runtime::Controller`, watching
//! Slots and the Deployments and Services it owns, until `shutdown` resolves.
//!
//! - Slots are watched as untyped objects and decoded one at a time in the reconciler, so one
//!   Slot that does not decode never fails the list of all the others.
//! - Only a change that matters triggers a reconcile: a new `generation` (spec or scale), a
//!   deletion, or a finalizer change. Status writes (the controller's own, the gateway's
//!   `lastActivity`) do not; a Slot that is busy is requeued for its idle deadline instead.
//! - At most [`CONCURRENCY`] reconciles run at once.
//! - `/readyz` turns ready once the Slot watch has listed everything; `/metrics` counts
//!   reconciles, errors, durations, the queue and watch errors (logged at warn).
//!
//! Two replicas never act at once: see [`super::leader`].

use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::DynamicObject;
use kube::runtime::controller::{self, Controller};
use kube::runtime::events::Reporter;
use kube::runtime::reflector::store::Writer;
use kube::runtime::{PredicateConfig, WatchStreamExt, reflector, watcher};
use kube::{Api, Client, Resource, ResourceExt};

use super::metrics::Metrics;
use super::names;
use super::reconcile::{Context, OwnedStores, error_policy, reconcile, slot_resource};
use super::settings::ClusterConfig;

/// Reconciles running at once, at most.
pub const CONCURRENCY: u16 = 16;

/// Which namespaces the controller watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    Namespace(String),
}

fn api<K>(client: &Client, scope: &Scope) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match scope {
        Scope::All => Api::all(client.clone()),
        Scope::Namespace(ns) => Api::namespaced(client.clone(), ns),
    }
}

/// What about a Slot triggers a reconcile: its generation (spec and scale), whether it is
/// being deleted, and its finalizers. Not its status, labels or annotations.
pub fn slot_changes(obj: &DynamicObject) -> Option<u64> {
    let meta = obj.meta();
    let mut h = DefaultHasher::new();
    meta.generation.hash(&mut h);
    meta.deletion_timestamp.is_some().hash(&mut h);
    meta.finalizers.hash(&mut h);
    meta.uid.hash(&mut h);
    Some(h.finish())
}

/// How watches retry after an error: 250 ms doubling up to 5 s, back to 250 ms after a success.
/// kube-runtime's default grows to 30 s, which after an API server restart (403s while its
/// RBAC caches fill, then 410 Gone) kept the controller blind for half a minute.
#[derive(Debug, Clone)]
pub struct WatchBackoff {
    next: std::time::Duration,
}

impl WatchBackoff {
    const MIN: std::time::Duration = std::time::Duration::from_millis(250);
    const MAX: std::time::Duration = std::time::Duration::from_secs(5);
}

impl Default for WatchBackoff {
    fn default() -> Self {
        WatchBackoff { next: Self::MIN }
    }
}

impl Iterator for WatchBackoff {
    type Item = std::time::Duration;
    fn next(&mut self) -> Option<Self::Item> {
        let now = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        Some(now)
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = Self::MIN;
    }
}

/// The Controller's own backoff over its merged trigger stream: none. Each watch above already
/// backs off on its own; kube-runtime's default (800 ms doubling to 30 s, reset only after two
/// quiet minutes) sleeps the *whole* merged stream on any one watch's error, so 403s and 410s
/// from the Deployment and Service watches after an API server restart held back Slot events
/// for up to 105 s (measured by tests/kube_cluster_faults.rs on a busy machine).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoTriggerBackoff;

impl Iterator for NoTriggerBackoff {
    type Item = std::time::Duration;
    fn next(&mut self) -> Option<Self::Item> {
        Some(std::time::Duration::ZERO)
    }
}

impl kube::runtime::utils::Backoff for NoTriggerBackoff {
    fn reset(&mut self) {}
}

fn log_watch_error(metrics: &Metrics, what: &str, e: &watcher::Error) {
    metrics.watch_error();
    tracing::warn!(watch = what, error = %e, "watch failed; retrying with backoff");
}

/// Runs the controller with `ctx` until `shutdown` resolves.
pub async fn run_with(
    ctx: Arc<Context>,
    scope: Scope,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let ar = slot_resource();
    let slots: Api<DynamicObject> = match &scope {
        Scope::All => Api::all_with(client.clone(), &ar),
        Scope::Namespace(ns) => Api::namespaced_with(client.clone(), ns, &ar),
    };
    let metrics = ctx.metrics.clone();

    let writer = Writer::<DynamicObject>::new(ar.clone());
    let reader = writer.as_reader();
    let _ = ctx.slots_store.set(reader.clone());
    let (poke_tx, poke_rx) = tokio::sync::mpsc::unbounded_channel();
    let _ = ctx.poke.set(poke_tx);
    let m = metrics.clone();
    let m2 = metrics.clone();
    let m3 = metrics.clone();
    let trigger = watcher(slots, watcher::Config::default())
        .backoff(WatchBackoff::default())
        .inspect_err(move |e| log_watch_error(&m, "slots", e))
        .inspect_ok(move |ev| {
            if matches!(ev, watcher::Event::InitDone) && !m3.is_synced() {
                m3.set_synced();
                tracing::info!("Slot watch synced");
            }
        })
        .reflect(writer)
        .applied_objects()
        .predicate_filter(slot_changes, PredicateConfig::default())
        .inspect_ok(move |o| m2.triggered(&o.namespace().unwrap_or_default(), &o.name_any()));

    let owned = watcher::Config::default().labels(names::OWNED_SELECTOR);
    let dep_writer = Writer::<Deployment>::default();
    let svc_writer = Writer::<Service>::default();
    let _ = ctx.owned.set(OwnedStores {
        deployments: dep_writer.as_reader(),
        services: svc_writer.as_reader(),
    });
    let m = metrics.clone();
    let deployments = reflector(
        dep_writer,
        watcher(api::<Deployment>(&client, &scope), owned.clone()).backoff(WatchBackoff::default()),
    )
    .inspect_err(move |e| log_watch_error(&m, "deployments", e))
    .touched_objects();
    let m = metrics.clone();
    let services = reflector(
        svc_writer,
        watcher(api::<Service>(&client, &scope), owned).backoff(WatchBackoff::default()),
    )
    .inspect_err(move |e| log_watch_error(&m, "services", e))
    .touched_objects();

    Controller::for_stream_with(trigger, reader, ar)
        .owns_stream(deployments)
        .owns_stream(services)
        .reconcile_on(tokio_stream::wrappers::UnboundedReceiverStream::new(
            poke_rx,
        ))
        .with_config(controller::Config::default().concurrency(CONCURRENCY))
        .trigger_backoff(NoTriggerBackoff)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((slot, _)) => tracing::debug!(slot = %slot.name, "reconciled"),
                Err(controller::Error::ObjectNotFound(r)) => {
                    tracing::debug!(slot = %r.name, "gone before its reconcile")
                }
                // Reconcile errors were logged by error_policy, watch errors above.
                Err(e) => tracing::debug!(error = %e, "reconcile did not complete"),
            }
        })
        .await;
}

/// Runs the controller against `client`.
pub async fn run(
    client: Client,
    config: ClusterConfig,
    scope: Scope,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let reporter = Reporter {
        controller: names::CONTROLLER_MANAGER.into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let mut ctx = Context::new(client, config, reporter);
    ctx.metrics = metrics;
    run_with(Arc::new(ctx), scope, shutdown).await;
}
