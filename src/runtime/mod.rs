//! Runtimes carry out the core's start and stop actions and report what happens. The
//! controller talks to one through the [`Runtime`] trait; the process runtime runs providers as
//! supervised child processes on this machine. (Kubernetes mode does not use this boundary: it
//! has its own reconciler, see docs/architecture.md.)
//!
//! - `launch`   LaunchSpec: what to run for one generation of a slot, and where models live
//! - `logs`     bounded per-slot log buffers
//! - `process`  the process runtime: supervisors, spawn, health, kill tree, pulls, pid files

mod launch;
mod logs;
pub mod process;

use std::future::Future;

use tokio::sync::mpsc;

pub use launch::{LaunchSpec, ModelStore};
pub use logs::LogBuffer;

use crate::core::Event;
use crate::model::SlotName;

/// An event from a runtime about one slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeEvent {
    pub slot: SlotName,
    pub event: Event,
}

/// Where a runtime sends its events; the controller holds the receiving end.
pub type EventSender = mpsc::UnboundedSender<RuntimeEvent>;

/// The channel between a runtime and the controller.
pub fn events() -> (EventSender, mpsc::UnboundedReceiver<RuntimeEvent>) {
    mpsc::unbounded_channel()
}

/// Runs slots. Owned by the controller task.
///
/// `start` and `stop` are commands, not waits: the controller loop must stay responsive while
/// a model downloads or loads, so each call hands the work to the slot's owner and returns at
/// once. What happens is reported on the runtime's [`EventSender`] as `Event`s tagged with the
/// launch's generation (`Pulling`, `Spawned`, `Ready`, `Memory`, `Asleep`, `Failed`,
/// `Stopped`); events about an older generation are ignored by the core. A launch the runtime
/// cannot carry out (a missing model file, say) is reported as `Event::Failed`, never panics.
pub trait Runtime: Send + 'static {
    /// Starts `launch.generation` of the slot, replacing whatever runs for it (without a
    /// failure being reported for the replaced one). The runtime builds the command, and
    /// downloads a missing model first when `launch.models` says so.
    fn start(&mut self, launch: LaunchSpec);

    /// Stops the slot; `Event::Stopped { generation }` follows once it is gone.
    fn stop(&mut self, slot: &SlotName, generation: u64);

    /// Drops what the runtime keeps for a slot that is gone (it is already stopped).
    fn forget(&mut self, slot: &SlotName);

    /// The slot's captured output, if the runtime keeps any.
    fn logs(&self, slot: &SlotName) -> Option<LogBuffer>;

    /// The size in bytes of the model `model` names, if it is known before a load (a local
    /// file); admission estimates memory from it.
    fn model_size(&self, model: &str, store: &ModelStore) -> Option<u64>;

    /// Stops every slot and waits until they are gone.
    fn shutdown(&mut self) -> impl Future<Output = ()> + Send;
}
