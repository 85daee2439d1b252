//! Model names claimed by the Slots of one namespace: each Slot's name, its `aliases` and its
//! upstream `models`. Two Slots claiming one name make requests for it ambiguous (the same rule
//! hal0.toml enforces across its slots): both are marked Degraded, naming each other, and the
//! gateway drops that name from every Slot's aliases and upstream models (a Slot's own name
//! still routes to it). What a Slot claims is `rules::claims`, as for hal0.toml. Pure; the
//! controller reads claims from the raw JSON, so it works for Slots that do not decode.

use serde_json::Value;

pub use crate::rules::Claim;

/// What a Slot (its `metadata.name` and raw `spec`) claims: the same claims as a slot of
/// hal0.toml (`rules::claims`), read from the JSON.
pub fn claims_of(slot_name: &str, spec: &Value) -> Vec<Claim> {
    let strings = |key: &str| {
        spec[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
    };
    crate::rules::claims(slot_name, strings("aliases"), strings("models"))
}

/// One name claimed by this Slot and another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub name: String,
    pub kind: &'static str,
    pub other: String,
    pub other_kind: &'static str,
}

impl Conflict {
    pub fn message(&self) -> String {
        format!(
            "{} {:?} is also claimed by Slot {:?} (as its {}): requests for it would be ambiguous, so the gateway routes no alias or upstream model of that name; give it to one Slot only",
            self.kind, self.name, self.other, self.other_kind
        )
    }
}

/// The conflicts of `me` with `peers` (name and claims of the other Slots of its namespace).
pub fn conflicts<'a>(
    me: &str,
    mine: &[Claim],
    peers: impl IntoIterator<Item = (&'a str, Vec<Claim>)>,
) -> Vec<Conflict> {
    let mut out = Vec::new();
    for (other, theirs) in peers {
        if other == me {
            continue;
        }
        for c in mine {
            if let Some(t) = theirs.iter().find(|t| t.name == c.name) {
                out.push(Conflict {
                    name: c.name.clone(),
                    kind: c.kind,
                    other: other.to_string(),
                    other_kind: t.kind,
                });
            }
        }
    }
    out.sort_by(|a, b| (&a.name, &a.other).cmp(&(&b.name, &b.other)));
    out
}

/// The names claimed by more than one of `slots` (each Slot's claims).
pub fn ambiguous(
    slots: impl IntoIterator<Item = Vec<Claim>>,
) -> std::collections::BTreeSet<String> {
    let mut seen: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for claims in slots {
        let mut names: Vec<String> = claims.into_iter().map(|c| c.name).collect();
        names.sort();
        names.dedup();
        for n in names {
            *seen.entry(n).or_default() += 1;
        }
    }
    seen.into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(k, _)| k)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_shared_alias_conflicts_both_ways() {
        let a = claims_of("a", &json!({"aliases": ["quick"]}));
        let b = claims_of("b", &json!({"aliases": ["quick", "b"]}));
        let ab = conflicts("a", &a, [("b", b.clone())]);
        assert_eq!(ab.len(), 1);
        assert!(
            ab[0]
                .message()
                .contains("alias \"quick\" is also claimed by Slot \"b\"")
        );
        assert_eq!(conflicts("b", &b, [("a", a)]).len(), 1);
    }

    #[test]
    fn an_alias_equal_to_another_slot_name_conflicts() {
        let a = claims_of("a", &json!({"aliases": ["b"]}));
        let b = claims_of("b", &json!({}));
        let c = conflicts("a", &a, [("b", b)]);
        assert_eq!(c[0].other_kind, "slot name");
    }

    #[test]
    fn distinct_names_do_not_conflict() {
        let a = claims_of("a", &json!({"aliases": ["x"]}));
        let b = claims_of("b", &json!({"models": ["y"]}));
        assert!(conflicts("a", &a, [("b", b)]).is_empty());
    }
}
