//! hal0 on Kubernetes, in one room: the Slot resource, Slot → Deployment + Service, the
//! reconciler behind `hal0 controller`, and what the in-cluster gateway (`hal0 serve --source
//! kube`) needs: routes and statuses published from the Slots, and wake = scale to one.
//!
//! - `crd`        the Slot custom resource around model::SlotSpec; `crd::schema`: patterns + CEL from the rules
//! - `names`      object names, labels, finalizer, field managers
//! - `claims`     PURE: names claimed by two Slots of a namespace (Degraded, not routed)
//! - `settings`   the controller's settings (ClusterConfig): images per provider, model volume, port
//! - `validate`   a Slot's spec through the slot rules (`crate::rules`, + cluster-only refusals)
//! - `workload`   PURE: Slot → Deployment and Service (the shared provider argv)
//! - `status`     PURE: observations → Slot status (phase, conditions)
//! - `idle`       PURE: when a loaded Slot is idle
//! - `reconcile`  the reconciler: apply, status, events, idle scale-down, finalizer cleanup
//! - `watches`    the `kube::runtime::Controller` behind `hal0 controller`: watches, triggers, stores
//! - `leader`     leader election with a Lease: one replica reconciles at a time
//! - `metrics`    the controller's /metrics: reconciles, errors, durations, queue, watch errors
//! - `publish`    for the in-cluster gateway: the Slots of a namespace → routing table + statuses
//! - `wake`       the gateway's SlotControl: scale to one, throttled activity writes
//! - `app`        composition root for `hal0 crd`, `hal0 controller` and `hal0 serve --source kube`

pub mod app;
pub mod claims;
pub mod crd;
pub mod idle;
pub mod leader;
pub mod metrics;
pub mod names;
pub mod publish;
pub mod reconcile;
pub mod settings;
pub mod status;
pub mod validate;
pub mod wake;
pub mod watches;
pub mod workload;

#[cfg(test)]
mod status_tests;
#[cfg(test)]
mod wake_tests;
#[cfg(test)]
mod workload_tests;

pub use settings::{ClusterConfig, ModelVolume, ProviderImage};
pub use watches::Scope;
