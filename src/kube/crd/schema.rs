//! The Slot's OpenAPI schema, hardened so the API server refuses at the door what hal0 would
//! refuse later: schema patterns for names, durations and memory, and CEL rules
//! (`x-kubernetes-validations`) for what each provider requires or forbids and for the
//! built-in slot names' roles. Every rule is generated from the same tables the hal0.toml
//! reader checks ([`ProviderKind`], [`BUILTIN_SLOTS`], [`SlotName`]'s pattern), so the two
//! cannot drift. Pure: JSON in, JSON out.
//!
//! [`SlotName`]: crate::model::SlotName

use serde_json::{Value, json};

use crate::model::{
    BUILTIN_SLOTS, BYTESIZE_PATTERN, MAX_NAME_LEN, NAME_PATTERN, ProviderKind, Role,
};

/// One CEL rule with the message the API server returns when it fails.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub rule: String,
    pub message: String,
    /// The field reported (relative to where the rule sits), e.g. `.model`.
    pub field_path: Option<String>,
    /// `FieldValueRequired`, `FieldValueForbidden` or `FieldValueInvalid`.
    pub reason: &'static str,
}

impl Rule {
    fn to_json(&self) -> Value {
        let mut v = json!({"rule": self.rule, "message": self.message, "reason": self.reason});
        if let Some(p) = &self.field_path {
            v["fieldPath"] = json!(p);
        }
        v
    }
}

fn quoted(items: impl IntoIterator<Item = String>) -> String {
    let parts: Vec<String> = items.into_iter().map(|s| format!("'{s}'")).collect();
    format!("[{}]", parts.join(", "))
}

fn providers_where(f: impl Fn(ProviderKind) -> bool) -> Vec<ProviderKind> {
    ProviderKind::ALL.into_iter().filter(|p| f(*p)).collect()
}

fn names(ps: &[ProviderKind]) -> String {
    ps.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", ")
}

fn provider_in(path: &str, ps: &[ProviderKind]) -> String {
    format!(
        "{path}.provider in {}",
        quoted(ps.iter().map(|p| p.as_str().to_string()))
    )
}

/// Whether `field` is unset: lists and maps count as unset when empty.
fn absent(field: &str, is_collection: bool) -> String {
    if is_collection {
        format!("(!has(self.{field}) || size(self.{field}) == 0)")
    } else {
        format!("!has(self.{field})")
    }
}

fn is_collection(field: &str) -> bool {
    matches!(field, "args" | "env" | "aliases" | "models")
}

