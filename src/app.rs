//! Composition root for `hal0 serve`: the file source, the controller with the process
//! runtime, and the gateway, joined under one shutdown signal.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use futures_util::future::BoxFuture;
use tokio::sync::watch;

use crate::api::{self, ApiState, SlotAdmin};
use crate::config::store::ConfigStore;
use crate::controller::{ControlHandle, Controller, SlotCounter};
use crate::core::RestartPolicy;
use crate::dashboard;
use crate::gateway::{self, GatewayState, KeySet, RequestCounter, SlotControl};
use crate::model::{DesiredState, LoadError, ServerSettings, SlotName, Target};
use crate::providers::expand_home;
use crate::runtime::process::{ProcessRuntime, RuntimeConfig, reap_orphans};
use crate::source::FileSource;

impl SlotControl for ControlHandle {
    fn ensure_ready(&self, slot: &SlotName) -> BoxFuture<'static, Result<Target, LoadError>> {
        Box::pin(ControlHandle::ensure_ready(self, slot))
    }

    fn request_started(&self, slot: &SlotName) {
        ControlHandle::request_started(self, slot);
    }

    fn request_finished(&self, slot: &SlotName) {
        ControlHandle::request_finished(self, slot);
    }

    fn request_waiting(&self, slot: &SlotName, since: tokio::time::Instant) {
        ControlHandle::request_waiting(self, slot, since);
    }

    fn request_done_waiting(&self, slot: &SlotName, since: tokio::time::Instant) {
        ControlHandle::request_done_waiting(self, slot, since);
    }

    fn counter(&self, slot: &SlotName) -> Option<Arc<dyn RequestCounter>> {
        Some(ControlHandle::counter(self, slot))
    }
}

impl RequestCounter for SlotCounter {
    fn started(&self) {
        SlotCounter::started(self);
    }

    fn finished(&self) {
        SlotCounter::finished(self);
    }
}

impl SlotAdmin for ControlHandle {
    fn load(&self, slot: &SlotName) {
        ControlHandle::load(self, slot);
    }

    fn unload(&self, slot: &SlotName) {
        ControlHandle::unload(self, slot);
    }

    fn logs(&self, slot: &SlotName, n: usize) -> Option<Vec<String>> {
        ControlHandle::logs(self, slot).map(|l| l.tail(n))
    }
}

/// Publishes the accepted `/v1` keys, re-read whenever the config changes (the variables and
/// the keys file are read then). Problems are logged by variable or file name, never a key.
fn follow_keys(mut desired: watch::Receiver<Arc<DesiredState>>) -> watch::Receiver<Arc<KeySet>> {
    let load = |d: &DesiredState| {
        let file = d.server.api_keys_file.as_deref().map(expand_home);
        let (keys, warnings) = KeySet::load(&d.server.api_keys, file.as_deref());
        for w in warnings {
            tracing::warn!("{w}");
        }
        Arc::new(keys)
    };
    let first = load(&desired.borrow_and_update());
    let (tx, rx) = watch::channel(first);
    tokio::spawn(async move {
        while desired.changed().await.is_ok() {
            let keys = load(&desired.borrow_and_update());
            tx.send_if_modified(|cur| {
                if *cur == keys {
                    return false;
                }
                *cur = keys;
                true
            });
        }
    });
    rx
}

/// Where pid files go: `server.state_dir`, else `$XDG_RUNTIME_DIR/hal0`, else
/// `~/.local/state/hal0`.
fn state_dir(server: &ServerSettings) -> PathBuf {
    if let Some(d) = &server.state_dir {
        return expand_home(d);
    }
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR") {
        return PathBuf::from(d).join("hal0");
    }
    expand_home("~/.local/state/hal0")
}

/// `hal0 serve`: runs until SIGINT or SIGTERM.
pub async fn serve(config: crate::config::Located) -> anyhow::Result<()> {
    if !config.path.exists() {
        anyhow::bail!("{}", crate::config::cli::missing_hint(&config));
    }
    tracing::info!("config: {config}");
    let config = config.absolute();
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        let _ = tx.send(true);
    });
    run(&config, rx).await
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

