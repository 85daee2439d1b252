//! `LaunchSpec`: what the controller asks a runtime to run for one generation of a slot. It
//! carries the inputs, not a built command: the runtime resolves the model, decides whether to
//! download it first, and builds the argv.

use std::path::PathBuf;

use crate::model::{self, AnswerProbe, ServerSettings, SlotName};
use crate::providers::expand_home;

/// Where models live and what to do about a missing one (from `[server]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelStore {
    /// `server.models_dir`, `~` expanded: where `hf:` refs live.
    pub dir: PathBuf,
    /// `server.pull_on_load`: a missing `hf:` model is downloaded before the start.
    pub pull_on_load: bool,
    /// `server.hf_endpoint`: the model hub to download from (`None`: the default one).
    pub hub: Option<String>,
}

impl ModelStore {
    pub fn of(server: &ServerSettings) -> Self {
        ModelStore {
            dir: expand_home(&server.models_dir),
            pull_on_load: server.pull_on_load,
            hub: server.hf_endpoint.clone(),
        }
    }
}

/// One start of a slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchSpec {
    /// The process generation this start creates; the runtime tags its events with it.
    pub generation: u64,
    /// Provider, model ref, args, env, device, port, command override, `sleep_after`: the
    /// launch-relevant settings the core compares to decide on restarts.
    pub process: model::LaunchSpec,
    /// Where the model lives and whether a missing one is pulled first.
    pub models: ModelStore,
    /// The answer check before ready (chat slots with a `probe`), with the model id to ask.
    pub probe: Option<(AnswerProbe, Option<String>)>,
    /// The memory admission counted for this load, in bytes (0: unknown).
    pub memory: u64,
}

impl LaunchSpec {
    pub fn slot(&self) -> &SlotName {
        &self.process.slot
    }

    pub fn port(&self) -> u16 {
        self.process.port
    }
}
