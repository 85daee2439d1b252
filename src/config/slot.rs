//! Reading one `[slots.<name>]` table into a `SlotSpec`, checking each field on its own (type,
//! format, range). Rules that relate fields or slots to each other live in `validate.rs`.

use std::collections::BTreeMap;
use std::ops::Range;

use super::diagnostic::Sink;
use super::spans::{At, Field, KeySpans, Node, Table, join, type_name};
use crate::model::{
    AnswerProbe, BUILTIN_SLOTS, Device, ProviderKind, Role, SlotName, SlotSpec, UpstreamAuth,
};

/// The keys allowed in a slot table; one per `SlotSpec` field.
pub(crate) const SLOT_KEYS: [&str; 20] = [
    "provider",
    "model",
    "role",
    "idle_timeout",
    "device",
    "args",
    "env",
    "aliases",
    "port",
    "autoload",
    "priority",
    "pinned",
    "min_residency",
    "sleep_after",
    "probe",
    "memory",
    "upstream",
    "api_key_env",
    "auth",
    "models",
];

/// Every role, in the order `ProviderKind::roles` lists them.
pub(crate) const ROLES: [Role; 5] = [
    Role::Chat,
    Role::Embeddings,
    Role::Rerank,
    Role::SpeechToText,
    Role::TextToSpeech,
];

pub(crate) const DEVICES: [Device; 3] = [Device::Cpu, Device::Igpu, Device::Npu];

pub(crate) const AUTHS: [(UpstreamAuth, &str); 2] = [
    (UpstreamAuth::Bearer, "bearer"),
    (UpstreamAuth::XApiKey, "x-api-key"),
];

/// A slot read from the file, with where its parts were written.
pub(crate) struct SlotRead {
    /// The name as written; it may be invalid (already reported), but the slot's other rules
    /// are still checked so that one run finds every problem.
    pub name: String,
    /// The slot's name as written (`primary` in `[slots.primary]`): where problems with the
    /// slot as a whole, such as a missing key, are reported.
    pub name_span: Range<usize>,
    /// `slots.<name>`, the prefix of every field path in messages.
    pub path: String,
    /// Where each key that is present was written.
    pub fields: BTreeMap<&'static str, KeySpans>,
    /// Each alias with its span, for collision messages.
    pub aliases: Vec<At<String>>,
    /// Each upstream model name with its span, for collision messages.
    pub models: Vec<At<String>>,
    pub spec: SlotSpec,
}

impl SlotRead {
    /// The role a built-in slot must serve, or `None` for a custom slot.
    pub fn builtin_role(&self) -> Option<Role> {
        BUILTIN_SLOTS
            .iter()
            .find(|(n, _)| *n == self.name)
            .map(|(_, r)| *r)
    }

    /// The span of `key`'s value, else of the slot name.
    pub fn value_span(&self, key: &str) -> Range<usize> {
        self.fields
            .get(key)
            .map_or_else(|| self.name_span.clone(), |s| s.value.clone())
    }

    pub fn field_path(&self, key: &str) -> String {
        join(&self.path, key)
    }

    pub fn has(&self, key: &str) -> bool {
        self.fields.contains_key(key)
    }
}

