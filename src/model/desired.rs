//! `DesiredState`: everything a source (the file or the cluster) says should exist.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ProviderKind, ServerSettings, SlotName, SlotSpec};

/// `[providers."<name>"]`: how to start a provider on this machine.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderOverride {
    /// Argv prefix used to start the provider; hal0 appends its own flags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Environment added for every slot of this provider (a slot's own `env` wins).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
}

/// The validated contents of a whole `hal0.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DesiredState {
    #[serde(default)]
    pub server: ServerSettings,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub providers: BTreeMap<ProviderKind, ProviderOverride>,
    #[serde(default)]
    pub slots: BTreeMap<SlotName, SlotSpec>,
}

impl DesiredState {
    pub fn provider_override(&self, p: ProviderKind) -> Option<&ProviderOverride> {
        self.providers.get(&p)
    }
}
