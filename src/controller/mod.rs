//! The controller loop: on any trigger (desired state changed, a runtime event, a request
//! waking a slot, activity, a timer) it takes a snapshot, asks the core for a plan, hands the
//! actions to the process runtime, and publishes statuses and the routing table.
//!
//! - `activity`  requests in flight and last request time per slot, fed by the gateway

mod activity;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

pub use activity::{Activity, ActivityTracker};

use crate::core::{self, Action, Event, ObservedSlot, RestartPolicy, StatusMap, Time};
use crate::model::{DesiredState, LaunchSpec, Phase, Role, RoutingTable, SlotName, SlotSpec};
use crate::providers::{self, ModelRef, expand_home};
use crate::runtime::RuntimeEvent;
use crate::runtime::process::{
    AnswerCheck, LogBuffer, ProcessRuntime, PullJob, Readiness, RuntimeConfig,
};

/// What the rest of hal0 uses to talk to the controller. Cheap to clone.
#[derive(Clone)]
pub struct ControlHandle {
    requests: mpsc::UnboundedSender<(SlotName, Event)>,
    activity: Arc<ActivityTracker>,
    logs: watch::Receiver<Arc<BTreeMap<SlotName, LogBuffer>>>,
}

impl ControlHandle {
    /// A request wants the slot loaded (does not lift a crash-loop).
    pub fn wake(&self, slot: &SlotName) {
        let _ = self.requests.send((slot.clone(), Event::Wake));
    }

    /// An explicit load: also lifts a crash-loop.
    pub fn load(&self, slot: &SlotName) {
        let _ = self.requests.send((slot.clone(), Event::Load));
    }

    pub fn unload(&self, slot: &SlotName) {
        let _ = self.requests.send((slot.clone(), Event::Unload));
    }

    pub fn request_started(&self, slot: &SlotName) {
        self.activity.started(slot);
    }

    pub fn request_finished(&self, slot: &SlotName) {
        self.activity.finished(slot);
    }

    /// A request started waiting for the slot to serve.
    pub fn request_waiting(&self, slot: &SlotName, since: Instant) {
        self.activity.waiting(slot, since);
    }

    /// That request stopped waiting.
    pub fn request_done_waiting(&self, slot: &SlotName, since: Instant) {
        self.activity.done_waiting(slot, since);
    }

    /// The slot's captured provider output.
    pub fn logs(&self, slot: &SlotName) -> Option<LogBuffer> {
        self.logs.borrow().get(slot).cloned()
    }
}

/// The controller's outputs.
pub struct Published {
    pub handle: ControlHandle,
    pub routes: watch::Receiver<Arc<RoutingTable>>,
    pub statuses: watch::Receiver<Arc<StatusMap>>,
    /// The desired state the controller has taken in (applied, or refused with an error), with
    /// the statuses and routes above already published for it: a writer that published a
    /// desired state waits for this to be the same `Arc` to know the change is live.
    pub applied: watch::Receiver<Arc<DesiredState>>,
}

pub struct Controller {
    desired_rx: watch::Receiver<Arc<DesiredState>>,
    desired: Arc<DesiredState>,
    observed: BTreeMap<SlotName, ObservedSlot>,
    ports: BTreeMap<SlotName, u16>,
    runtime: ProcessRuntime,
    events: mpsc::UnboundedReceiver<RuntimeEvent>,
    requests: mpsc::UnboundedReceiver<(SlotName, Event)>,
    activity: Arc<ActivityTracker>,
    policy: RestartPolicy,
    /// `Time` zero.
    epoch: Instant,
    epoch_unix_ms: u64,
    wake_at: Option<Time>,
    /// Phases as last logged, to log each transition once.
    logged_phases: BTreeMap<SlotName, Phase>,
    routes_tx: watch::Sender<Arc<RoutingTable>>,
    statuses_tx: watch::Sender<Arc<StatusMap>>,
    logs_tx: watch::Sender<Arc<BTreeMap<SlotName, LogBuffer>>>,
    /// The last desired state taken from `desired_rx`, published once its round is done.
    taken: Arc<DesiredState>,
    applied_tx: watch::Sender<Arc<DesiredState>>,
}

