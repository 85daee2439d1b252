//! A Slot's spec is checked by the SAME rules as a `[slots.<name>]` table of hal0.toml:
//! `rules::check_in_cluster`, the slot's own rules on the typed spec, plus the fields a
//! cluster has no use for (`port`). Rules on the set of slots do not apply one by one: Slots
//! claiming one name are marked across the namespace (`claims`).

use crate::kube::crd::Slot;
use crate::model::SlotName;
use crate::rules;

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

/// The Slot's name, if its spec passes every slot rule and uses no field a cluster refuses.
pub fn validate(slot: &Slot) -> Result<SlotName, InvalidSlot> {
    let raw = slot.metadata.name.as_deref().ok_or(InvalidSlot::NoName)?;
    let name = SlotName::parse(raw).map_err(|e| InvalidSlot::BadName {
        name: raw.to_string(),
        reason: e.to_string(),
    })?;
    let problems: Vec<String> = rules::check_in_cluster(raw, &slot.spec.slot)
        .into_iter()
        .map(|v| format!("{}: {}", v.spec_path(), v.message))
        .collect();
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
    use crate::model::{ProviderKind, SlotSpec};

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
    fn file_rules_apply_to_slots_with_spec_paths() {
        let mut spec = SlotSpec::new(ProviderKind::LlamaCpp, Some("hf:o/r/m.gguf"));
        spec.upstream = Some("http://example.invalid/v1".into());
        let err = validate(&slot("fast", spec)).expect_err("upstream on llama.cpp");
        assert!(err.to_string().contains("spec.upstream"), "{err}");
    }

    #[test]
    fn a_missing_field_is_named_as_a_spec_field() {
        let spec = SlotSpec::new(ProviderKind::LlamaCpp, None);
        let err = validate(&slot("fast", spec)).expect_err("no model");
        assert!(
            err.to_string()
                .starts_with("spec.model: missing required key"),
            "{err}"
        );
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