/// Read `[slots.<name>]`. Returns `None` when the slot cannot be checked further (not a
/// table, no usable provider); every problem found on the way is in `sink`.
pub(crate) fn read(
    sink: &mut Sink<'_>,
    slots: &Table<'_, '_>,
    name: At<&str>,
    node: &Node<'_>,
) -> Option<SlotRead> {
    let path = join(&slots.path, name.value);
    if let Err(e) = SlotName::parse(name.value) {
        sink.error(name.span.clone(), path.clone(), e.to_string());
    }
    let table = Table::of(sink, node, path.clone())?;
    table.deny_unknown(sink, &SLOT_KEYS);

    let provider_names = ProviderKind::ALL.map(ProviderKind::as_str);
    let provider = match table.field("provider") {
        Some(f) => f
            .one_of(sink, "provider", &provider_names)
            .and_then(ProviderKind::from_name),
        None => {
            sink.error(
                name.span.clone(),
                path.clone(),
                format!(
                    "missing required key \"provider\"; set it to one of: {}",
                    provider_names.join(", ")
                ),
            );
            None
        }
    };

    let mut spec = SlotSpec::new(provider.unwrap_or(ProviderKind::LlamaCpp), None);
    let mut fields = BTreeMap::new();
    let mut aliases = Vec::new();
    let mut models = Vec::new();
    for key in SLOT_KEYS {
        let Some(f) = table.field(key) else { continue };
        fields.insert(key, f.spans());
        match key {
            "model" => spec.model = f.non_empty_string(sink),
            "role" => spec.role = role(sink, &f),
            "idle_timeout" => spec.idle_timeout = f.duration(sink),
            "min_residency" => spec.min_residency = f.duration(sink),
            "probe" => spec.probe = probe(sink, &f),
            "sleep_after" => spec.sleep_after = sleep_after(sink, &f),
            "device" => spec.device = device(sink, &f),
            "args" => spec.args = args(sink, &f).unwrap_or_default(),
            "env" => spec.env = f.string_map(sink).unwrap_or_default(),
            "aliases" => {
                aliases = f.string_array(sink).unwrap_or_default();
                spec.aliases = aliases.iter().map(|a| a.value.clone()).collect();
            }
            "port" => {
                spec.port = f
                    .integer_in(sink, 1, 65535)
                    .and_then(|n| u16::try_from(n).ok());
            }
            "autoload" => spec.autoload = f.bool(sink).unwrap_or_default(),
            "priority" => {
                spec.priority = f
                    .integer_in(sink, 0, 100)
                    .and_then(|n| u8::try_from(n).ok());
            }
            "pinned" => spec.pinned = f.bool(sink).unwrap_or_default(),
            "memory" => spec.memory = f.byte_size(sink),
            "upstream" => spec.upstream = upstream(sink, &f),
            "api_key_env" => spec.api_key_env = f.env_var_name(sink),
            "auth" => spec.auth = auth(sink, &f),
            "models" => {
                models = f.string_array(sink).unwrap_or_default();
                spec.models = models.iter().map(|m| m.value.clone()).collect();
            }
            _ => {}
        }
    }

    Some(SlotRead {
        name: name.value.to_string(),
        name_span: name.span,
        path,
        fields,
        aliases,
        models,
        spec: SlotSpec {
            provider: provider?,
            ..spec
        },
    })
}

/// llama-server counts whole seconds, at least one.
fn sleep_after(sink: &mut Sink<'_>, f: &Field<'_, '_>) -> Option<crate::model::HumanDuration> {
    let d = f.duration(sink)?;
    if d.as_duration() < std::time::Duration::from_secs(1) {
        f.error(
            sink,
            "must be at least 1s (the provider counts whole seconds); leave it out to never sleep",
        );
        return None;
    }
    Some(d)
}

/// `probe = { prompt = "...", expect = "..." }` (both or neither; `{}` is the built-in check).
fn probe(sink: &mut Sink<'_>, f: &Field<'_, '_>) -> Option<AnswerProbe> {
    let table = Table::of(sink, f.node, f.path.clone())?;
    table.deny_unknown(sink, &["prompt", "expect"]);
    let prompt = table.field("prompt");
    let expect = table.field("expect");
    let both = match (&prompt, &expect) {
        (Some(_), None) => Some(("prompt", "expect", "the text its answer must contain")),
        (None, Some(_)) => Some(("expect", "prompt", "the message to send")),
        _ => None,
    };
    if let Some((given, missing, what)) = both {
        f.error(
            sink,
            format!(
                "{given} is set without {missing}: set {missing} too ({what}), or leave both out                  (probe = {{}}) for the built-in check"
            ),
        );
        return None;
    }
    let prompt = match prompt {
        Some(p) => Some(p.non_empty_string(sink)?),
        None => None,
    };
    let expect = match expect {
        Some(e) => Some(e.non_empty_string(sink)?),
        None => None,
    };
    Some(AnswerProbe { prompt, expect })
}

