//! What the controller knows about one slot, the core's "observed" half of the input.

use crate::model::{LaunchSpec, Phase, SlotName};

use super::Time;

/// One slot's observed state. Owned by the controller, changed only through the pure
/// transitions in `lifecycle`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObservedSlot {
    /// Where the slot is in its lifecycle.
    pub phase: Phase,
    /// The launch spec of the current (or, after an exit, the last) process. Compared with the
    /// desired one to decide on a restart.
    pub launch: Option<LaunchSpec>,
    /// Bumped on every start; runtime events carry it so that a late event about an old
    /// process is ignored.
    pub generation: u64,
    /// Someone wants this slot loaded: autoload, a request, or an explicit load. Cleared by an
    /// unload, an idle unload or an eviction.
    pub want_loaded: bool,
    /// Process id of the current child, if any.
    pub pid: Option<u32>,
    /// Last request start or end, or the moment the slot became ready.
    pub last_activity: Option<Time>,
    /// Last request start or end only (`None`: no request yet), for the status.
    pub last_request: Option<Time>,
    /// Requests being served now; such a slot is never unloaded, evicted or restarted.
    pub in_flight: u32,
    /// Requests waiting for the slot to serve (it is loading, waiting for its turn, or being
    /// drained); they are not in `in_flight` yet.
    pub waiting: u32,
    /// When the oldest of the `waiting` requests arrived.
    pub waiting_since: Option<Time>,
    /// Someone wants this slot loaded only because requests asked for it (not an explicit load,
    /// `autoload` or `pinned`): if they all go away before it serves, the load is abandoned.
    pub on_demand: bool,
    /// When the current process became ready: the start of its residency.
    pub ready_since: Option<Time>,
    /// The slot is being drained so that this other slot can take its turn: new requests wait,
    /// and it is swapped out once the ones in flight are done.
    pub draining: Option<SlotName>,
    /// How long the last residency lasted (ready until stopped).
    pub last_residency: Option<Time>,
    /// Times the slot was swapped out for another slot's turn.
    pub swaps: u32,
    /// When the provider last reported that it fell asleep.
    pub sleeping_since: Option<Time>,
    /// When the slot became idle, to notice activity since.
    pub idle_since: Option<Time>,
    /// When the current load started, to measure load durations.
    pub load_started: Option<Time>,
    /// Duration of the last successful load.
    pub last_load: Option<Time>,
    /// Failure times inside the crash-loop window.
    pub failures: Vec<Time>,
    /// When a failed slot is tried again.
    pub retry_at: Option<Time>,
    /// Failed loads and crashes since hal0 started (monotonic): a request waiting for a load
    /// sees it grow when that load fails.
    pub load_failures: u64,
    /// Times the slot was evicted to make room for another.
    pub evictions: u32,
    /// Restarts after failures since hal0 started.
    pub restarts: u32,
    /// The last failure or refusal, for status and errors.
    pub last_error: Option<String>,
    /// The last load was refused by admission rather than failing.
    pub refused: bool,
    /// Download progress while pulling: (bytes so far, total if known).
    pub pull: Option<(u64, Option<u64>)>,
    /// Resident memory of the running process, as last measured.
    pub memory_rss: Option<u64>,
    /// Highest resident memory measured over every load so far; it replaces the file-size
    /// guess in admission once known.
    pub memory_peak: Option<u64>,
    /// Estimated memory footprint in bytes (declared, else derived from the model file).
    pub memory_estimate: u64,
    /// Since when a launch-relevant change has been waiting for requests in flight to end; new
    /// requests wait for the restarted process meanwhile.
    pub held_since: Option<Time>,
}

impl ObservedSlot {
    /// Whether a request can be sent to the slot now.
    pub fn is_serving(&self) -> bool {
        self.phase.is_serving()
    }

    /// Memory the slot holds now (or is about to hold while loading). A sleeping provider
    /// holds what was measured while it sleeps.
    pub fn memory_held(&self) -> u64 {
        match self.phase {
            Phase::Sleeping => self.memory_rss.unwrap_or(self.memory_estimate),
            p if p.is_running() => self.memory_estimate,
            _ => 0,
        }
    }
}
