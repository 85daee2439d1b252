//! `LaunchSpec`: everything that decides how a slot's process is started. Two slots' launch
//! specs differ exactly when a restart is needed.

use std::collections::BTreeMap;

use super::{DesiredState, Device, ProviderKind, Role, SlotName, SlotSpec};

/// The launch-relevant part of a slot: provider, model, role, args, env, device, port and the
/// provider command override. Changing anything here restarts the slot; changing anything else
/// (idle_timeout, aliases, priority, pinned, autoload, memory) is applied in place.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LaunchSpec {
    pub slot: SlotName,
    pub provider: ProviderKind,
    pub role: Role,
    pub model: Option<String>,
    pub args: Vec<String>,
    /// Provider-wide env from `[providers."<name>"]` overlaid with the slot's own `env`.
    pub env: BTreeMap<String, String>,
    pub device: Device,
    pub port: u16,
    /// `[providers."<name>"] command`, the argv prefix replacing the provider's default binary.
    pub command: Option<Vec<String>>,
    /// `sleep_after` in whole seconds (llama.cpp's `--sleep-idle-seconds`).
    pub sleep_after_secs: Option<u64>,
}

impl LaunchSpec {
    pub fn new(desired: &DesiredState, slot: &SlotName, spec: &SlotSpec, port: u16) -> Self {
        let overrides = desired.provider_override(spec.provider);
        let mut env = overrides.map(|o| o.env.clone()).unwrap_or_default();
        env.extend(spec.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        LaunchSpec {
            slot: slot.clone(),
            provider: spec.provider,
            role: spec.effective_role(slot.builtin_role()),
            model: spec.model.clone(),
            args: spec.args.clone(),
            env,
            device: spec.effective_device(),
            port,
            command: overrides.and_then(|o| o.command.clone()),
            sleep_after_secs: spec.sleep_after.map(|d| d.as_duration().as_secs().max(1)),
        }
    }
}
