//! One rule is one rule: every bad slot of tests/bad_slots is refused by hal0.toml's reader
//! (what the file source, the management API and the CLI use), by the typed rules, and by the
//! Kubernetes validation of a Slot (the controller and the in-cluster gateway), each naming the
//! same field. The API server's admission of the same table is tested in tests/kube_cluster.rs.

mod bad_slots;

use std::path::Path;

use bad_slots::{BAD, Bad};
use hal0::kube::validate::validate;
use hal0::model::SlotSpec;
use serde_json::{Value, json};

fn spec(bad: &Bad) -> Value {
    serde_json::from_str(bad.spec).unwrap_or_else(|e| panic!("{}: spec is not JSON: {e}", bad.what))
}

/// `slots.<name>.<field>`, or `slots.<name>` for the name (and for a missing field, which the
/// file can only point at by the slot's name).
fn file_refusal(bad: &Bad) -> Result<(), String> {
    let text = toml::to_string(&json!({"slots": {bad.name: spec(bad)}}))
        .map_err(|e| format!("cannot write TOML: {e}"))?;
    let errors = match hal0::config::parse(Path::new("hal0.toml"), &text) {
        Ok(_) => return Err(format!("hal0.toml admits it:\n{text}")),
        Err(e) => e,
    };
    let slot = format!("slots.{}", quoted(bad.name));
    let exact = if bad.field.is_empty() {
        slot.clone()
    } else {
        format!("{slot}.{}", bad.field)
    };
    let named = errors.iter().any(|d| {
        d.field == exact || (d.field == slot && d.message.contains(&format!("\"{}\"", bad.field)))
    });
    if named && errors.iter().all(|d| d.line.is_some()) {
        Ok(())
    } else {
        Err(format!("hal0.toml's errors do not name {exact}:\n{errors}"))
    }
}

fn quoted(name: &str) -> String {
    if name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        name.to_string()
    } else {
        format!("{name:?}")
    }
}

fn spec_path(bad: &Bad) -> String {
    if bad.field.is_empty() {
        "metadata.name".to_string()
    } else {
        format!("spec.{}", bad.field)
    }
}

/// The typed rules refuse it, naming the field; or it does not read as a `SlotSpec` at all.
fn typed_refusal(bad: &Bad) -> Result<(), String> {
    let read = serde_json::from_value::<SlotSpec>(spec(bad));
    let spec = match (read, bad.typed) {
        (Ok(spec), true) => spec,
        (Err(_), false) => return Ok(()),
        (Ok(_), false) => return Err("reads as a SlotSpec, and the table says it does not".into()),
        (Err(e), true) => return Err(format!("does not read as a SlotSpec: {e}")),
    };
    let found = if bad.file {
        hal0::rules::check_slot(bad.name, &spec)
    } else {
        hal0::rules::check_in_cluster(bad.name, &spec)
    };
    let want = spec_path(bad);
    if found.iter().any(|v| v.spec_path() == want) {
        Ok(())
    } else {
        Err(format!("the typed rules do not name {want}: {found:?}"))
    }
}

/// The controller's and the gateway's check of a Slot refuses it, naming `spec.<field>`.
fn slot_refusal(bad: &Bad) -> Result<(), String> {
    let object = json!({
        "apiVersion": "hal0.dev/v1alpha1",
        "kind": "Slot",
        "metadata": {"name": bad.name, "namespace": "ai"},
        "spec": spec(bad),
    });
    // How the controller and the gateway read a watched Slot.
    let slot = match hal0::kube::crd::read(object) {
        Ok(slot) => slot,
        // The controller marks a Slot it cannot read Degraded; the gateway leaves it out.
        Err(e) if !bad.typed => {
            return if e.starts_with(&format!("{}: ", spec_path(bad))) {
                Ok(())
            } else {
                Err(format!(
                    "the read error does not name {}: {e}",
                    spec_path(bad)
                ))
            };
        }
        Err(e) => return Err(format!("the Slot cannot be read: {e}")),
    };
    let err = match validate(&slot) {
        Ok(_) => return Err("the Slot passes validation".into()),
        Err(e) => e.to_string(),
    };
    if err.contains(&spec_path(bad)) {
        Ok(())
    } else {
        Err(format!(
            "the Slot's refusal does not name {}: {err}",
            spec_path(bad)
        ))
    }
}

#[test]
fn every_bad_slot_is_refused_everywhere_naming_the_same_field() {
    let mut failures = Vec::new();
    for bad in BAD {
        let mut checks = vec![
            ("typed rules", typed_refusal(bad)),
            ("Kubernetes Slot", slot_refusal(bad)),
        ];
        if bad.file {
            checks.push(("hal0.toml", file_refusal(bad)));
        }
        for (place, result) in checks {
            if let Err(e) = result {
                failures.push(format!("{} ({place}): {e}", bad.what));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn cluster_only_rules_are_admitted_by_the_file() {
    for bad in BAD.iter().filter(|b| !b.file) {
        let text = toml::to_string(&json!({"slots": {bad.name: spec(bad)}})).expect("toml");
        hal0::config::parse(Path::new("hal0.toml"), &text)
            .unwrap_or_else(|e| panic!("{}: hal0.toml should admit it:\n{e}", bad.what));
    }
}

#[test]
fn refusals_never_show_a_secret() {
    for (bad, secret) in [
        ("a secret as api_key_env", "sk-or-v1-abc"),
        ("an upstream with credentials", "hunter2"),
    ] {
        let bad = BAD.iter().find(|b| b.what == bad).expect("in the table");
        let text = toml::to_string(&json!({"slots": {bad.name: spec(bad)}})).expect("toml");
        let file = hal0::config::parse(Path::new("hal0.toml"), &text).expect_err("refused");
        assert!(!file.to_string().contains(secret), "{file}");
        let spec: SlotSpec = serde_json::from_value(spec(bad)).expect("typed");
        for v in hal0::rules::check_slot(bad.name, &spec) {
            assert!(!v.message.contains(secret), "{v}");
        }
    }
}
