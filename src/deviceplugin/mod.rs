//! Kubelet device plugins for the AMD iGPU (`amd.com/gpu`) and the XDNA NPU (`amd.com/npu`).
//!
//! `hal0 device-plugin --device igpu|npu` discovers devices from sysfs, serves the kubelet's
//! `v1beta1` DevicePlugin API on a unix socket in the plugin directory, registers with
//! `kubelet.sock`, keeps device health current, and re-registers after kubelet restarts.
//!
//! # Layout (one line per module: what it owns)
//!
//! - `args`         CLI flags, defaults per device kind, the resolved `PluginConfig`
//! - `api`          the generated v1beta1 protobuf/gRPC types and protocol constants
//! - `sysfs`        reading sysfs attributes: PCI IDs, bound driver, NUMA node, byte counters
//! - `igpu`         iGPU discovery: amdgpu-bound PCI functions, render node, /dev/kfd, APU memory
//! - `npu`          NPU discovery: amdxdna-bound accel devices, generation from the revision
//! - `discovery`    one discovery pass per device kind, log descriptions
//! - `inventory`    physical devices, health, schedulable IDs (`--shared`), the health merge
//! - `allocate`     PURE: Allocate responses, unknown-ID errors, preferred allocation
//! - `service`      the DevicePlugin gRPC service (options, ListAndWatch, Allocate, ...)
//! - `server`       serving that service on our unix socket; socket cleanup
//! - `authority`    relaying each connection so any client `:authority` is accepted (C-core)
//! - `unix`         dialing a gRPC server on a unix socket
//! - `registration` the Registration.Register call to the kubelet
//! - `health`       periodic rescans; publishing inventory changes to ListAndWatch
//! - `dir_watch`    inotify + poll watch of the plugin directory (kubelet restarts)
//! - `lifecycle`    discover → serve → register → re-register on kubelet restart → clean up

mod allocate;
pub mod api;
mod args;
mod authority;
mod dir_watch;
pub mod discovery;
mod health;
mod igpu;
pub mod inventory;
mod lifecycle;
mod npu;
mod registration;
mod server;
mod service;
pub mod sysfs;
pub mod unix;

pub use args::{ArgsError, DeviceKind, DevicePluginArgs, PluginConfig};
pub use lifecycle::{LifecycleError, run_plugin};

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    InvalidArgs(#[from] ArgsError),
    #[error("cannot install the {signal} handler: {source}")]
    SignalSetupFailed {
        signal: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    PluginFailed(#[from] LifecycleError),
}

/// `hal0 device-plugin`: runs until SIGTERM or SIGINT, then removes its socket and exits.
pub async fn run(args: DevicePluginArgs) -> anyhow::Result<()> {
    let cfg = PluginConfig::from_args(args).map_err(Error::from)?;
    let stop = CancellationToken::new();
    let mut term = signal(SignalKind::terminate()).map_err(|source| Error::SignalSetupFailed {
        signal: "SIGTERM",
        source,
    })?;
    let mut int = signal(SignalKind::interrupt()).map_err(|source| Error::SignalSetupFailed {
        signal: "SIGINT",
        source,
    })?;
    let on_signal = stop.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: stopping"),
            _ = int.recv() => tracing::info!("SIGINT: stopping"),
        }
        on_signal.cancel();
    });
    tracing::info!(
        device = cfg.kind.as_str(),
        resource = %cfg.resource,
        shared = cfg.shared.get(),
        plugin_dir = %cfg.plugin_dir.display(),
        "starting the device plugin"
    );
    run_plugin(cfg, stop).await.map_err(Error::from)?;
    Ok(())
}
