//! Sources turn the outside world's desired state into `DesiredState` and publish it on a
//! `watch` channel. A bad input is reported and the last good state stays.
//!
//! - `file`  hal0.toml under notify + a poll fallback, debounced
//! - `kube`  the Slots of a namespace (reflector) → routing table + statuses, for the in-cluster gateway

pub mod file;
pub mod kube;

pub use file::{ConfigPublisher, ConfigReport, FileSource};
