//! The checked-in `crds/slot.yaml` is exactly what `hal0 crd` prints (generated from the Rust
//! type), and it is a valid structural CRD.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps,
};

const CHECKED_IN: &str = include_str!("../crds/slot.yaml");

#[test]
fn crds_slot_yaml_matches_the_rust_type() {
    let generated = hal0::kube::crd::crd_yaml().expect("the CRD serializes");
    assert!(
        generated == CHECKED_IN,
        "crds/slot.yaml drifted from src/kube/crd/; regenerate it with `cargo run -- crd > crds/slot.yaml`"
    );
}

#[test]
fn hal0_crd_prints_the_checked_in_file() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hal0"))
        .arg("crd")
        .output()
        .expect("hal0 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), CHECKED_IN);
}

/// Walks a schema and fails on what Kubernetes refuses in a structural schema: `properties`
/// next to `additionalProperties: false`, and objects or arrays without a type.
fn assert_structural(path: &str, s: &JSONSchemaProps) {
    if s.properties.as_ref().is_some_and(|p| !p.is_empty()) {
        assert!(
            s.additional_properties.is_none(),
            "{path}: properties and additionalProperties are mutually exclusive"
        );
    }
    let preserves = s.x_kubernetes_preserve_unknown_fields == Some(true)
        || s.x_kubernetes_int_or_string == Some(true);
    assert!(s.type_.is_some() || preserves, "{path}: no type");
    for (k, v) in s.properties.iter().flatten() {
        assert_structural(&format!("{path}.{k}"), v);
    }
    if let Some(k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaPropsOrArray::Schema(items)) = &s.items {
        assert_structural(&format!("{path}[]"), items);
    }
}

#[test]
fn the_checked_in_crd_is_structural() {
    let crd: CustomResourceDefinition = serde_yaml::from_str(CHECKED_IN).expect("typed CRD");
    assert_eq!(crd.metadata.name.as_deref(), Some("slots.hal0.dev"));
    let version = &crd.spec.versions[0];
    let schema = version
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("a schema");
    assert_structural("", schema);
    let spec = &schema.properties.as_ref().expect("properties")["spec"];
    let fields = spec.properties.as_ref().expect("spec properties");
    for f in [
        "provider",
        "model",
        "idle_timeout",
        "device",
        "args",
        "env",
        "aliases",
        "replicas",
    ] {
        assert!(fields.contains_key(f), "spec.{f} missing");
    }
}
