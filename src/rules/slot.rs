//! The rules of one slot: its name, each value on its own (non-empty, ranges, URLs, variable
//! names), and its fields against each other (built-in roles, provider capabilities, required
//! and misplaced fields).

use std::time::Duration;

use super::{
    At, PORT_RANGE, PRIORITY_RANGE, SLOT_FIELDS, Violation, applies, builtin_role, can_sleep,
    is_set, required, url,
};
use crate::model::{ProviderKind, Role, SlotName, SlotSpec};

/// Every rule of one slot named `name` (the name as written; an invalid name is reported and
/// the rest is still checked, so that one run finds every problem).
pub fn check_slot(name: &str, spec: &SlotSpec) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut push = |at: At, message: String| out.push(Violation::slot(name, at, message));
    if let Err(e) = SlotName::parse(name) {
        push(At::Name, e.to_string());
    }
    values(spec, &mut push);
    roles(name, spec, &mut push);
    required_fields(spec, &mut push);
    misplaced_fields(spec, &mut push);
    probe_role(name, spec, &mut push);
    sleep_provider(spec, &mut push);
    out
}

/// [`is_env_var_name`] as a regular expression (for the CRD schema).
pub const ENV_VAR_PATTERN: &str = "^[A-Za-z_][A-Za-z0-9_]*$";

/// Whether `s` is the name of an environment variable: [`ENV_VAR_PATTERN`].
pub fn is_env_var_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The message for a value that is not an environment variable name. The value is not echoed:
/// a common mistake is pasting the secret itself.
pub const ENV_VAR_NAME_MESSAGE: &str = "must be the name of an environment variable (letters, \
     digits and '_', like \"OPENROUTER_API_KEY\"), not the secret itself";

const EMPTY: &str = "must not be empty";

/// Each value on its own.
fn values(spec: &SlotSpec, push: &mut impl FnMut(At, String)) {
    if spec.model.as_deref().is_some_and(|m| m.trim().is_empty()) {
        push(At::Value("model"), EMPTY.into());
    }
    for (field, list) in [("aliases", &spec.aliases), ("models", &spec.models)] {
        for (i, item) in list.iter().enumerate() {
            if item.trim().is_empty() {
                push(At::Item(field, i), EMPTY.into());
            }
        }
    }
    if let Some(port) = spec.port
        && !PORT_RANGE.contains(&port)
    {
        push(
            At::Value("port"),
            format!(
                "must be from {} to {}, found {port}",
                PORT_RANGE.start(),
                PORT_RANGE.end()
            ),
        );
    }
    if let Some(p) = spec.priority
        && !PRIORITY_RANGE.contains(&p)
    {
        push(
            At::Value("priority"),
            format!(
                "must be from {} to {}, found {p}",
                PRIORITY_RANGE.start(),
                PRIORITY_RANGE.end()
            ),
        );
    }
    if spec
        .sleep_after
        .is_some_and(|d| d.as_duration() < Duration::from_secs(1))
    {
        push(
            At::Value("sleep_after"),
            "must be at least 1s (the provider counts whole seconds); leave it out to never sleep"
                .into(),
        );
    }
    if let Some(probe) = &spec.probe {
        let one_sided = match (&probe.prompt, &probe.expect) {
            (Some(_), None) => Some(("prompt", "expect", "the text its answer must contain")),
            (None, Some(_)) => Some(("expect", "prompt", "the message to send")),
            _ => None,
        };
        if let Some((given, missing, what)) = one_sided {
            push(
                At::Value("probe"),
                format!(
                    "{given} is set without {missing}: set {missing} too ({what}), or leave both \
                     out (probe = {{}}) for the built-in check"
                ),
            );
        } else {
            for (key, value) in [("prompt", &probe.prompt), ("expect", &probe.expect)] {
                if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                    push(At::Entry("probe", key), EMPTY.into());
                }
            }
        }
    }
    if let Some(u) = &spec.upstream
        && let Err(message) = url::check_upstream(u)
    {
        push(At::Value("upstream"), message);
    }
    if spec
        .api_key_env
        .as_deref()
        .is_some_and(|n| !is_env_var_name(n))
    {
        push(At::Value("api_key_env"), ENV_VAR_NAME_MESSAGE.into());
    }
}

