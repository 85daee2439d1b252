//! The merged view printed by `hal0 config show`: the file's settings with every built-in
//! default filled in, as the rest of hal0 will use them, with secrets redacted.
//!
//! Built-in slots (`primary`, `embed`, `stt`, `tts`) absent from the file are NOT invented: a
//! built-in name only fixes the role of a slot the user declares. A file without
//! `[slots.embed]` has no embeddings slot, and the view says so by not listing one, because
//! hal0 cannot guess which model the user would want there.
//!
//! Secrets: hal0 never reads the variables named by `api_keys` or `api_key_env` here, so only
//! their names appear; `env` entries whose name looks secret (contains KEY, TOKEN, SECRET,
//! PASSWORD, …) and passwords inside upstream URLs are replaced by `"<redacted>"`.

use std::collections::BTreeMap;

use serde::{Serialize, Serializer};

use crate::model::{DesiredState, Device, HumanDuration, ProviderOverride, Role, SlotSpec};
pub use crate::rules::{REDACTED, redact_url};

/// Substrings (upper-case) that make an environment variable name look secret.
const SECRET_MARKERS: [&str; 6] = ["KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL"];

#[derive(Debug, thiserror::Error)]
pub enum ShowError {
    #[error("cannot render the merged view as TOML")]
    RenderToml(#[source] toml::ser::Error),
    #[error("cannot render the merged view as JSON")]
    RenderJson(#[source] serde_json::Error),
}

/// The whole merged view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MergedView {
    pub server: ServerView,
    /// Only the providers the file overrides; the others use their built-in commands.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub providers: BTreeMap<String, ProviderView>,
    pub slots: BTreeMap<String, SlotView>,
}

/// `[server]` with every default filled in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerView {
    pub listen: String,
    pub port_range: [u16; 2],
    pub models_dir: String,
    /// A size, or `"unlimited"` when unset.
    pub memory_budget: String,
    /// Names of the variables holding accepted keys; never their values.
    pub api_keys: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_keys_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_token_env: Option<String>,
    pub load_timeout: HumanDuration,
    pub stop_grace: HumanDuration,
    pub unload_idle: bool,
    pub max_queue: u32,
    pub max_wait: HumanDuration,
    pub max_body: String,
    pub pull_on_load: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hf_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<String>,
    pub allowed_hosts: Vec<String>,
    pub header_timeout: HumanDuration,
    pub body_timeout: HumanDuration,
    pub client_idle_timeout: HumanDuration,
    pub max_connections: u32,
    /// A number, or `"auto"` (one per core) when unset.
    pub workers: AutoOr<u32>,
    pub drain_timeout: HumanDuration,
    pub restart_drain: HumanDuration,
}

/// `[providers."<name>"]`, secrets redacted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProviderView {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
}

/// A number, or `"auto"` when left to hal0: `server.workers` (one per core), a slot's port
/// (assigned from `port_range` at load time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoOr<T> {
    Auto,
    Set(T),
}

impl<T: Serialize> Serialize for AutoOr<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            AutoOr::Auto => s.serialize_str("auto"),
            AutoOr::Set(n) => n.serialize(s),
        }
    }
}

/// One slot with its effective settings. Settings that do not apply to the slot's provider
/// (a port for an external upstream, an upstream URL for a local process) are left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlotView {
    pub provider: String,
    pub role: Role,
    /// Whether the name is one of the built-in slots (which fixes the role).
    pub builtin: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The name clients use for the model (besides the slot name and aliases).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
    pub idle_timeout: HumanDuration,
    /// Local slots only: how long a loaded slot serves before a waiting slot may swap it out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_residency: Option<HumanDuration>,
    /// llama.cpp: sleep (release the weights, keep the process) after this long unused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sleep_after: Option<HumanDuration>,
    /// The answer check before ready, with the built-in prompt and expectation filled in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe: Option<crate::model::AnswerProbe>,
    pub priority: u8,
    pub autoload: bool,
    pub pinned: bool,
    pub aliases: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<Device>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<AutoOr<u16>>,
    /// A size, or `"auto"` (estimated from the model) when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// Left out when empty (TOML would print an empty table).
    #[serde(skip_serializing_if = "is_none_or_empty")]
    pub env: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// The variable's name only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<crate::model::UpstreamAuth>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
}

fn is_none_or_empty(env: &Option<BTreeMap<String, String>>) -> bool {
    env.as_ref().is_none_or(BTreeMap::is_empty)
}

