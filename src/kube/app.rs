//! Composition root for the Kubernetes side: `hal0 crd`, `hal0 controller`, and
//! `hal0 serve --source kube` (the in-cluster gateway: Slots → routing table, wake = scale).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::jiff::Timestamp;
use kube::{Api, Client};
use tokio::sync::watch;

use crate::core::StatusMap;
use crate::gateway::{self, GatewayState, SlotControl};
use crate::kube::ClusterConfig;
use crate::kube::crd::Slot;
use crate::kube::wake::{ApiWriter, KubeSlotControl};
use crate::kube::watches::{self, Scope};
use crate::model::{HumanDuration, RoutingTable};

/// Where `hal0 serve` reads its slots from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Source {
    /// hal0.toml, slots run as local processes.
    File,
    /// Slot resources of a namespace, served by their Services (in a cluster).
    Kube,
}

/// `hal0 serve --source kube` flags (ignored with `--source file`).
#[derive(Debug, Clone, clap::Args)]
pub struct KubeServeArgs {
    /// With `--source kube`: the address the in-cluster gateway listens on.
    #[arg(
        long,
        env = "HAL0_LISTEN",
        hide_env_values = true,
        default_value = "0.0.0.0:8080"
    )]
    pub listen: String,
    /// With `--source kube`: the namespace whose Slots are routed (default: the pod's).
    #[arg(long, env = "HAL0_NAMESPACE", hide_env_values = true)]
    pub namespace: Option<String>,
    /// With `--source kube`: the slots' Service port (the controller's `port`), used until a
    /// Slot shows its endpoint.
    #[arg(long, default_value_t = 8080)]
    pub slot_port: u16,
    /// With `--source kube`: how long a request waits for a Slot at zero to become ready.
    #[arg(long, default_value = "10m")]
    pub load_timeout: HumanDuration,
    /// Test-only: send every in-cluster slot's traffic to this base URL instead of its Service
    /// (for test control planes without a kubelet or cluster DNS).
    #[arg(long, hide = true)]
    pub endpoint_override: Option<String>,
}

/// `hal0 controller` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ControllerArgs {
    /// Controller config (YAML): images per provider, model volume, port. Defaults apply
    /// without one; see docs/kubernetes.md.
    #[arg(long, env = "HAL0_CONTROLLER_CONFIG", hide_env_values = true)]
    pub config: Option<PathBuf>,
    /// Watch only this namespace (default: every namespace).
    #[arg(long, env = "HAL0_WATCH_NAMESPACE", hide_env_values = true)]
    pub namespace: Option<String>,
    /// Where /healthz, /readyz and /metrics are served.
    #[arg(long, default_value = "0.0.0.0:8081")]
    pub health_listen: String,
    /// Reconcile only while holding the `hal0-controller` Lease, so two replicas never act at
    /// once (`--leader-elect=false` to turn it off).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// The namespace of the leader Lease (default: the pod's, from POD_NAMESPACE, else hal0).
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// How long a leader's Lease lasts without renewal before another replica takes over.
    #[arg(long, default_value = "15s")]
    pub lease_duration: HumanDuration,
}

/// `hal0 crd`: prints the CustomResourceDefinition.
pub fn print_crd() -> ExitCode {
    match crate::kube::crd::crd_yaml() {
        Ok(yaml) => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hal0: error: cannot render the CRD: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::info!("shutting down");
}

/// How long in-flight reconciles get after SIGTERM before the controller exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

async fn health_server(
    listener: tokio::net::TcpListener,
    metrics: Arc<crate::kube::metrics::Metrics>,
) {
    use axum::http::StatusCode;
    use axum::routing::get;
    let ready = metrics.clone();
    let router = axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let m = ready.clone();
                async move {
                    if m.is_synced() {
                        (StatusCode::OK, "ok")
                    } else {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            "the Slot watch has not synced yet",
                        )
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let m = metrics.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        m.encode(),
                    )
                }
            }),
        );
    if let Err(e) = axum::serve(listener, router).await {
        tracing::warn!(error = %e, "health endpoint stopped");
    }
}

