//! A Slot's spec is checked by the SAME rules as a `[slots.<name>]` table: the spec is written
//! out as a one-slot hal0.toml document and handed to `config::parse`. On top of that, the one
//! field that cannot work in a cluster (`port`) is refused.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::config;
use crate::kube::crd::Slot;
use crate::model::{SlotName, SlotSpec};

/// Why a Slot is not applied. Each message names the field at fault (`spec.<field>`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSlot {
    #[error("metadata.name {name:?} is not a slot name: {reason}")]
    BadName { name: String, reason: String },
    #[error("the Slot has no metadata.name")]
    NoName,
    #[error("{}", .0.join("; "))]
    Rules(Vec<String>),
}

#[derive(Serialize)]
struct OneSlotDocument<'a> {
    slots: BTreeMap<&'a str, &'a SlotSpec>,
}

/// The Slot's name, if its spec passes every hal0.toml rule and uses no TOML-only field.
pub fn validate(slot: &Slot) -> Result<SlotName, InvalidSlot> {
    let raw = slot.metadata.name.as_deref().ok_or(InvalidSlot::NoName)?;
    let name = SlotName::parse(raw).map_err(|e| InvalidSlot::BadName {
        name: raw.to_string(),
        reason: e.to_string(),
    })?;
    let spec = &slot.spec.slot;
    let mut problems = Vec::new();
    if spec.port.is_some() {
        problems.push(
            "spec.port: not used in a cluster: every slot pod listens on the controller's port behind the Slot's Service; remove it".to_string(),
        );
    }
    let doc = OneSlotDocument {
        slots: BTreeMap::from([(name.as_str(), spec)]),
    };
    match toml::to_string(&doc) {
        Err(e) => problems.push(format!("spec: cannot be checked: {e}")),
        Ok(text) => {
            let shown = format!("Slot {raw}");
            if let Err(errors) = config::parse(Path::new(&shown), &text) {
                let prefix = format!("slots.{name}.");
                for d in errors {
                    if d.field == format!("slots.{name}.port") {
                        continue;
                    }
                    let field = d.field.strip_prefix(&prefix).unwrap_or(&d.field);
                    problems.push(format!("spec.{field}: {}", d.message));
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(name)
    } else {
        Err(InvalidSlot::Rules(problems))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::crd::SlotResourceSpec;
    use crate::model::ProviderKind;

    fn slot(name: &str, spec: SlotSpec) -> Slot {
        Slot::new(
            name,
            SlotResourceSpec {
                slot: spec,
                replicas: None,
            },
        )
    }

    #[test]
    fn a_valid_spec_passes() {
        let s = slot(
            "fast",
            SlotSpec::new(ProviderKind::LlamaCpp, Some("hf:o/r/m.gguf")),
        );
        assert_eq!(validate(&s).map(|n| n.to_string()), Ok("fast".to_string()));
    }

    #[test]
    fn toml_rules_apply_to_slots_with_spec_paths() {
        let mut spec = SlotSpec::new(ProviderKind::LlamaCpp, Some("hf:o/r/m.gguf"));
        spec.upstream = Some("http://example.invalid/v1".into());
        let err = validate(&slot("fast", spec)).expect_err("upstream on llama.cpp");
        assert!(err.to_string().contains("spec.upstream"), "{err}");
    }

    #[test]
    fn builtin_names_keep_their_roles() {
        let spec = SlotSpec::new(ProviderKind::Kokoro, Some("kokoro-82m"));
        let err = validate(&slot("primary", spec)).expect_err("primary must chat");
        assert!(err.to_string().contains("spec.provider"), "{err}");
    }

    #[test]
    fn port_is_refused_in_a_cluster() {
        let mut spec = SlotSpec::new(ProviderKind::LlamaCpp, Some("hf:o/r/m.gguf"));
        spec.port = Some(8090);
        let err = validate(&slot("fast", spec)).expect_err("port");
        assert!(
            err.to_string().contains("spec.port: not used in a cluster"),
            "{err}"
        );
    }

    #[test]
    fn names_kubernetes_allows_but_hal0_does_not_are_refused() {
        let spec = SlotSpec::new(ProviderKind::LlamaCpp, Some("hf:o/r/m.gguf"));
        assert!(matches!(
            validate(&slot("my.slot", spec)),
            Err(InvalidSlot::BadName { .. })
        ));
    }
}
