//! Sources turn the outside world's desired state into `DesiredState` and publish it on a
//! `watch` channel. A bad input is reported and the last good state stays.
//!
//! - `file`  hal0.toml under notify + a poll fallback, debounced
//!
//! The in-cluster gateway's counterpart, which publishes routes and statuses from Slots rather
//! than desired state, is `kube::publish`.

pub mod file;

pub use file::{ConfigPublisher, ConfigReport, FileSource};
