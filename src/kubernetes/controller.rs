//! `hal0 controller`: runs the Slot reconciler under `kube::runtime::Controller`, watching
//! Slots and the Deployments and Services it owns, until `shutdown` resolves.
//!
//! Two replicas must not fight: the manifests run one replica with the `Recreate` strategy
//! (never two at once, even during a rollout) and a readiness probe. Even if two did run, every
//! write is a forced server-side apply of the same desired state computed from the same
//! objects (level-based), so they would agree rather than flap.

use std::future::Future;
use std::sync::Arc;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::runtime::controller::Controller;
use kube::runtime::events::Reporter;
use kube::runtime::watcher;
use kube::{Api, Client};

use super::config::ClusterConfig;
use super::names;
use super::reconcile::{Context, error_policy, reconcile};
use crate::crd::Slot;

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

/// Runs the controller with `ctx` until `shutdown` resolves.
pub async fn run_with(
    ctx: Arc<Context>,
    scope: Scope,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let owned = watcher::Config::default().labels(names::OWNED_SELECTOR);
    Controller::new(api::<Slot>(&client, &scope), watcher::Config::default())
        .owns(api::<Deployment>(&client, &scope), owned.clone())
        .owns(api::<Service>(&client, &scope), owned)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((slot, _)) => tracing::debug!(slot = %slot.name, "reconciled"),
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
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let reporter = Reporter {
        controller: names::CONTROLLER_MANAGER.into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let ctx = Arc::new(Context::new(client, config, reporter));
    run_with(ctx, scope, shutdown).await;
}