async fn until_true(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

/// Runs hal0 on `config` until `shutdown` becomes true.
pub async fn run(config: &Path, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let removed = crate::config::replace::remove_leftovers(config);
    if removed > 0 {
        tracing::info!("removed {removed} temp file(s) left next to the config by an earlier run");
    }
    let (source, desired_rx, reports) = FileSource::open(config)?;
    let publisher = source.publisher();
    let server = desired_rx.borrow().server.clone();

    let state_dir = state_dir(&server);
    for pid in reap_orphans(&state_dir) {
        tracing::warn!(pid, "killed a provider left behind by an earlier hal0");
    }
    let runtime = RuntimeConfig {
        load_timeout: server.load_timeout.as_duration(),
        stop_grace: server.stop_grace.as_duration(),
        shim: std::env::current_exe().ok(),
        state_dir: Some(state_dir),
        ..RuntimeConfig::default()
    };
    let desired_for_api = desired_rx.clone();
    let keys = follow_keys(desired_rx.clone());
    let (events_tx, events_rx) = crate::runtime::events();
    let (controller, published) = Controller::new(
        desired_rx,
        ProcessRuntime::new(runtime, events_tx),
        events_rx,
        RestartPolicy::default(),
    );

    let listener = tokio::net::TcpListener::bind(&server.listen)
        .await
        .with_context(|| format!("cannot listen on server.listen = {}", server.listen))?;
    tracing::info!("gateway listening on http://{}", listener.local_addr()?);

    let source_task = tokio::spawn(source.run(until_true(shutdown.clone())));
    // The slots stop only once the gateway has drained: requests in flight finish first.
    let (stop_slots, slots_stop) = watch::channel(false);
    let controller_task = tokio::spawn(controller.run(until_true(slots_stop)));
    let control: Arc<dyn SlotControl> = Arc::new(published.handle.clone());
    let api = ApiState {
        statuses: published.statuses.clone(),
        desired: desired_for_api,
        reports,
        store: Arc::new(ConfigStore::new(config)),
        publisher,
        applied: published.applied.clone(),
        admin: Arc::new(published.handle.clone()),
        listen: listener.local_addr()?,
        shutdown: shutdown.clone(),
        pulls: api::pulls::Pulls::default(),
    };
    let (cut_tx, cut_rx) = watch::channel(false);
    let state = GatewayState::new(
        published.routes,
        published.statuses.clone(),
        control,
        server.load_timeout.as_duration(),
    )
    .with_limits(
        usize::try_from(server.max_body.0).unwrap_or(usize::MAX),
        server.max_queue,
    )
    .with_max_wait(server.max_wait.as_duration())
    .with_keys(keys)
    .with_cut(cut_rx);
    tokio::spawn(state.metrics.clone().follow_statuses(published.statuses));
    let v1 = state.clone();
    let router = gateway::router(state)
        .merge(api::router(api))
        .merge(dashboard::router());
    let limits = gateway::listen::Limits {
        header_timeout: server.header_timeout.as_duration(),
        body_timeout: server.body_timeout.as_duration(),
        idle_timeout: server.client_idle_timeout.as_duration(),
        max_connections: gateway::listen::connection_cap(
            usize::try_from(server.max_connections).unwrap_or(usize::MAX),
        ),
        drain_timeout: server.drain_timeout.as_duration(),
        workers: server
            .workers
            .map_or_else(gateway::listen::default_workers, |n| n as usize),
    };
    // On shutdown: stop accepting, drain (bounded), cut what is left; then stop the slots.
    let gateway_result = gateway::listen::serve(
        listener,
        gateway::listen::App::new(router, v1),
        until_true(shutdown.clone()),
        limits,
        cut_tx,
    )
    .await;
    let _ = stop_slots.send(true);

    // Wait for the slots to stop.
    let _ = controller_task.await;
    let _ = source_task.await;
    gateway_result.context("gateway failed")?;
    Ok(())
}