impl Controller {
    /// Builds the controller around a desired-state channel. The runtime settings come from the
    /// caller (the server section's timeouts, the shim binary, the state dir).
    pub fn new(
        desired_rx: watch::Receiver<Arc<DesiredState>>,
        runtime: RuntimeConfig,
        policy: RestartPolicy,
    ) -> (Self, Published) {
        let (events_tx, events) = mpsc::unbounded_channel();
        let (requests_tx, requests) = mpsc::unbounded_channel();
        let (routes_tx, routes) = watch::channel(Arc::new(RoutingTable::default()));
        let (statuses_tx, statuses) = watch::channel(Arc::new(StatusMap::new()));
        let (logs_tx, logs) = watch::channel(Arc::new(BTreeMap::new()));
        let taken = Arc::new(DesiredState::default());
        let (applied_tx, applied) = watch::channel(taken.clone());
        let activity = Arc::new(ActivityTracker::default());
        let epoch_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let controller = Controller {
            desired_rx,
            desired: Arc::new(DesiredState::default()),
            observed: BTreeMap::new(),
            ports: BTreeMap::new(),
            runtime: ProcessRuntime::new(runtime, events_tx),
            events,
            requests,
            activity: activity.clone(),
            policy,
            epoch: Instant::now(),
            epoch_unix_ms,
            wake_at: None,
            logged_phases: BTreeMap::new(),
            routes_tx,
            statuses_tx,
            logs_tx,
            taken,
            applied_tx,
        };
        let handle = ControlHandle {
            requests: requests_tx,
            activity,
            logs,
        };
        (
            controller,
            Published {
                handle,
                routes,
                statuses,
                applied,
            },
        )
    }

    fn now(&self) -> Time {
        self.epoch.elapsed()
    }