/// `hal0 controller`: runs until SIGINT or SIGTERM (or, with leader election, until the Lease
/// is lost: then it exits with an error and is restarted as a candidate).
pub async fn controller(args: ControllerArgs) -> anyhow::Result<()> {
    use crate::kube::leader::Elector;
    use crate::kube::metrics::Metrics;

    let config = ClusterConfig::load(args.config.as_deref())?;
    let client = Client::try_default()
        .await
        .context("cannot reach the Kubernetes API (in-cluster config or kubeconfig)")?;
    let health = tokio::net::TcpListener::bind(&args.health_listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.health_listen))?;
    let metrics = Arc::new(Metrics::default());
    tokio::spawn(health_server(health, metrics.clone()));

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };

    let mut elector = None;
    if args.leader_elect {
        let ns = args
            .lease_namespace
            .clone()
            .unwrap_or_else(|| "hal0".into());
        let identity = std::env::var("POD_NAME")
            .unwrap_or_else(|_| format!("{}-{}", hostname(), std::process::id()));
        let api: Api<k8s_openapi::api::coordination::v1::Lease> =
            Api::namespaced(client.clone(), &ns);
        let mut e = Elector::new(api, identity, args.lease_duration.as_duration());
        tokio::select! {
            () = e.acquire() => {}
            () = stopped(stop_rx.clone()) => return Ok(()),
        }
        metrics.set_leader(true);
        elector = Some(e);
    }

    let scope = args.namespace.map_or(Scope::All, Scope::Namespace);
    tracing::info!(?scope, "controller starting");
    let (lost_tx, lost_rx) = watch::channel(false);
    let stop = stop_rx.clone();
    let run = watches::run(client, config, scope, metrics.clone(), async move {
        tokio::select! {
            () = stopped(stop) => {}
            () = stopped(lost_rx) => {}
        }
    });
    let mut run = std::pin::pin!(run);
    let keep = async {
        match elector.as_mut() {
            Some(e) => e.keep().await,
            None => std::future::pending().await,
        }
    };
    let outcome = tokio::select! {
        () = &mut run => None,
        lost = keep => Some(lost),
        () = stopped(stop_rx.clone()) => {
            // In-flight reconciles get a bounded time; a stuck one never holds the exit.
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut run).await.is_err() {
                tracing::warn!("reconciles still running after {SHUTDOWN_GRACE:?}; exiting anyway");
            }
            None
        }
    };
    if let Some(lost) = outcome {
        let _ = lost_tx.send(true);
        metrics.set_leader(false);
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, run).await;
        return Err(lost.into());
    }
    if let Some(mut e) = elector {
        e.release().await;
    }
    Ok(())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "hal0-controller".into())
}

/// `hal0 serve --source kube`: the gateway over the Slots of one namespace.
pub async fn serve(args: KubeServeArgs) -> anyhow::Result<()> {
    let client = Client::try_default()
        .await
        .context("cannot reach the Kubernetes API (in-cluster config or kubeconfig)")?;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!(%namespace, "gateway listening on http://{}", listener.local_addr()?);
    let opts = crate::kube::publish::Options {
        namespace,
        port: args.slot_port,
        endpoint_override: args.endpoint_override.clone(),
    };
    run_gateway(
        client,
        opts,
        args.load_timeout.as_duration(),
        listener,
        shutdown_signal(),
    )
    .await
}

/// The in-cluster gateway on `listener` until `shutdown` resolves; tests call this directly.
pub async fn run_gateway(
    client: Client,
    opts: crate::kube::publish::Options,
    load_timeout: Duration,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let api: Api<Slot> = Api::namespaced(client.clone(), &opts.namespace);
    let dynamic: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client,
        &opts.namespace,
        &crate::kube::reconcile::slot_resource(),
    );
    let (routes_tx, routes_rx) = watch::channel(Arc::new(RoutingTable::default()));
    let (statuses_tx, statuses_rx) = watch::channel(Arc::new(StatusMap::new()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut stop_source = stop_rx.clone();
    let source = tokio::spawn(crate::kube::publish::run(
        dynamic,
        opts,
        routes_tx,
        statuses_tx,
        async move {
            let _ = stop_source.wait_for(|v| *v).await;
        },
    ));
    let control: Arc<dyn SlotControl> = Arc::new(KubeSlotControl::spawn(
        Arc::new(ApiWriter { api }),
        Arc::new(Timestamp::now),
        routes_rx.clone(),
        statuses_rx.clone(),
    ));
    let state = GatewayState::new(routes_rx, statuses_rx, control, load_timeout);
    let app = gateway::listen::App::new(gateway::router(state.clone()), state);
    let result = gateway::serve(listener, app, shutdown).await;
    let _ = stop_tx.send(true);
    let _ = source.await;
    drop(stop_rx);
    result.context("gateway failed")
}
