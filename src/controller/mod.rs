//! The controller loop: on any trigger (desired state changed, a runtime event, a request
//! waking a slot or waiting for it, activity, a timer) it takes a snapshot, asks the core for a
//! plan, hands the actions to the runtime, publishes statuses and the routing table, and
//! answers the requests waiting for a slot. A round that acted is followed by another at once,
//! until the plan is empty.
//!
//! - `activity`  requests in flight and last request time per slot, fed by the gateway
//! - `handle`    ControlHandle: ensure_ready, load, unload, activity, logs
//! - `waiters`   requests waiting for a slot to serve, answered after each round

mod activity;
mod handle;
mod waiters;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

pub use activity::{Activity, ActivityTracker, SlotCounter};
pub use handle::{ControlHandle, ReadyReply, Request};

use crate::core::{self, Action, Event, ObservedSlot, RestartPolicy, StatusMap, Time};
use crate::model::{DesiredState, LaunchSpec, Phase, Role, RoutingTable, SlotName, SlotSpec};
use crate::runtime::{self, LogBuffer, ModelStore, Runtime, RuntimeEvent};
use waiters::Waiters;

/// Rounds in a row, without a new trigger, after which a plan that still acts is taken for a
/// bug in the planner: logged, and the controller waits for the next trigger.
const MAX_ROUNDS_IN_A_ROW: u32 = 32;

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

