//! `GET /api/rules`: the rules clients check before they write, served from the types and the
//! `rules` tables that enforce them, so the dashboard does not re-code them: what a slot name
//! may be, the reserved built-in names, which roles each provider serves and which fields it
//! takes or requires, the devices, the priority range.

use axum::Json;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::{BUILTIN_SLOTS, MAX_NAME_LEN, NAME_PATTERN, ProviderKind};
use crate::rules;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Rules {
    pub slot_name: NameRules,
    /// Every provider, with the roles it can serve (the first is its default).
    pub providers: Vec<ProviderRules>,
    /// The values of a slot's `device`.
    pub devices: Vec<String>,
    /// The range of a slot's `priority` (inclusive).
    pub priority: [u8; 2],
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NameRules {
    /// A regular expression a name must match (ECMAScript- and Rust-compatible).
    pub pattern: String,
    pub max_length: usize,
    /// The pattern in words, for messages.
    pub description: String,
    /// The built-in slots: their names may only be used for their role.
    pub builtin: Vec<BuiltinSlot>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct BuiltinSlot {
    pub name: String,
    pub role: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProviderRules {
    pub name: String,
    pub roles: Vec<String>,
    /// Whether the provider runs a process (else it is an external upstream: `upstream`
    /// instead of `model`).
    pub runs_process: bool,
    /// The slot fields this provider takes, in the order hal0 writes them.
    pub fields: Vec<String>,
    /// The fields a slot of this provider must set.
    pub required: Vec<String>,
}

pub fn rules() -> Rules {
    Rules {
        slot_name: NameRules {
            pattern: NAME_PATTERN.to_string(),
            max_length: MAX_NAME_LEN,
            description: "a lowercase letter (a-z), then lowercase letters, digits, '-' or '_'"
                .to_string(),
            builtin: BUILTIN_SLOTS
                .iter()
                .map(|(name, role)| BuiltinSlot {
                    name: name.to_string(),
                    role: role.as_str().to_string(),
                })
                .collect(),
        },
        providers: ProviderKind::ALL
            .iter()
            .map(|p| ProviderRules {
                name: p.as_str().to_string(),
                roles: p.roles().iter().map(|r| r.as_str().to_string()).collect(),
                runs_process: p.runs_process(),
                fields: field_names(|f| rules::applies(*p, f)),
                required: field_names(|f| rules::required(*p, f)),
            })
            .collect(),
        devices: crate::model::Device::ALL
            .iter()
            .map(|d| d.as_str().to_string())
            .collect(),
        priority: [*rules::PRIORITY_RANGE.start(), *rules::PRIORITY_RANGE.end()],
    }
}

fn field_names(keep: impl Fn(&str) -> bool) -> Vec<String> {
    rules::SLOT_FIELDS
        .iter()
        .filter(|f| keep(f))
        .map(|f| f.to_string())
        .collect()
}

pub async fn get() -> Json<Rules> {
    Json(rules())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SlotName;

    /// The served pattern says what `SlotName::parse` does.
    #[test]
    fn the_served_pattern_agrees_with_the_parser() {
        let r = rules();
        let re_ok = |s: &str| {
            // ^[a-z][a-z0-9_-]*$, checked by hand to keep regex out of the dependencies.
            r.slot_name.pattern == "^[a-z][a-z0-9_-]*$"
                && s.starts_with(|c: char| c.is_ascii_lowercase())
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
                && s.len() <= r.slot_name.max_length
        };
        for s in [
            "a",
            "fast",
            "my-slot_2",
            "Fast",
            "9lives",
            "my slot",
            "",
            "é",
            &"a".repeat(51),
        ] {
            assert_eq!(re_ok(s), SlotName::parse(s).is_ok(), "{s:?}");
        }
        assert_eq!(r.slot_name.builtin.len(), 4);
        assert!(
            r.providers
                .iter()
                .any(|p| p.name == "openai-compatible" && !p.runs_process)
        );
        assert_eq!(r.devices, ["cpu", "igpu", "npu"]);
    }

    /// The per-provider fields come from the same tables the rules check with.
    #[test]
    fn provider_fields_are_the_rules_tables() {
        let r = rules();
        let of = |name: &str| {
            r.providers
                .iter()
                .find(|p| p.name == name)
                .unwrap_or_else(|| panic!("no provider {name}"))
        };
        let llama = of("llama.cpp");
        assert_eq!(llama.required, ["provider", "model"]);
        assert!(llama.fields.iter().any(|f| f == "sleep_after"));
        assert!(!llama.fields.iter().any(|f| f == "upstream"));
        let up = of("openai-compatible");
        assert_eq!(up.required, ["provider", "upstream"]);
        assert!(!up.fields.iter().any(|f| f == "port" || f == "memory"));
        assert!(up.fields.iter().any(|f| f == "api_key_env"));
        assert_eq!(r.priority, [0, 100]);
    }
}
