//! The process runtime: one supervisor task per slot owns that slot's child process.
//!
//! - `supervisor` the per-slot task: start, stop, wait, health; a handle to talk to it
//! - `spawn`      starting a child in its own process group, with its logs pumped
//! - `kill`       SIGTERM → grace → SIGKILL of a whole process group
//! - `health`     HTTP readiness probes; llama-server's sleep state (`/props`)
//! - `answer`     the answer check before ready (a slot's `probe`)
//! - `memory`   measured resident memory (now and peak) of a provider
//! - `prepare`    LaunchSpec → command, readiness, pull-before-start (model refs resolved here)
//! - `shim`       `hal0 __exec-child`: makes a child die with hal0 (PR_SET_PDEATHSIG), then execs
//! - `pulling`  downloading a missing model before the start (server.pull_on_load)
//! - `pidfiles`   pid files per slot, to kill leftovers of a hal0 that did not exit cleanly

mod answer;
mod health;
mod kill;
mod memory;
mod pidfiles;
mod prepare;
mod pulling;
mod shim;
mod spawn;
mod supervisor;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use answer::AnswerCheck;

/// When a started provider counts as ready: its health path answers 200, then (if set) the
/// answer check passes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    pub health_path: String,
    pub answer: Option<AnswerCheck>,
    /// The provider may sleep (llama.cpp with `--sleep-idle-seconds`): while ready, ask it
    /// whether it sleeps at every health check.
    pub sleeps: bool,
}

pub use pidfiles::reap_orphans;
pub use pulling::PullJob;
pub use shim::{SHIM_SUBCOMMAND, exec_child};
pub use supervisor::SupervisorHandle;

use super::{EventSender, LaunchSpec, LogBuffer, ModelStore, Runtime, RuntimeEvent};
use crate::core::Event;
use crate::model::SlotName;

/// Settings shared by every supervisor.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// How long a provider may take to pass its health check.
    pub load_timeout: Duration,
    /// Time between SIGTERM and SIGKILL.
    pub stop_grace: Duration,
    /// The hal0 binary, used as `hal0 __exec-child` so children die with hal0. `None` starts
    /// providers directly (they then only die with hal0 when hal0 stops them).
    pub shim: Option<PathBuf>,
    /// Where pid files go; `None` keeps none.
    pub state_dir: Option<PathBuf>,
    /// Interval of health probes while ready.
    pub health_interval: Duration,
    /// Consecutive failed probes of a ready slot before it is restarted.
    pub health_failures: u32,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            load_timeout: Duration::from_secs(300),
            stop_grace: Duration::from_secs(10),
            shim: None,
            state_dir: None,
            health_interval: Duration::from_secs(2),
            health_failures: 3,
        }
    }
}

/// All supervisors. Owned by the controller.
pub struct ProcessRuntime {
    config: Arc<RuntimeConfig>,
    events: EventSender,
    supervisors: HashMap<SlotName, SupervisorHandle>,
}

impl ProcessRuntime {
    pub fn new(config: RuntimeConfig, events: EventSender) -> Self {
        ProcessRuntime {
            config: Arc::new(config),
            events,
            supervisors: HashMap::new(),
        }
    }

    fn supervisor(&mut self, slot: &SlotName) -> &SupervisorHandle {
        self.supervisors.entry(slot.clone()).or_insert_with(|| {
            SupervisorHandle::spawn(slot.clone(), self.config.clone(), self.events.clone())
        })
    }
}

impl Runtime for ProcessRuntime {
    fn start(&mut self, launch: LaunchSpec) {
        let slot = launch.slot().clone();
        let generation = launch.generation;
        match prepare::prepare(&launch) {
            Ok(p) => {
                self.supervisor(&slot)
                    .start(generation, p.command, launch.port(), p.ready, p.pull)
            }
            Err(e) => {
                let _ = self.events.send(RuntimeEvent {
                    slot,
                    event: Event::Failed {
                        generation,
                        message: e.to_string(),
                    },
                });
            }
        }
    }

    fn stop(&mut self, slot: &SlotName, generation: u64) {
        self.supervisor(slot).stop(generation);
    }

    fn forget(&mut self, slot: &SlotName) {
        if let Some(h) = self.supervisors.remove(slot) {
            h.shutdown_detached();
        }
    }

    fn logs(&self, slot: &SlotName) -> Option<LogBuffer> {
        self.supervisors.get(slot).map(|h| h.logs().clone())
    }

    fn model_size(&self, model: &str, store: &ModelStore) -> Option<u64> {
        prepare::model_size(model, store)
    }

    async fn shutdown(&mut self) {
        let handles: Vec<SupervisorHandle> = self.supervisors.drain().map(|(_, h)| h).collect();
        futures_util::future::join_all(handles.into_iter().map(SupervisorHandle::shutdown)).await;
    }
}