fn provider_list(role: Role) -> String {
    ProviderKind::ALL
        .into_iter()
        .filter(|p| p.roles().contains(&role))
        .map(ProviderKind::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The roles `p` serves, for messages: `chat, embeddings`.
pub fn role_list(p: ProviderKind) -> String {
    p.roles()
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A built-in slot serves its built-in role with a provider that can; any slot's `role` must
/// be one its provider serves.
fn roles(name: &str, spec: &SlotSpec, push: &mut impl FnMut(At, String)) {
    let provider = spec.provider;
    let builtin = builtin_role(name);
    if let Some(role) = builtin
        && !provider.roles().contains(&role)
    {
        push(
            At::Value("provider"),
            format!(
                "\"{name}\" is the built-in {role} slot, and provider {:?} cannot serve {role} \
                 (it serves: {}); use one of: {}, or give this slot another name",
                provider.as_str(),
                role_list(provider),
                provider_list(role)
            ),
        );
    }
    let Some(role) = spec.role else { return };
    match builtin {
        Some(b) if b != role => push(
            At::Value("role"),
            format!(
                "\"{name}\" is the built-in {b} slot and always serves {b}; remove role or set it \
                 to {:?} (for a {role} slot, use another name)",
                b.as_str()
            ),
        ),
        Some(_) => {}
        None if !provider.roles().contains(&role) => push(
            At::Value("role"),
            format!(
                "provider {:?} cannot serve {role}; it serves: {} (providers that serve {role}: {})",
                provider.as_str(),
                role_list(provider),
                provider_list(role)
            ),
        ),
        None => {}
    }
}

/// `model` where the provider runs one; `upstream` for an external upstream.
fn required_fields(spec: &SlotSpec, push: &mut impl FnMut(At, String)) {
    let provider = spec.provider;
    for field in SLOT_FIELDS {
        if !required(provider, field) || is_set(spec, field) {
            continue;
        }
        let message = match field {
            "upstream" => format!(
                "missing required key \"upstream\": provider {:?} forwards to an external API; \
                 give its base URL, like \"https://openrouter.ai/api/v1\"",
                provider.as_str()
            ),
            _ => format!(
                "missing required key {field:?}: provider {:?} needs a {field} to serve, like {}",
                provider.as_str(),
                model_example(provider)
            ),
        };
        push(At::Missing(field), message);
    }
}

/// What a provider's `model` looks like, for messages.
pub fn model_example(p: ProviderKind) -> &'static str {
    match p {
        ProviderKind::LlamaCpp => "\"hf:org/repo/file.gguf\" or \"file:/path/to/model.gguf\"",
        ProviderKind::Flm => "\"flm:llama3.2:1b\"",
        ProviderKind::Moonshine => "\"moonshine/base\"",
        ProviderKind::Kokoro => "\"kokoro-82m\"",
        ProviderKind::OpenAiCompatible => "\"gpt-4o-mini\"",
    }
}

/// Upstream settings on a local slot, or process settings on an upstream, are mistakes.
fn misplaced_fields(spec: &SlotSpec, push: &mut impl FnMut(At, String)) {
    let provider = spec.provider;
    let why = if provider.runs_process() {
        format!(
            "only applies to provider \"openai-compatible\"; this slot's provider is {:?}",
            provider.as_str()
        )
    } else {
        format!(
            "only applies to slots that run a process; provider {:?} runs none",
            provider.as_str()
        )
    };
    for field in SLOT_FIELDS {
        if !applies(provider, field) && is_set(spec, field) {
            push(At::Key(field), why.clone());
        }
    }
}

/// Only some providers can release their weights and keep their process.
fn sleep_provider(spec: &SlotSpec, push: &mut impl FnMut(At, String)) {
    let provider = spec.provider;
    if spec.sleep_after.is_some() && provider.runs_process() && !can_sleep(provider) {
        push(
            At::Value("sleep_after"),
            format!(
                "provider {:?} cannot sleep (release its model and keep its process); only \
                 llama.cpp can. Remove sleep_after, or use idle_timeout with unload_idle",
                provider.as_str()
            ),
        );
    }
}

/// The answer check sends a chat completion: only chat slots can take it.
fn probe_role(name: &str, spec: &SlotSpec, push: &mut impl FnMut(At, String)) {
    let role = spec.effective_role(builtin_role(name));
    if spec.probe.is_some() && spec.provider.runs_process() && role != Role::Chat {
        push(
            At::Value("probe"),
            format!(
                "the answer check sends a chat completion, and this slot serves {role}; remove \
                 probe (it only applies to chat slots)"
            ),
        );
    }
}
