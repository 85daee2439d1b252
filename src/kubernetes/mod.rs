//! hal0 on Kubernetes: Slots become Deployments + Services; the in-cluster gateway wakes them.
//!
//! - `names`      object names, labels, finalizer, field managers
//! - `claims`     PURE: names claimed by two Slots of a namespace (Degraded, not routed)
//! - `config`     the controller's settings: images per provider, model volume, port
//! - `validate`   a Slot's spec through the hal0.toml rules (+ cluster-only refusals)
//! - `workload`   PURE: Slot → Deployment and Service (the shared provider argv)
//! - `status`     PURE: observations → Slot status (phase, conditions)
//! - `idle`       PURE: when a loaded Slot is idle
//! - `reconcile`  the reconciler: apply, status, events, idle scale-down, finalizer cleanup
//! - `controller` `kube::runtime::Controller` wiring for `hal0 controller`: triggers, stores
//! - `leader`     leader election with a Lease: one replica reconciles at a time
//! - `metrics`    the controller's /metrics: reconciles, errors, durations, queue, watch errors
//! - `wake`       the gateway's SlotControl: scale to one, throttled activity writes

pub mod claims;
pub mod config;
pub mod controller;
pub mod idle;
pub mod leader;
pub mod metrics;
pub mod names;
pub mod reconcile;
pub mod status;
pub mod validate;
pub mod wake;
pub mod workload;

#[cfg(test)]
mod status_tests;
#[cfg(test)]
mod wake_tests;
#[cfg(test)]
mod workload_tests;

pub use config::{ClusterConfig, ModelVolume, ProviderImage};
pub use controller::Scope;
