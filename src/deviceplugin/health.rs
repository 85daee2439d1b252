//! Health: rescanning sysfs on an interval and publishing the inventory when it changes.
//!
//! sysfs sends no inotify events for driver binds and unbinds, so a short-interval rescan is
//! the reliable signal; a scan reads a handful of small files.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::args::{DeviceKind, PluginConfig};
use super::discovery;
use super::inventory::{Discovery, Health, Inventory, merge};

/// Where and what to scan.
#[derive(Debug, Clone)]
pub struct Scanner {
    /// Device family to discover.
    kind: DeviceKind,
    /// sysfs tree to read.
    sysfs_root: PathBuf,
    /// Device node tree to check.
    dev_root: PathBuf,
}

impl Scanner {
    pub fn new(cfg: &PluginConfig) -> Self {
        Scanner {
            kind: cfg.kind,
            sysfs_root: cfg.sysfs_root.clone(),
            dev_root: cfg.dev_root.clone(),
        }
    }

    /// One discovery pass, off the async threads (it is blocking file I/O).
    pub async fn scan(&self) -> Discovery {
        let scanner = self.clone();
        tokio::task::spawn_blocking(move || {
            discovery::discover(scanner.kind, &scanner.sysfs_root, &scanner.dev_root)
        })
        .await
        .unwrap_or_else(|e| Discovery {
            devices: Vec::new(),
            warnings: vec![format!("discovery task failed: {e}")],
        })
    }
}

/// Folds a scan into the published inventory. Publishes (waking every `ListAndWatch`) only
/// when something changed, and logs each device whose health changed. Returns whether it
/// published.
pub fn publish(tx: &watch::Sender<Arc<Inventory>>, scan: Discovery) -> bool {
    let current = tx.borrow().clone();
    let next = merge(&current, scan);
    if next == *current {
        return false;
    }
    for device in &next.devices {
        let before = current
            .devices
            .iter()
            .find(|d| d.pci_address == device.pci_address)
            .map(|d| &d.health);
        match (before, &device.health) {
            (Some(b), now) if b == now => {}
            (_, Health::Healthy) => tracing::info!("{}", discovery::describe(device)),
            (_, Health::Unhealthy(_)) => tracing::warn!("{}", discovery::describe(device)),
        }
    }
    tx.send_replace(Arc::new(next));
    true
}

/// Logs scan warnings when they differ from the last ones logged, so a persistent problem
/// is reported once per change rather than once per rescan.
pub fn log_warnings(scan: &Discovery, last: &mut Vec<String>) {
    if scan.warnings != *last {
        for w in &scan.warnings {
            tracing::warn!("{w}");
        }
        last.clone_from(&scan.warnings);
    }
}

/// Rescans every `interval` until `stop`; the first rescan happens one interval from now
/// (the caller has published an initial scan and logged its `warnings`).
pub async fn run(
    scanner: Scanner,
    interval: Duration,
    tx: watch::Sender<Arc<Inventory>>,
    stop: CancellationToken,
    warnings: Vec<String>,
) {
    let mut last_warnings = warnings;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        let scan = scanner.scan().await;
        log_warnings(&scan, &mut last_warnings);
        publish(&tx, scan);
    }
}
