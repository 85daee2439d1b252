//! Runtimes carry out the core's actions and report what happens. The process runtime runs
//! providers as supervised child processes on this machine.

pub mod process;

use crate::core::Event;
use crate::model::SlotName;

/// An event from a runtime about one slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeEvent {
    pub slot: SlotName,
    pub event: Event,
}
