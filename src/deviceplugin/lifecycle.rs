//! The plugin's life: discover, serve, register, and serve + register again whenever the
//! kubelet restarts, until told to stop; then remove our socket.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::api::KUBELET_SOCKET;
use super::args::PluginConfig;
use super::dir_watch::{DirWatch, Wait};
use super::health::{self, Scanner};
use super::inventory::Inventory;
use super::registration;
use super::server::{self, ServerError, file_identity};

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("cannot create the plugin directory {path}: {source}")]
    CreatePluginDirFailed {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    ServeFailed(#[from] ServerError),
}

/// Longest wait between registration attempts while the kubelet refuses or is unreachable.
const MAX_RETRY: Duration = Duration::from_secs(30);

/// Runs the plugin until `stop` fires. Returns after our socket is removed.
pub async fn run_plugin(cfg: PluginConfig, stop: CancellationToken) -> Result<(), LifecycleError> {
    std::fs::create_dir_all(&cfg.plugin_dir).map_err(|source| {
        LifecycleError::CreatePluginDirFailed {
            path: cfg.plugin_dir.clone(),
            source,
        }
    })?;
    let scanner = Scanner::new(&cfg);
    let first = scanner.scan().await;
    let mut warnings = Vec::new();
    health::log_warnings(&first, &mut warnings);
    if first.devices.is_empty() {
        tracing::info!(
            resource = %cfg.resource,
            sysfs = %cfg.sysfs_root.display(),
            "no {} devices found; advertising none and rescanning every {:?}",
            cfg.kind.as_str(),
            cfg.rescan_interval
        );
    }
    let empty = if cfg.kind.counts_memory() {
        Inventory::per_gib()
    } else {
        Inventory::new(cfg.shared)
    };
    let (tx, rx) = watch::channel(Arc::new(empty));
    health::publish(&tx, first);

    let health_stop = stop.child_token();
    let health_task = tokio::spawn(health::run(
        scanner,
        cfg.rescan_interval,
        tx,
        health_stop.clone(),
        warnings,
    ));
    let result = serve_and_register(&cfg, rx, &stop).await;
    health_stop.cancel();
    if health_task.await.is_err() {
        tracing::warn!("the health task panicked");
    }
    result
}

/// The serve → register → wait-for-kubelet-restart loop.
async fn serve_and_register(
    cfg: &PluginConfig,
    inventory: watch::Receiver<Arc<Inventory>>,
    stop: &CancellationToken,
) -> Result<(), LifecycleError> {
    let kubelet = cfg.plugin_dir.join(KUBELET_SOCKET);
    let socket = cfg.plugin_dir.join(&cfg.socket_name);
    let dir = DirWatch::new(&cfg.plugin_dir, cfg.rescan_interval);
    let mut retry = cfg.rescan_interval;
    loop {
        if dir
            .wait_until(stop, None, || file_identity(&kubelet).is_some())
            .await
            == Wait::Stopped
        {
            return Ok(());
        }
        let kubelet_identity = file_identity(&kubelet);
        let server = server::start(&socket, &cfg.resource, inventory.clone())?;
        if let Err(e) =
            registration::register(&cfg.plugin_dir, &cfg.socket_name, &cfg.resource).await
        {
            tracing::warn!(error = %e, "registration failed; retrying in {retry:?}");
            stop_server(server).await;
            // Try again after the backoff, or at once when a new kubelet socket appears.
            let deadline = Some(Instant::now() + retry);
            let waited = dir
                .wait_until(stop, deadline, || {
                    file_identity(&kubelet) != kubelet_identity
                })
                .await;
            if waited == Wait::Stopped {
                return Ok(());
            }
            retry = (retry * 2).min(MAX_RETRY);
            continue;
        }
        retry = cfg.rescan_interval;
        tracing::info!(
            resource = %cfg.resource,
            socket = %socket.display(),
            "registered with the kubelet"
        );
        let waited = dir
            .wait_until(stop, None, || {
                server.socket_gone()
                    || file_identity(&kubelet) != kubelet_identity
                    || server.is_finished()
            })
            .await;
        let why = if waited == Wait::Stopped {
            None
        } else if server.is_finished() {
            Some("our gRPC server stopped")
        } else if server.socket_gone() {
            Some("our socket was removed (kubelet restart)")
        } else {
            Some("kubelet.sock was recreated (kubelet restart)")
        };
        stop_server(server).await;
        match why {
            None => {
                tracing::info!(socket = %socket.display(), "stopped; socket removed");
                return Ok(());
            }
            Some(reason) => tracing::info!("{reason}; serving and registering again"),
        }
    }
}

async fn stop_server(server: server::RunningServer) {
    if let Err(e) = server.stop().await {
        tracing::warn!(error = %e, "the gRPC server ended with an error");
    }
}
