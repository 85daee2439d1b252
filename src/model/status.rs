//! What state a slot is in, as published to the gateway, the API and the CLI.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ProviderKind, Role, SlotName};

/// The slot lifecycle (PRODUCT.md §3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Declared, not loaded.
    #[default]
    Stopped,
    /// Downloading its model (`server.pull_on_load`); no process yet.
    Pulling,
    /// Process started, waiting for its health check.
    Loading,
    /// Serving.
    Ready,
    /// Serving, but unused for `idle_timeout`: an unload candidate.
    Idle,
    /// The provider released its model weights after `sleep_after` without requests and
    /// keeps its process: it holds only its measured sleeping footprint. A request wakes it
    /// (once admission lets its memory back in), much faster than a cold start.
    Sleeping,
    /// Being stopped.
    Unloading,
    /// Exited or failed to load; will be retried after a backoff.
    Failed,
    /// Failed too often in a short window; parked until a load request or a config change.
    CrashLoop,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Stopped => "stopped",
            Phase::Pulling => "pulling",
            Phase::Loading => "loading",
            Phase::Ready => "ready",
            Phase::Idle => "idle",
            Phase::Sleeping => "sleeping",
            Phase::Unloading => "unloading",
            Phase::Failed => "failed",
            Phase::CrashLoop => "crash-loop",
        }
    }

    /// Whether requests can be proxied right now (see also `SlotStatus::accepts_requests`).
    pub fn is_serving(self) -> bool {
        matches!(self, Phase::Ready | Phase::Idle)
    }

    /// Whether a process exists (and holds memory and a port).
    pub fn is_running(self) -> bool {
        matches!(
            self,
            Phase::Pulling
                | Phase::Loading
                | Phase::Ready
                | Phase::Idle
                | Phase::Sleeping
                | Phase::Unloading
        )
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How far a model download is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PullProgress {
    pub downloaded: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
}

/// A slot's observed status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SlotStatus {
    pub name: SlotName,
    pub phase: Phase,
    pub provider: ProviderKind,
    pub role: Role,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Estimated memory footprint in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_estimate: Option<u64>,
    /// Resident memory of the provider process now, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_rss: Option<u64>,
    /// Peak resident memory measured over its loads, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_peak: Option<u64>,
    /// Requests being served right now.
    pub in_flight: u32,
    /// Requests waiting for the slot to serve: while it loads, waits for its turn, or drains.
    #[serde(default)]
    pub waiting: u32,
    /// Milliseconds since the Unix epoch when the oldest waiting request arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_since_unix_ms: Option<u64>,
    /// Set while the slot is drained for this other slot's turn: new requests wait for its next
    /// turn, and it is swapped out once the requests in flight end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draining_for: Option<SlotName>,
    /// Times it was swapped out for another slot's turn since hal0 started.
    #[serde(default)]
    pub swaps: u32,
    /// How long its last residency lasted (ready until stopped), in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_residency_ms: Option<u64>,
    /// Milliseconds since the Unix epoch of the last request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_request_unix_ms: Option<u64>,
    /// Restarts after a crash since hal0 started.
    pub restarts: u32,
    /// Evictions to make room for other slots since hal0 started.
    #[serde(default)]
    pub evictions: u32,
    /// Failed loads, crashes and refusals since hal0 started (monotonic): a request waiting for
    /// a load knows it failed when this grows.
    pub load_failures: u64,
    /// The last load was refused because it could not fit (memory, NPU), not because it failed.
    pub refused: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When a failed slot is retried, in milliseconds from now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_in_ms: Option<u64>,
    /// Download progress while `pulling`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull: Option<PullProgress>,
    /// Observed load durations' latest value in milliseconds (for Retry-After estimates).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_load_ms: Option<u64>,
    /// A launch-relevant change waits for the requests in flight to finish (at most
    /// `restart_drain`): new requests wait for the restarted process.
    #[serde(default)]
    pub restarting: bool,
}

impl SlotStatus {
    /// Whether a new request may be sent to the slot now: it serves, is not being drained
    /// for another slot's turn, and is not waiting to restart for a changed launch setting.
    pub fn accepts_requests(&self) -> bool {
        self.phase.is_serving() && self.draining_for.is_none() && !self.restarting
    }
}

/// How `last_error` starts when a load took longer than `load_timeout`: the gateway answers
/// waiting requests 504 for it (502 for other failed loads).
pub const LOAD_TIMED_OUT: &str = "provider did not become ready within load_timeout";