fn role(sink: &mut Sink<'_>, f: &Field<'_, '_>) -> Option<Role> {
    let names = ROLES.map(Role::as_str);
    let name = f.one_of(sink, "role", &names)?;
    ROLES.into_iter().find(|r| r.as_str() == name)
}

fn device(sink: &mut Sink<'_>, f: &Field<'_, '_>) -> Option<Device> {
    let names = DEVICES.map(Device::as_str);
    let name = f.one_of(sink, "device", &names)?;
    DEVICES.into_iter().find(|d| d.as_str() == name)
}

fn auth(sink: &mut Sink<'_>, f: &Field<'_, '_>) -> Option<UpstreamAuth> {
    let names = AUTHS.map(|(_, n)| n);
    let name = f.one_of(sink, "auth", &names)?;
    AUTHS.into_iter().find(|(_, n)| *n == name).map(|(a, _)| a)
}

/// Extra argv: strings, which may be empty (`--prompt ""` is a real argument).
fn args(sink: &mut Sink<'_>, f: &Field<'_, '_>) -> Option<Vec<String>> {
    f.array(sink, "an array of strings", |sink, node, path| {
        match node.get_ref() {
            toml::de::DeValue::String(s) => Some(s.to_string()),
            other => {
                sink.error(
                    node.span(),
                    path,
                    format!("expected a string, found {}", type_name(other)),
                );
                None
            }
        }
    })
}

/// An `http://` or `https://` base URL with a host.
fn upstream(sink: &mut Sink<'_>, f: &Field<'_, '_>) -> Option<String> {
    let url = f.string(sink)?;
    let lower = url.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"));
    let host = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or_default());
    let ok = host.is_some_and(|h| !h.is_empty()) && !url.chars().any(char::is_whitespace);
    if !ok {
        f.error(
            sink,
            format!(
                "{url:?} is not an http:// or https:// URL; write the API's base URL, like \
                 \"https://openrouter.ai/api/v1\""
            ),
        );
        return None;
    }
    let authority = rest
        .map(|r| r.split(['/', '?', '#']).next().unwrap_or_default())
        .unwrap_or_default();
    if authority.contains('@') {
        f.error(
            sink,
            format!(
                "{:?} has credentials in it; hal0 does not send or show URL credentials: put the \
                 key in an environment variable and name it in api_key_env (with auth = \
                 \"bearer\" or \"x-api-key\")",
                super::show::redact_url(&url)
            ),
        );
        return None;
    }
    Some(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::spans::{schema_enum_values, schema_properties};

    fn sorted(names: impl IntoIterator<Item = impl ToString>) -> Vec<String> {
        let mut v: Vec<String> = names.into_iter().map(|n| n.to_string()).collect();
        v.sort();
        v
    }

    #[test]
    fn slot_keys_match_the_slot_spec_fields() {
        let fields = schema_properties(&schemars::schema_for!(SlotSpec));
        assert_eq!(sorted(SLOT_KEYS), fields);
    }

    #[test]
    fn enum_lists_match_the_model() {
        assert_eq!(
            sorted(ROLES.map(Role::as_str)),
            schema_enum_values(&schemars::schema_for!(Role))
        );
        assert_eq!(
            sorted(DEVICES.map(Device::as_str)),
            schema_enum_values(&schemars::schema_for!(Device))
        );
        assert_eq!(
            sorted(AUTHS.map(|(_, n)| n)),
            schema_enum_values(&schemars::schema_for!(UpstreamAuth))
        );
    }
}
