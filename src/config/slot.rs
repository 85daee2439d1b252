//! Reading one `[slots.<name>]` table into a `SlotSpec`: types, unknown keys, enum names,
//! durations and sizes, with where each part was written. The rules on the typed values live
//! in `crate::rules`; `validate.rs` maps what they find back to these spans.

use std::collections::BTreeMap;
use std::ops::Range;

use super::diagnostic::Sink;
use super::spans::{At, Field, KeySpans, Node, Table, join, type_name};
use crate::model::{AnswerProbe, Device, ProviderKind, Role, SlotName, SlotSpec, UpstreamAuth};
use crate::rules;

/// The keys allowed in a slot table; one per `SlotSpec` field (the rules' table).
pub(crate) const SLOT_KEYS: [&str; 20] = rules::SLOT_FIELDS;

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
    /// The name as written; it may be invalid (already reported), but the slot's other
    /// rules are still checked so that one run finds every problem.
    pub name: String,
    /// The slot's name as written (`primary` in `[slots.primary]`): where problems with the
    /// slot as a whole, such as a missing key, are reported.
    pub name_span: Range<usize>,
    /// `slots.<name>`, the prefix of every field path in messages.
    pub path: String,
    /// Where each key that is present was written.
    pub fields: BTreeMap<&'static str, KeySpans>,
    /// Where each element of `aliases` and `models` was written.
    pub items: BTreeMap<&'static str, Vec<Range<usize>>>,
    /// Where each entry of `probe` was written (`prompt`, `expect`).
    pub entries: BTreeMap<(&'static str, &'static str), Range<usize>>,
    pub spec: SlotSpec,
}

impl SlotRead {
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
    // Reported here, not by the rules: a slot without a usable provider is checked no further.
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
    let mut items = BTreeMap::new();
    let mut entries = BTreeMap::new();
    for key in SLOT_KEYS {
        let Some(f) = table.field(key) else { continue };
        fields.insert(key, f.spans());
        match key {
            "model" => spec.model = f.string(sink),
            "role" => spec.role = role(sink, &f),
            "idle_timeout" => spec.idle_timeout = f.duration(sink),
            "min_residency" => spec.min_residency = f.duration(sink),
            "probe" => spec.probe = probe(sink, &f, &mut entries),
            "sleep_after" => spec.sleep_after = f.duration(sink),
            "device" => spec.device = device(sink, &f),
            "args" => spec.args = args(sink, &f).unwrap_or_default(),
            "env" => spec.env = f.string_map(sink).unwrap_or_default(),
            "aliases" => spec.aliases = strings(sink, &f, key, &mut items),
            "port" => {
                let ports = rules::PORT_RANGE;
                spec.port = f
                    .integer_in(sink, (*ports.start()).into(), (*ports.end()).into())
                    .and_then(|n| u16::try_from(n).ok());
            }
            "autoload" => spec.autoload = f.bool(sink).unwrap_or_default(),
            "priority" => {
                let range = rules::PRIORITY_RANGE;
                spec.priority = f
                    .integer_in(sink, (*range.start()).into(), (*range.end()).into())
                    .and_then(|n| u8::try_from(n).ok());
            }
            "pinned" => spec.pinned = f.bool(sink).unwrap_or_default(),
            "memory" => spec.memory = f.byte_size(sink),
            "upstream" => spec.upstream = f.string(sink),
            "api_key_env" => spec.api_key_env = f.string(sink),
            "auth" => spec.auth = auth(sink, &f),
            "models" => spec.models = strings(sink, &f, key, &mut items),
            _ => {}
        }
    }

    Some(SlotRead {
        name: name.value.to_string(),
        name_span: name.span,
        path,
        fields,
        items,
        entries,
        spec: SlotSpec {
            provider: provider?,
            ..spec
        },
    })
}

/// `probe = { prompt = "...", expect = "..." }` (`{}` is the built-in check).
fn probe(
    sink: &mut Sink<'_>,
    f: &Field<'_, '_>,
    entries: &mut BTreeMap<(&'static str, &'static str), Range<usize>>,
) -> Option<AnswerProbe> {
    let table = Table::of(sink, f.node, f.path.clone())?;
    table.deny_unknown(sink, &["prompt", "expect"]);
    let mut probe = AnswerProbe::default();
    for (key, value) in [("prompt", &mut probe.prompt), ("expect", &mut probe.expect)] {
        if let Some(e) = table.field(key) {
            entries.insert(("probe", key), e.node.span());
            *value = Some(e.string(sink)?);
        }
    }
    Some(probe)
}

/// An array of strings (`aliases`, `models`), remembering where each was written.
fn strings(
    sink: &mut Sink<'_>,
    f: &Field<'_, '_>,
    key: &'static str,
    items: &mut BTreeMap<&'static str, Vec<Range<usize>>>,
) -> Vec<String> {
    let read = f.array(sink, "an array of strings", |sink, node, path| {
        match node.get_ref() {
            toml::de::DeValue::String(s) => Some(At {
                value: s.to_string(),
                span: node.span(),
            }),
            other => {
                sink.error(
                    node.span(),
                    path,
                    format!("expected a string, found {}", type_name(other)),
                );
                None
            }
        }
    });
    let read = read.unwrap_or_default();
    items.insert(key, read.iter().map(|a| a.span.clone()).collect());
    read.into_iter().map(|a| a.value).collect()
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
