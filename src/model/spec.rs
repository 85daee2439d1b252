//! `SlotSpec`: the one type for a slot, shared by `[slots.<name>]` in hal0.toml and the `spec`
//! of a Kubernetes `Slot`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{AnswerProbe, ByteSize, Device, HumanDuration, ProviderKind, Role, UpstreamAuth};

/// Default priority: the middle of 0–100.
pub const DEFAULT_PRIORITY: u8 = 50;

/// Default `idle_timeout` when a slot sets none.
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 600;

/// Default `min_residency` when a slot sets none.
pub const DEFAULT_MIN_RESIDENCY_SECS: u64 = 10;

/// One slot: one provider process serving one model on one port (or one external upstream).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SlotSpec {
    /// The model server that runs this slot.
    pub provider: ProviderKind,

    /// The model: `hf:org/repo/file.gguf` (under `models_dir`), `file:/abs/path.gguf`, an
    /// absolute path, or a provider-specific ref such as `flm:llama3.2:1b`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,

    /// What the slot serves. Defaults to the built-in slot's role, else the provider's first role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,

    /// After this long without requests a ready slot becomes idle (an unload candidate).
    /// `0s` keeps it ready forever. Default 10m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<HumanDuration>,

    /// The device the provider runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<Device>,

    /// Extra arguments appended to the provider's command line.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,

    /// Extra environment for the provider process.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,

    /// Other model names that route to this slot.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,

    /// Pin the slot's port (must lie in `server.port_range`); else one is assigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,

    /// Load when hal0 starts instead of on the first request.
    #[serde(default, skip_serializing_if = "is_false")]
    pub autoload: bool,

    /// 0–100; when memory is needed, idle slots with lower priority are evicted first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub priority: Option<u8>,

    /// Never evicted to make room for another slot.
    #[serde(default, skip_serializing_if = "is_false")]
    pub pinned: bool,

    /// Once loaded, the slot serves at least this long before a slot whose requests wait for
    /// its memory (or the NPU) may swap it out, unless they have waited `server.max_wait`.
    /// `0s` lets every waiting request swap it out at once. Default 10s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_residency: Option<HumanDuration>,

    /// `llama.cpp` only: after this long without requests the provider releases its model weights
    /// and keeps its process (`llama-server --sleep-idle-seconds`): phase `sleeping`, counted
    /// at its measured footprint. A request wakes it, faster than a cold start. Unset: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sleep_after: Option<HumanDuration>,

    /// Chat slots: check an answer before the slot is ready. After `/health` passes, one short
    /// completion of `prompt` must contain `expect` (case-insensitive), or the load fails showing
    /// what the model said. `{}` uses the built-in check (the capital of France: Paris).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<AnswerProbe>,

    /// Memory footprint estimate, overriding the one derived from the model file size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<ByteSize>,

    /// `openai-compatible` only: the upstream base URL (e.g. `https://api.example.com/v1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,

    /// `openai-compatible` only: the environment variable holding the upstream's API key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,

    /// `openai-compatible` only: how the key is sent (`bearer` or `x-api-key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<UpstreamAuth>,

    /// `openai-compatible` only: the upstream model names routed to this slot.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl SlotSpec {
    /// A spec with only a provider and a model; everything else default.
    pub fn new(provider: ProviderKind, model: Option<&str>) -> Self {
        SlotSpec {
            provider,
            model: model.map(str::to_string),
            role: None,
            idle_timeout: None,
            device: None,
            args: Vec::new(),
            env: BTreeMap::new(),
            aliases: Vec::new(),
            port: None,
            autoload: false,
            priority: None,
            pinned: false,
            min_residency: None,
            sleep_after: None,
            probe: None,
            memory: None,
            upstream: None,
            api_key_env: None,
            auth: None,
            models: Vec::new(),
        }
    }

    /// The role this slot serves, given its name's built-in role (if any).
    pub fn effective_role(&self, builtin: Option<Role>) -> Role {
        self.role
            .or(builtin)
            .unwrap_or_else(|| self.provider.roles()[0])
    }

    pub fn effective_idle_timeout(&self) -> HumanDuration {
        self.idle_timeout
            .unwrap_or(HumanDuration::from_secs(DEFAULT_IDLE_TIMEOUT_SECS))
    }

    pub fn effective_min_residency(&self) -> HumanDuration {
        self.min_residency
            .unwrap_or(HumanDuration::from_secs(DEFAULT_MIN_RESIDENCY_SECS))
    }

    pub fn effective_priority(&self) -> u8 {
        self.priority.unwrap_or(DEFAULT_PRIORITY)
    }

    pub fn effective_device(&self) -> Device {
        self.device.unwrap_or_default()
    }

    /// The model id clients use and the provider advertises: the model file's stem for file
    /// refs (`hf:org/repo/Qwen-7B-Q4.gguf` → `Qwen-7B-Q4`), the part after the scheme for
    /// other refs (`flm:llama3.2:1b` → `llama3.2:1b`).
    pub fn model_id(&self) -> Option<String> {
        self.model.as_deref().map(model_id_of)
    }
}

/// See [`SlotSpec::model_id`].
pub fn model_id_of(model_ref: &str) -> String {
    let rest = match model_ref.split_once(':') {
        Some((scheme, rest)) if !scheme.contains('/') => rest,
        _ => model_ref,
    };
    let is_path_like = model_ref.starts_with("hf:")
        || model_ref.starts_with("file:")
        || model_ref.starts_with('/');
    if is_path_like {
        let file = rest.rsplit('/').next().unwrap_or(rest);
        file.strip_suffix(".gguf").unwrap_or(file).to_string()
    } else {
        rest.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_ids_come_from_refs() {
        assert_eq!(
            model_id_of("hf:bartowski/Qwen-GGUF/Qwen-7B-Q4_K_M.gguf"),
            "Qwen-7B-Q4_K_M"
        );
        assert_eq!(model_id_of("file:/srv/models/tiny.gguf"), "tiny");
        assert_eq!(model_id_of("/srv/models/tiny.gguf"), "tiny");
        assert_eq!(model_id_of("flm:llama3.2:1b"), "llama3.2:1b");
        assert_eq!(model_id_of("kokoro-82m"), "kokoro-82m");
    }

    #[test]
    fn role_defaults_follow_builtin_then_provider() {
        let s = SlotSpec::new(ProviderKind::LlamaCpp, Some("/m.gguf"));
        assert_eq!(s.effective_role(None), Role::Chat);
        assert_eq!(s.effective_role(Some(Role::Embeddings)), Role::Embeddings);
        let mut e = s.clone();
        e.role = Some(Role::Embeddings);
        assert_eq!(e.effective_role(None), Role::Embeddings);
    }
}
