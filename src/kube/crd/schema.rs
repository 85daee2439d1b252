//! The Slot's OpenAPI schema, hardened so the API server refuses at the door what hal0 would
//! refuse later: schema patterns for names, durations and memory, and CEL rules
//! (`x-kubernetes-validations`) for what each provider requires or forbids and for the
//! built-in slot names' roles. Every rule is generated from the tables of `crate::rules`, the
//! rules hal0.toml and the controller check on the typed spec (which fields each provider
//! requires or refuses, what a cluster refuses, which providers sleep, the ranges and name
//! patterns), so the schema and the rules cannot drift. Rules the schema cannot express
//! (URLs, non-blank strings, a probe's role) are refused by the controller (`Degraded`,
//! `InvalidSpec`). Pure: JSON in, JSON out.

use serde_json::{Value, json};

use crate::model::{
    BUILTIN_SLOTS, BYTESIZE_PATTERN, MAX_NAME_LEN, NAME_PATTERN, ProviderKind, Role,
};
use crate::rules::{self, CLUSTER_FORBIDDEN, COLLECTION_FIELDS, SLOT_FIELDS};

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
    COLLECTION_FIELDS.contains(&field)
}

/// The rules on `spec`: required and misplaced fields per provider, the fields a cluster
/// refuses, roles each provider can serve, which providers sleep, the probe's pair and the
/// name of the key's variable.
pub fn spec_rules() -> Vec<Rule> {
    let mut rules = Vec::new();
    for field in SLOT_FIELDS {
        let needs = providers_where(|p| rules::required(p, field));
        if field == "provider" || needs.is_empty() {
            continue;
        }
        let message = match field {
            "upstream" => format!(
                "spec.upstream is required: provider {} forwards to an external API; give its base URL, like \"https://openrouter.ai/api/v1\"",
                names(&needs)
            ),
            _ => format!(
                "spec.{field} is required: providers {} need a {field} to serve, like \"hf:org/repo/file.gguf\"",
                names(&needs)
            ),
        };
        rules.push(Rule {
            rule: format!("!({}) || has(self.{field})", provider_in("self", &needs)),
            message,
            field_path: Some(format!(".{field}")),
            reason: "FieldValueRequired",
        });
    }
    for field in SLOT_FIELDS {
        let refused = providers_where(|p| !rules::applies(p, field));
        if refused.is_empty() || CLUSTER_FORBIDDEN.iter().any(|(f, _)| *f == field) {
            continue; // cluster-forbidden fields are refused for every provider below
        }
        let message = if refused.iter().all(|p| p.runs_process()) {
            format!(
                "spec.{field} only applies to provider \"openai-compatible\"; remove it for providers {}",
                names(&refused)
            )
        } else {
            format!(
                "spec.{field} only applies to slots that run a process; provider {} runs none",
                names(&refused)
            )
        };
        rules.push(Rule {
            rule: format!(
                "!({}) || {}",
                provider_in("self", &refused),
                absent(field, is_collection(field))
            ),
            message,
            field_path: Some(format!(".{field}")),
            reason: "FieldValueForbidden",
        });
    }
    for (field, why) in CLUSTER_FORBIDDEN {
        rules.push(Rule {
            rule: format!("!has(self.{field})"),
            message: format!("spec.{field} is {why}"),
            field_path: Some(format!(".{field}")),
            reason: "FieldValueForbidden",
        });
    }
    // Upstreams are refused above (sleep_after applies only to slots that run a process).
    let sleepers = providers_where(|p| rules::can_sleep(p) || !p.runs_process());
    rules.push(Rule {
        rule: format!("!has(self.sleep_after) || {}", provider_in("self", &sleepers)),
        message: format!(
            "spec.sleep_after: this provider cannot sleep (release its model and keep its process); only {} can. Remove sleep_after, or use idle_timeout with unload_idle",
            names(&providers_where(rules::can_sleep))
        ),
        field_path: Some(".sleep_after".into()),
        reason: "FieldValueForbidden",
    });
    rules.push(Rule {
        rule: "!has(self.probe) || has(self.probe.prompt) == has(self.probe.expect)".into(),
        message: "spec.probe: set prompt and expect together (the message to send and the text its answer must contain), or neither (probe: {}) for the built-in check".into(),
        field_path: Some(".probe".into()),
        reason: "FieldValueInvalid",
    });
    // CEL, not a schema pattern: a pattern's refusal would echo the value, often a pasted key.
    rules.push(Rule {
        rule: format!(
            "!has(self.api_key_env) || self.api_key_env.matches('{}')",
            rules::ENV_VAR_PATTERN
        ),
        message: format!("spec.api_key_env {}", rules::ENV_VAR_NAME_MESSAGE),
        field_path: Some(".api_key_env".into()),
        reason: "FieldValueInvalid",
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
        .map(|p| format!("{}: {}", p.as_str(), rules::role_list(p)))
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
    if props["priority"].is_object() {
        props["priority"]["minimum"] = json!(rules::PRIORITY_RANGE.start());
        props["priority"]["maximum"] = json!(rules::PRIORITY_RANGE.end());
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