pub struct Controller<R: Runtime> {
    desired_rx: watch::Receiver<Arc<DesiredState>>,
    desired: Arc<DesiredState>,
    observed: BTreeMap<SlotName, ObservedSlot>,
    ports: BTreeMap<SlotName, u16>,
    runtime: R,
    events: mpsc::UnboundedReceiver<RuntimeEvent>,
    requests: mpsc::UnboundedReceiver<Request>,
    /// Requests waiting for a slot to serve, answered after each round.
    waiters: Waiters,
    /// The last round acted: what is observed changed, so plan again before waiting.
    replan: bool,
    /// Rounds in a row that acted (see `MAX_ROUNDS_IN_A_ROW`).
    rounds_in_a_row: u32,
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

impl<R: Runtime> Controller<R> {
    /// Builds the controller around a desired-state channel and a runtime that reports on
    /// `events` (the other end of the runtime's [`runtime::EventSender`]).
    pub fn new(
        desired_rx: watch::Receiver<Arc<DesiredState>>,
        runtime: R,
        events: mpsc::UnboundedReceiver<RuntimeEvent>,
        policy: RestartPolicy,
    ) -> (Self, Published) {
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
            runtime,
            events,
            requests,
            waiters: Waiters::default(),
            replan: false,
            rounds_in_a_row: 0,
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
            // A round that acted changed what is observed (a stop frees memory, an idle mark
            // may lead to an unload, a drain waits for the gateway to see it): plan again at
            // once, after taking in whatever arrived meanwhile, until the plan is empty.
            let sleep_for = if self.replan {
                Some(Duration::ZERO)
            } else {
                self.wake_at.map(|t| t.saturating_sub(self.now()))
            };
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
                Some(req) = self.requests.recv() => self.on_request(req),
                _ = self.activity.changed() => {}
                _ = sleep_or_forever(sleep_for) => {}
            }
            while let Ok(ev) = self.events.try_recv() {
                self.on_runtime_event(ev);
            }
            while let Ok(req) = self.requests.try_recv() {
                self.on_request(req);
            }
            self.round();
            if self.replan {
                continue;
            }
            // Settled: the statuses and routes for the desired state taken in are published.
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
        self.waiters.shut_down();
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
        let store = ModelStore::of(&next.server);
        for (name, spec) in &next.slots {
            if !spec.provider.runs_process() {
                continue;
            }
            let peak = self.observed.get(name).and_then(|o| o.memory_peak);
            let estimate = match (spec.memory, peak) {
                (None, Some(peak)) => peak,
                _ => self.estimate_memory(spec, &store),
            };
            let obs = self.observed.entry(name.clone()).or_default();
            core::on_spec_change(obs, self.desired.slots.get(name), spec);
            obs.memory_estimate = estimate;
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

    fn on_request(&mut self, req: Request) {
        match req {
            Request::Event(slot, ev) => self.on_slot_request(slot, ev),
            Request::EnsureReady(slot, reply) => {
                let statuses = self.statuses_tx.borrow().clone();
                let routes = self.routes_tx.borrow().clone();
                self.waiters.add(slot.clone(), reply, &statuses, &routes);
                self.on_slot_request(slot, Event::Wake);
            }
        }
    }

    fn on_slot_request(&mut self, slot: SlotName, ev: Event) {
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
        let activity = self.activity.snapshot();
        let waiters = self.waiters.demand();
        for (slot, obs) in &mut self.observed {
            let a = activity.get(slot);
            let w = waiters.get(slot);
            if let Some(a) = a {
                obs.in_flight = a.in_flight;
                let last = a.last.saturating_duration_since(self.epoch);
                obs.last_activity = Some(obs.last_activity.map_or(last, |l| l.max(last)));
                obs.last_request = Some(obs.last_request.map_or(last, |l| l.max(last)));
            }
            let queued = a.map_or(0, |a| u32::try_from(a.waiting.len()).unwrap_or(u32::MAX));
            obs.waiting = queued.max(w.map_or(0, |w| w.0));
            obs.waiting_since = a
                .and_then(|a| a.waiting.iter().min().copied())
                .into_iter()
                .chain(w.map(|w| w.1))
                .min()
                .map(|t| t.saturating_duration_since(self.epoch));
        }
    }

    /// One round: snapshot activity, plan, act, publish, answer the waiters.
    fn round(&mut self) {
        // A slot requests wait for is wanted, also after a swap or an unload unwanted it.
        for slot in self.waiters.wanted() {
            self.on_slot_request(slot, Event::Wake);
        }
        self.sync_activity();
        let now = self.now();
        let plan = core::plan(&self.desired, &self.observed, &self.ports, now);
        self.wake_at = plan.wake_at;
        self.replan = !plan.actions.is_empty();
        self.rounds_in_a_row = if self.replan {
            self.rounds_in_a_row + 1
        } else {
            0
        };
        if self.rounds_in_a_row > MAX_ROUNDS_IN_A_ROW {
            tracing::error!(
                actions = ?plan.actions,
                "the plan still acts after {MAX_ROUNDS_IN_A_ROW} rounds in a row (a planner bug); waiting for the next trigger"
            );
            self.replan = false;
            self.rounds_in_a_row = 0;
        }
        for action in plan.actions {
            self.act(action, now);
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
        let (desired, observed) = (&self.desired, &self.observed);
        self.activity
            .watch_only(|slot| core::watches_activity(desired.slots.get(slot), observed.get(slot)));
        self.logged_phases = self
            .observed
            .iter()
            .map(|(k, v)| (k.clone(), v.phase))
            .collect();
        // Published before the next round: a drained slot is swapped out only once the
        // gateway has seen the drain (a request that started before it is then counted in
        // flight by the next round's activity snapshot, and one that starts after it waits).
        self.publish();
        let statuses = self.statuses_tx.borrow().clone();
        let routes = self.routes_tx.borrow().clone();
        self.waiters.resolve(&statuses, &routes);
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
                self.start(&slot, generation, launch)
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

    fn start(&mut self, slot: &SlotName, generation: u64, launch: LaunchSpec) {
        // The answer check (`probe`) is for chat slots; validation refuses it elsewhere.
        let probe = self
            .desired
            .slots
            .get(slot)
            .filter(|s| s.effective_role(slot.builtin_role()) == Role::Chat)
            .and_then(|s| s.probe.clone().map(|probe| (probe, s.model_id())));
        let memory = self.observed.get(slot).map_or(0, |o| o.memory_estimate);
        self.runtime.start(runtime::LaunchSpec {
            generation,
            process: launch,
            models: ModelStore::of(&self.desired.server),
            probe,
            memory,
        });
    }

    /// A slot's memory estimate: declared, else the model file's size × 1.2 (weights plus
    /// context and compute buffers), else 0 (unknown: admission cannot account for it).
    fn estimate_memory(&self, spec: &SlotSpec, store: &ModelStore) -> u64 {
        if let Some(m) = spec.memory {
            return m.0;
        }
        spec.model
            .as_deref()
            .and_then(|m| self.runtime.model_size(m, store))
            .map_or(0, |n| n.saturating_mul(6) / 5)
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
