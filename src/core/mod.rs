//! The pure core: decides what should happen to every slot. It performs no I/O, spawns
//! nothing, never sleeps, logs or reads a clock: time is an argument. Same input, same plan.
//!
//! - `observed`   ObservedSlot: what the controller knows about a running (or not) slot
//! - `backoff`    RestartPolicy: exponential restart backoff and the crash-loop breaker
//! - `ports`      stable port assignment from `server.port_range`
//! - `admission`  memory admission and turns: what to evict or drain (priority, LRU,
//!   min_residency, max_wait) or why a load cannot fit
//! - `lifecycle`  pure transitions of an ObservedSlot on runtime events and requests
//! - `plan`       plan(desired, observed, now) -> Plan { actions, wake_at }
//! - `views`      statuses and the routing table, projected from desired + observed
//! - `suggest`    "did you mean" by edit distance (the reader's unknown keys, the gateway's unknown models)

mod admission;
mod backoff;
mod lifecycle;
mod observed;
mod plan;
mod ports;
mod views;

pub mod suggest;

#[cfg(test)]
mod plan_tests;
#[cfg(test)]
mod settle_tests;
#[cfg(test)]
mod turns_tests;

pub use admission::{Admission, Demand, Holder, Make, admit};
pub use backoff::RestartPolicy;
pub use lifecycle::{Event, on_action, on_event, on_spec_change, watches_activity};
pub use observed::ObservedSlot;
pub use plan::{Action, Plan, StopReason, plan};
pub use ports::{PortError, assign_ports};
pub use views::{StatusMap, routing_table, statuses};

/// Monotonic time since the controller started. The caller reads the clock; the core only
/// compares these values.
pub type Time = std::time::Duration;
