//! Sources turn the outside world's desired state into `DesiredState` and publish it on a
//! `watch` channel. A bad input is reported and the last good state stays.
//!
//! - `file`  hal0.toml under notify + a poll fallback, debounced

pub mod file;

pub use file::{ConfigReport, FileSource};
