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
use crate::crd::Slot;
use crate::gateway::{self, GatewayState, SlotControl};
use crate::kubernetes::ClusterConfig;
use crate::kubernetes::controller::{self, Scope};
use crate::kubernetes::wake::{ApiWriter, KubeSlotControl};
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
    #[arg(long, env = "HAL0_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: String,
    /// With `--source kube`: the namespace whose Slots are routed (default: the pod's).
    #[arg(long, env = "HAL0_NAMESPACE")]
    pub namespace: Option<String>,
    /// With `--source kube`: the slots' Service port (the controller's `port`), used until a
    /// Slot shows its endpoint.
    #[arg(long, default_value_t = 8080)]
    pub slot_port: u16,
    /// With `--source kube`: how long a request waits for a Slot at zero to become ready.
    #[arg(long, default_value = "10m")]
    pub load_timeout: HumanDuration,
}

/// `hal0 controller` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ControllerArgs {
    /// Controller config (YAML): images per provider, model volume, port. Defaults apply
    /// without one; see docs/kubernetes.md.
    #[arg(long, env = "HAL0_CONTROLLER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Watch only this namespace (default: every namespace).
    #[arg(long, env = "HAL0_WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// Where /healthz and /readyz are served.
    #[arg(long, default_value = "0.0.0.0:8081")]
    pub health_listen: String,
}

/// `hal0 crd`: prints the CustomResourceDefinition.
pub fn print_crd() -> ExitCode {
    match crate::crd::crd_yaml() {
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

/// `hal0 controller`: runs until SIGINT or SIGTERM.
pub async fn controller(args: ControllerArgs) -> anyhow::Result<()> {
    let config = ClusterConfig::load(args.config.as_deref())?;
    let client = Client::try_default()
        .await
        .context("cannot reach the Kubernetes API (in-cluster config or kubeconfig)")?;
    let health = tokio::net::TcpListener::bind(&args.health_listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.health_listen))?;
    let ok = || async { "ok" };
    let health_router = axum::Router::new()
        .route("/healthz", axum::routing::get(ok))
        .route("/readyz", axum::routing::get(ok));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(health, health_router).await {
            tracing::warn!(error = %e, "health endpoint stopped");
        }
    });
    let scope = args.namespace.map_or(Scope::All, Scope::Namespace);
    tracing::info!(?scope, "controller starting");
    controller::run(client, config, scope, shutdown_signal()).await;
    Ok(())
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
    run_gateway(
        client,
        namespace,
        args.slot_port,
        args.load_timeout.as_duration(),
        listener,
        shutdown_signal(),
    )
    .await
}

/// The in-cluster gateway on `listener` until `shutdown` resolves; tests call this directly.
pub async fn run_gateway(
    client: Client,
    namespace: String,
    slot_port: u16,
    load_timeout: Duration,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let api: Api<Slot> = Api::namespaced(client, &namespace);
    let (routes_tx, routes_rx) = watch::channel(Arc::new(RoutingTable::default()));
    let (statuses_tx, statuses_rx) = watch::channel(Arc::new(StatusMap::new()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut stop_source = stop_rx.clone();
    let source = tokio::spawn(crate::source::kube::run(
        api.clone(),
        namespace,
        slot_port,
        routes_tx,
        statuses_tx,
        async move {
            let _ = stop_source.wait_for(|v| *v).await;
        },
    ));
    let control: Arc<dyn SlotControl> = Arc::new(KubeSlotControl::spawn(
        Arc::new(ApiWriter { api }),
        Arc::new(Timestamp::now),
    ));
    let state = GatewayState::new(routes_rx, statuses_rx, control, load_timeout);
    let result = gateway::serve(listener, gateway::router(state), shutdown).await;
    let _ = stop_tx.send(true);
    let _ = source.await;
    drop(stop_rx);
    result.context("gateway failed")
}