fn role_list(p: ProviderKind) -> String {
    p.roles()
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The rules on `spec`: required and misplaced fields per provider, roles each provider can
/// serve, and the one field that has no meaning in a cluster (`port`).
pub fn spec_rules() -> Vec<Rule> {
    let mut rules = Vec::new();
    let needs_model = providers_where(ProviderKind::needs_model);
    let process = providers_where(ProviderKind::runs_process);
    let upstream = providers_where(|p| !p.runs_process());
    rules.push(Rule {
        rule: format!("!({}) || has(self.model)", provider_in("self", &needs_model)),
        message: format!(
            "spec.model is required: providers {} need a model to serve, like \"hf:org/repo/file.gguf\"",
            names(&needs_model)
        ),
        field_path: Some(".model".into()),
        reason: "FieldValueRequired",
    });
    rules.push(Rule {
        rule: format!("!({}) || has(self.upstream)", provider_in("self", &upstream)),
        message: format!(
            "spec.upstream is required: provider {} forwards to an external API; give its base URL, like \"https://openrouter.ai/api/v1\"",
            names(&upstream)
        ),
        field_path: Some(".upstream".into()),
        reason: "FieldValueRequired",
    });
    for field in ProviderKind::UPSTREAM_ONLY_FIELDS {
        rules.push(Rule {
            rule: format!(
                "!({}) || {}",
                provider_in("self", &process),
                absent(field, is_collection(field))
            ),
            message: format!(
                "spec.{field} only applies to provider \"openai-compatible\"; remove it for providers {}",
                names(&process)
            ),
            field_path: Some(format!(".{field}")),
            reason: "FieldValueForbidden",
        });
    }
    for field in ProviderKind::PROCESS_ONLY_FIELDS {
        if field == "port" {
            continue; // refused for every provider below
        }
        rules.push(Rule {
            rule: format!(
                "!({}) || {}",
                provider_in("self", &upstream),
                absent(field, is_collection(field))
            ),
            message: format!(
                "spec.{field} only applies to slots that run a process; provider {} runs none",
                names(&upstream)
            ),
            field_path: Some(format!(".{field}")),
            reason: "FieldValueForbidden",
        });
    }
    rules.push(Rule {
        rule: "!has(self.port)".into(),
        message: "spec.port is not used in a cluster: every slot pod listens on the controller's port behind the Slot's Service; remove it".into(),
        field_path: Some(".port".into()),
        reason: "FieldValueForbidden",
    });
    let per_provider: Vec<String> = ProviderKind::ALL
        .into_iter()
        .map(|p| {
            format!(
                "(self.provider == '{}' && self.role in {})",
                p.as_str(),
                quoted(p.roles().iter().map(|r| r.as_str().to_string()))
            )
        })
        .collect();
    let served: Vec<String> = ProviderKind::ALL
        .into_iter()
        .map(|p| format!("{}: {}", p.as_str(), role_list(p)))
        .collect();
    rules.push(Rule {
        rule: format!("!has(self.role) || {}", per_provider.join(" || ")),
        message: format!(
            "spec.role is not one the provider serves ({})",
            served.join("; ")
        ),
        field_path: Some(".role".into()),
        reason: "FieldValueInvalid",
    });
    rules
}

fn providers_serving(role: Role) -> Vec<ProviderKind> {
    providers_where(|p| p.roles().contains(&role))
}

/// The rules on the whole object: the Slot's name is a slot name, and a built-in name keeps
/// its role.
pub fn object_rules() -> Vec<Rule> {
    let mut rules = vec![
        Rule {
            rule: format!("self.metadata.name.matches('{}')", NAME_PATTERN),
            message: format!(
                "metadata.name must be a slot name: a lowercase letter, then lowercase letters, digits and '-' ({})",
                NAME_PATTERN
            ),
            field_path: None,
            reason: "FieldValueInvalid",
        },
        Rule {
            rule: format!("size(self.metadata.name) <= {}", MAX_NAME_LEN),
            message: format!(
                "metadata.name is longer than {} characters (it becomes part of the Deployment and Service names)",
                MAX_NAME_LEN
            ),
            field_path: None,
            reason: "FieldValueInvalid",
        },
    ];
    for (name, role) in BUILTIN_SLOTS {
        let ps = providers_serving(role);
        rules.push(Rule {
            rule: format!(
                "self.metadata.name != '{name}' || ({} && (!has(self.spec.role) || self.spec.role == '{}'))",
                provider_in("self.spec", &ps),
                role.as_str()
            ),
            message: format!(
                "a Slot named \"{name}\" is the built-in {role} slot: spec.provider must be one of {} and spec.role, if set, must be \"{}\"; for anything else, use another name",
                names(&ps),
                role.as_str()
            ),
            field_path: Some(".spec.provider".into()),
            reason: "FieldValueInvalid",
        });
    }
    rules
}

/// The schema of `memory`: an integer byte count, or a string hal0 parses (`8GiB`, `8Gi`).
fn memory_schema(description: Option<&Value>) -> Value {
    let mut v = json!({
        "x-kubernetes-int-or-string": true,
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "pattern": BYTESIZE_PATTERN,
        "minimum": 0,
        "maxLength": 32,
    });
    if let Some(d) = description {
        v["description"] = d.clone();
    }
    v
}

/// Drops `format`s the API server does not know (schemars writes `uint8`, `uint16`...), which
/// it would warn about on every apply.
fn drop_unknown_formats(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if map
                .get("format")
                .and_then(Value::as_str)
                .is_some_and(|f| f.starts_with("uint"))
            {
                map.remove("format");
            }
            for child in map.values_mut() {
                drop_unknown_formats(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(drop_unknown_formats),
        _ => {}
    }
}

/// Hardens a Slot `openAPIV3Schema` (as JSON) in place.
pub fn harden(schema: &mut Value) {
    drop_unknown_formats(schema);
    let rules = |rs: Vec<Rule>| Value::Array(rs.iter().map(Rule::to_json).collect());
    schema["x-kubernetes-validations"] = rules(object_rules());
    let spec = &mut schema["properties"]["spec"];
    spec["x-kubernetes-validations"] = rules(spec_rules());
    let props = &mut spec["properties"];
    let description = props["memory"].get("description").cloned();
    props["memory"] = memory_schema(description.as_ref());
    // Bounded lists and strings keep the CEL cost estimate (and etcd objects) small.
    for list in ["args", "aliases", "models"] {
        if props[list].is_object() {
            props[list]["maxItems"] = json!(256);
            props[list]["items"]["maxLength"] = json!(4096);
        }
    }
    if props["env"].is_object() {
        props["env"]["maxProperties"] = json!(256);
        props["env"]["additionalProperties"]["maxLength"] = json!(32768);
    }
    for s in ["model", "upstream", "api_key_env"] {
        if props[s].is_object() {
            props[s]["maxLength"] = json!(4096);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_provider_that_needs_a_model_is_in_the_model_rule() {
        let r = &spec_rules()[0];
        for p in ProviderKind::ALL {
            assert_eq!(
                r.rule.contains(&format!("'{}'", p.as_str())),
                p.needs_model(),
                "{p:?}"
            );
        }
    }

    #[test]
    fn every_builtin_name_has_a_rule() {
        let rules = object_rules();
        for (name, _) in BUILTIN_SLOTS {
            assert!(
                rules.iter().any(|r| r.rule.contains(&format!("'{name}'"))),
                "{name}"
            );
        }
    }

    #[test]
    fn memory_becomes_int_or_string_with_the_parser_pattern() {
        let mut schema = json!({"properties": {"spec": {"properties": {
            "memory": {"type": "string", "nullable": true, "description": "d"},
            "args": {"type": "array", "items": {"type": "string"}}
        }}}});
        harden(&mut schema);
        let m = &schema["properties"]["spec"]["properties"]["memory"];
        assert_eq!(m["x-kubernetes-int-or-string"], true);
        assert_eq!(m["pattern"], BYTESIZE_PATTERN);
        assert_eq!(m["description"], "d");
        assert!(schema["x-kubernetes-validations"].is_array());
    }
}