    /// Runs until `shutdown` resolves, then stops every slot.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        self.desired_rx.mark_changed();
        let mut source_open = true;
        loop {
            let sleep_for = self.wake_at.map(|t| t.saturating_sub(self.now()));
            tokio::select! {
                _ = &mut shutdown => break,
                changed = self.desired_rx.changed(), if source_open => {
                    if changed.is_ok() {
                        let next = self.desired_rx.borrow_and_update().clone();
                        self.taken = next.clone();
                        self.apply_desired(next);
                    } else {
                        // The source is gone; keep running what we have until shutdown.
                        source_open = false;
                    }
                }
                Some(ev) = self.events.recv() => self.on_runtime_event(ev),
                Some((slot, ev)) = self.requests.recv() => self.on_request(slot, ev),
                _ = self.activity.changed() => {}
                _ = sleep_or_forever(sleep_for) => {}
            }
            while let Ok(ev) = self.events.try_recv() {
                self.on_runtime_event(ev);
            }
            while let Ok((slot, ev)) = self.requests.try_recv() {
                self.on_request(slot, ev);
            }
            self.reconcile();
            let taken = &self.taken;
            self.applied_tx.send_if_modified(|cur| {
                if Arc::ptr_eq(cur, taken) {
                    return false;
                }
                *cur = taken.clone();
                true
            });
        }
        tracing::info!("stopping every slot");
        self.runtime.shutdown().await;
        for obs in self.observed.values_mut() {
            if obs.phase.is_running() {
                obs.phase = Phase::Stopped;
                obs.pid = None;
            }
        }
        self.publish();
    }

    fn apply_desired(&mut self, next: Arc<DesiredState>) {
        let ports = match core::assign_ports(&next, &self.ports) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!("config not applied: {e}");
                return;
            }
        };
        let models_dir = expand_home(&next.server.models_dir);
        for (name, spec) in &next.slots {
            if !spec.provider.runs_process() {
                continue;
            }
            let obs = self.observed.entry(name.clone()).or_default();
            core::on_spec_change(obs, self.desired.slots.get(name), spec);
            obs.memory_estimate = match (spec.memory, obs.memory_peak) {
                (None, Some(peak)) => peak,
                _ => estimate_memory(spec, &models_dir),
            };
        }
        self.ports = ports;
        self.desired = next;
        tracing::info!(slots = self.desired.slots.len(), "desired state applied");
    }

    fn on_runtime_event(&mut self, ev: RuntimeEvent) {
        let now = self.now();
        if let Some(obs) = self.observed.get_mut(&ev.slot) {
            core::on_event(obs, ev.event, now, &self.policy);
            // The measured peak of earlier loads replaces the file-size guess, unless the slot
            // declares its memory.
            let declared = self
                .desired
                .slots
                .get(&ev.slot)
                .is_some_and(|s| s.memory.is_some());
            if let (false, Some(peak)) = (declared, obs.memory_peak) {
                obs.memory_estimate = peak;
            }
        }
    }

    fn on_request(&mut self, slot: SlotName, ev: Event) {
        let now = self.now();
        let runs = self
            .desired
            .slots
            .get(&slot)
            .is_some_and(|s| s.provider.runs_process());
        if let (true, Some(obs)) = (runs, self.observed.get_mut(&slot)) {
            core::on_event(obs, ev, now, &self.policy);
        }
    }

    fn sync_activity(&mut self) {
        for (slot, a) in self.activity.snapshot() {
            if let Some(obs) = self.observed.get_mut(&slot) {
                obs.in_flight = a.in_flight;
                obs.waiting = u32::try_from(a.waiting.len()).unwrap_or(u32::MAX);
                obs.waiting_since = a
                    .waiting
                    .iter()
                    .min()
                    .map(|t| t.saturating_duration_since(self.epoch));
                let last = a.last.saturating_duration_since(self.epoch);
                obs.last_activity = Some(obs.last_activity.map_or(last, |l| l.max(last)));
                obs.last_request = Some(obs.last_request.map_or(last, |l| l.max(last)));
            }
        }
    }

    fn reconcile(&mut self) {
        // Acting changes what is observed (a stop frees memory for a start in the same round,
        // idle may lead to an unload); a few rounds settle it.
        for _ in 0..4 {
            self.sync_activity();
            let now = self.now();
            let plan = core::plan(&self.desired, &self.observed, &self.ports, now);
            self.wake_at = plan.wake_at;
            if plan.actions.is_empty() {
                break;
            }
            let drains = plan
                .actions
                .iter()
                .any(|a| matches!(a, Action::Drain { .. }));
            for action in plan.actions {
                self.act(action, now);
            }
            if drains {
                // A drained slot may only be swapped out once the gateway has seen the drain:
                // a request that started before it is then counted in flight by the next
                // round's activity snapshot, and one that starts after it waits.
                self.publish();
            }
        }
        for (name, obs) in &self.observed {
            let old = self.logged_phases.get(name).copied().unwrap_or_default();
            if old != obs.phase {
                match &obs.last_error {
                    Some(err) if matches!(obs.phase, Phase::Failed | Phase::CrashLoop) => {
                        tracing::warn!(slot = %name, "{old} → {}: {err}", obs.phase)
                    }
                    _ => tracing::info!(slot = %name, "{old} → {}", obs.phase),
                }
            }
        }
        // Requests on a ready slot with nothing waiting on them need no replanning; watch the
        // rest (idle slots, and slots with requests in flight, whose end may unblock a restart,
        // an unload or a removal).
        let observed = &self.observed;
        self.activity.watch_only(|slot| {
            observed
                .get(slot)
                .is_none_or(|o| o.phase != Phase::Ready || o.in_flight > 0 || o.draining.is_some())
        });
        self.logged_phases = self
            .observed
            .iter()
            .map(|(k, v)| (k.clone(), v.phase))
            .collect();
        self.publish();
    }

    fn act(&mut self, action: Action, now: Time) {
        let slot = action.slot().clone();
        if let Action::Forget { .. } = action {
            self.observed.remove(&slot);
            self.runtime.forget(&slot);
            return;
        }
        let Some(obs) = self.observed.get_mut(&slot) else {
            return;
        };
        core::on_action(obs, &action, now);
        let generation = obs.generation;
        match action {
            Action::Start { launch, .. } | Action::Restart { launch, .. } => {
                self.start(&slot, generation, &launch)
            }
            Action::Stop { reason, .. } => {
                tracing::info!(slot = %slot, ?reason, "unloading");
                self.runtime.stop(&slot, generation);
            }
            Action::Refuse { message, .. } => tracing::warn!(slot = %slot, "{message}"),
            Action::Drain { for_slot, .. } => {
                tracing::info!(slot = %slot, "draining: its turn ends for slot {for_slot}")
            }
            Action::Undrain { .. } => {
                tracing::info!(slot = %slot, "serving again: no drain needed")
            }
            Action::Wake { .. } => tracing::info!(slot = %slot, "waking: requests wait for it"),
            Action::Abandon { .. } => {
                tracing::info!(slot = %slot, "no request waits for it any more; not loading it")
            }
            Action::HoldRequests { hold: true, .. } => tracing::info!(
                slot = %slot,
                "a launch setting changed: new requests wait for the restart while those in flight finish"
            ),
            Action::MarkIdle { .. }
            | Action::MarkReady { .. }
            | Action::Forget { .. }
            | Action::HoldRequests { .. } => {}
        }
    }

    fn start(&mut self, slot: &SlotName, generation: u64, launch: &LaunchSpec) {
        let server = &self.desired.server;
        let models_dir = expand_home(&server.models_dir);
        let health = providers::health_path(launch.provider);
        // A missing hf: model is downloaded first when pull_on_load is on; the command is then
        // built for the file that will be there.
        let missing_hf = launch.model.as_deref().filter(|m| {
            matches!(ModelRef::parse(m), Ok(r @ ModelRef::Hf { .. }) if r.local_path(&models_dir).is_some_and(|p| !p.is_file()))
        });
        let (command, pull) = match missing_hf {
            Some(model) if server.pull_on_load => {
                let command = providers::build_command_with(launch, "127.0.0.1", |r, _| {
                    Ok(r.local_path(&models_dir))
                });
                let endpoint = server
                    .hf_endpoint
                    .clone()
                    .unwrap_or_else(crate::pull::default_endpoint);
                let job = PullJob {
                    model: model.to_string(),
                    models_dir: models_dir.clone(),
                    endpoint,
                };
                (command, Some(job))
            }
            _ => (providers::build_command(launch, &models_dir), None),
        };
        // The answer check (`probe`) is for chat slots; validation refuses it elsewhere.
        let answer = self
            .desired
            .slots
            .get(slot)
            .filter(|s| s.effective_role(slot.builtin_role()) == Role::Chat)
            .and_then(|s| {
                s.probe.clone().map(|probe| AnswerCheck {
                    probe,
                    model: s.model_id(),
                })
            });
        let ready = Readiness {
            health_path: health.to_string(),
            answer,
            sleeps: launch.provider == crate::model::ProviderKind::LlamaCpp
                && launch.sleep_after_secs.is_some(),
        };
        self.runtime
            .start(slot, generation, command, ready, launch.port, pull);
    }

    fn publish(&mut self) {
        let now = self.now();
        let statuses = core::statuses(
            &self.desired,
            &self.observed,
            &self.ports,
            now,
            self.epoch_unix_ms,
        );
        self.statuses_tx.send_if_modified(|cur| {
            if **cur == statuses {
                return false;
            }
            *cur = Arc::new(statuses);
            true
        });
        let table = core::routing_table(&self.desired, &self.observed, &self.ports);
        self.routes_tx.send_if_modified(|cur| {
            if **cur == table {
                return false;
            }
            *cur = Arc::new(table);
            true
        });
        let logs: BTreeMap<SlotName, LogBuffer> = self
            .observed
            .keys()
            .filter_map(|s| self.runtime.logs(s).map(|l| (s.clone(), l)))
            .collect();
        if logs.len() != self.logs_tx.borrow().len() {
            let _ = self.logs_tx.send(Arc::new(logs));
        }
    }
}

async fn sleep_or_forever(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// A slot's memory estimate: declared, else the model file's size × 1.2 (weights plus context
/// and compute buffers), else 0 (unknown: admission cannot account for it).
pub fn estimate_memory(spec: &SlotSpec, models_dir: &std::path::Path) -> u64 {
    if let Some(m) = spec.memory {
        return m.0;
    }
    let path: Option<PathBuf> = spec
        .model
        .as_deref()
        .and_then(|m| ModelRef::parse(m).ok())
        .and_then(|r| r.local_path(models_dir));
    path.and_then(|p| std::fs::metadata(p).ok())
        .map_or(0, |m| m.len().saturating_mul(6) / 5)
}