/// Build the merged view of a validated state.
pub fn merged_view(state: &DesiredState) -> MergedView {
    let s = &state.server;
    MergedView {
        server: ServerView {
            listen: s.listen.clone(),
            port_range: s.port_range,
            models_dir: s.models_dir.clone(),
            memory_budget: s
                .memory_budget
                .map_or_else(|| "unlimited".to_string(), |b| b.to_string()),
            api_keys: s.api_keys.clone(),
            api_keys_file: s.api_keys_file.clone(),
            admin_token_env: s.admin_token_env.clone(),
            load_timeout: s.load_timeout,
            stop_grace: s.stop_grace,
            unload_idle: s.unload_idle,
            max_queue: s.max_queue,
            max_wait: s.max_wait,
            max_body: s.max_body.to_string(),
            pull_on_load: s.pull_on_load,
            hf_endpoint: s.hf_endpoint.clone(),
            state_dir: s.state_dir.clone(),
            allowed_hosts: s.allowed_hosts.clone(),
            header_timeout: s.header_timeout,
            body_timeout: s.body_timeout,
            client_idle_timeout: s.client_idle_timeout,
            max_connections: s.max_connections,
            workers: s.workers.map_or(AutoOr::Auto, AutoOr::Set),
            drain_timeout: s.drain_timeout,
            restart_drain: s.restart_drain,
        },
        providers: state
            .providers
            .iter()
            .map(|(kind, o)| (kind.as_str().to_string(), provider_view(o)))
            .collect(),
        slots: state
            .slots
            .iter()
            .map(|(name, spec)| (name.to_string(), slot_view(spec, name.builtin_role())))
            .collect(),
    }
}

/// The merged view as TOML (with a header comment) or pretty JSON.
pub fn render(state: &DesiredState, source: &str, json: bool) -> Result<String, ShowError> {
    let view = merged_view(state);
    if json {
        return serde_json::to_string_pretty(&view).map_err(ShowError::RenderJson);
    }
    let body = toml::to_string(&view).map_err(ShowError::RenderToml)?;
    Ok(format!(
        "# Merged view of {source}: built-in defaults + file. Secrets are redacted.\n\
         # Built-in slots missing from the file are not listed: hal0 does not invent them.\n\n{body}"
    ))
}

fn provider_view(o: &ProviderOverride) -> ProviderView {
    ProviderView {
        command: o.command.clone(),
        env: redact_env(&o.env),
    }
}

fn slot_view(spec: &SlotSpec, builtin: Option<Role>) -> SlotView {
    let local = spec.provider.runs_process();
    let only_local = |v| if local { Some(v) } else { None };
    let only_upstream = |v| if local { None } else { Some(v) };
    SlotView {
        provider: spec.provider.as_str().to_string(),
        role: spec.effective_role(builtin),
        builtin: builtin.is_some(),
        model: spec.model.clone(),
        model_id: spec.model_id(),
        idle_timeout: spec.effective_idle_timeout(),
        min_residency: local.then(|| spec.effective_min_residency()),
        sleep_after: spec.sleep_after,
        probe: spec.probe.as_ref().map(|p| crate::model::AnswerProbe {
            prompt: Some(p.prompt().to_string()),
            expect: Some(p.expect().to_string()),
        }),
        priority: spec.effective_priority(),
        autoload: spec.autoload,
        pinned: spec.pinned,
        aliases: spec.aliases.clone(),
        device: local.then(|| spec.effective_device()),
        port: local.then_some(spec.port.map_or(AutoOr::Auto, AutoOr::Set)),
        memory: only_local(
            spec.memory
                .map_or_else(|| "auto".to_string(), |m| m.to_string()),
        ),
        args: local.then(|| spec.args.clone()),
        env: local.then(|| redact_env(&spec.env)),
        upstream: spec
            .upstream
            .as_deref()
            .map(redact_url)
            .and_then(only_upstream),
        api_key_env: spec.api_key_env.clone().and_then(only_upstream),
        auth: (!local).then(|| spec.auth.unwrap_or_default()),
        models: (!local).then(|| spec.models.clone()),
    }
}

/// Whether an environment variable name looks like it holds a secret.
pub fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    SECRET_MARKERS.iter().any(|m| upper.contains(m))
}

fn redact_env(env: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    env.iter()
        .map(|(k, v)| {
            let v = if looks_secret(k) {
                REDACTED.to_string()
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_are_recognised() {
        for n in [
            "HF_TOKEN",
            "api_key",
            "MySecret",
            "DB_PASSWORD",
            "OPENAI_API_KEY",
        ] {
            assert!(looks_secret(n), "{n}");
        }
        for n in ["GGML_VK_VISIBLE_DEVICES", "HOME", "LLAMA_ARG_CTX"] {
            assert!(!looks_secret(n), "{n}");
        }
    }
}
