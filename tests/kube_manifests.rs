//! Every manifest in deploy/ parses into typed k8s-openapi objects; the CRD copies equal
//! crds/slot.yaml; the controller ConfigMap is a valid controller config and the sample Slot
//! passes the slot rules; the images are the hal0 version. The chart is checked with the real
//! helm in tests/helm_chart.rs.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::Deserialize;
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Parses one document into its typed object; returns (kind, name) and the JSON form.
fn typed(doc: serde_yaml::Value, origin: &str) -> ((String, String), Value) {
    let json: Value = serde_json::to_value(&doc).expect("yaml is json");
    let kind = json["kind"].as_str().unwrap_or_default().to_string();
    let name = json["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    fn check<T: for<'de> Deserialize<'de>>(v: &Value, origin: &str, kind: &str) {
        if let Err(e) = serde_json::from_value::<T>(v.clone()) {
            panic!("{origin}: {kind} does not parse: {e}");
        }
    }
    match kind.as_str() {
        "Namespace" => check::<Namespace>(&json, origin, &kind),
        "ServiceAccount" => check::<ServiceAccount>(&json, origin, &kind),
        "ClusterRole" => check::<ClusterRole>(&json, origin, &kind),
        "ClusterRoleBinding" => check::<ClusterRoleBinding>(&json, origin, &kind),
        "Role" => check::<Role>(&json, origin, &kind),
        "RoleBinding" => check::<RoleBinding>(&json, origin, &kind),
        "ConfigMap" => check::<ConfigMap>(&json, origin, &kind),
        "Deployment" => check::<Deployment>(&json, origin, &kind),
        "Service" => check::<Service>(&json, origin, &kind),
        "DaemonSet" => check::<DaemonSet>(&json, origin, &kind),
        "CustomResourceDefinition" => check::<CustomResourceDefinition>(&json, origin, &kind),
        "Slot" => check::<hal0::kube::crd::Slot>(&json, origin, &kind),
        "Kustomization" => {}
        other => panic!("{origin}: unexpected kind {other:?}"),
    }
    ((kind, name), json)
}

fn documents(text: &str, origin: &str) -> Vec<((String, String), Value)> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| serde_yaml::Value::deserialize(d).expect("valid YAML"))
        .filter(|d| !d.is_null())
        .map(|d| typed(d, origin))
        .collect()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Objects of a kustomization, following directory resources.
fn kustomize(dir: &Path) -> BTreeMap<(String, String), Value> {
    let k: serde_yaml::Value =
        serde_yaml::from_str(&read(&dir.join("kustomization.yaml"))).expect("kustomization");
    let mut out = BTreeMap::new();
    for r in k["resources"].as_sequence().expect("resources") {
        let r = r.as_str().expect("a path");
        let p = dir.join(r);
        if p.is_dir() {
            out.extend(kustomize(&p));
        } else {
            for (key, obj) in documents(&read(&p), r) {
                assert!(out.insert(key.clone(), obj).is_none(), "{key:?} twice");
            }
        }
    }
    out
}

fn deploy() -> BTreeMap<(String, String), Value> {
    kustomize(&Path::new(ROOT).join("deploy"))
}

#[test]
fn every_deploy_manifest_parses_and_is_in_the_kustomization() {
    let objects = deploy();
    for kind in [
        "Namespace",
        "CustomResourceDefinition",
        "ClusterRole",
        "Role",
        "Deployment",
        "Service",
        "DaemonSet",
        "Slot",
    ] {
        assert!(
            objects.keys().any(|(k, _)| k == kind),
            "deploy/ has no {kind}"
        );
    }
    let k = read(&Path::new(ROOT).join("deploy/kustomization.yaml"));
    for entry in std::fs::read_dir(Path::new(ROOT).join("deploy")).expect("deploy/") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .to_string();
        if name.ends_with(".yaml") && name != "kustomization.yaml" {
            assert!(
                k.contains(&name),
                "deploy/{name} is not in deploy/kustomization.yaml"
            );
            documents(&read(&Path::new(ROOT).join("deploy").join(&name)), &name);
        }
    }
}

#[test]
fn the_crd_copies_are_the_generated_one() {
    let crd = read(&Path::new(ROOT).join("crds/slot.yaml"));
    assert_eq!(
        read(&Path::new(ROOT).join("charts/hal0/crds/slot.yaml")),
        crd,
        "charts/hal0/crds/slot.yaml drifted; copy crds/slot.yaml over it"
    );
}

#[test]
fn the_controller_runs_alone_with_a_valid_config() {
    let objects = deploy();
    let d = &objects[&("Deployment".to_string(), "hal0-controller".to_string())];
    assert_eq!(d["spec"]["replicas"], 1);
    assert_eq!(d["spec"]["strategy"]["type"], "Recreate");
    let cm = &objects[&("ConfigMap".to_string(), "hal0-controller".to_string())];
    let text = cm["data"]["controller.yaml"]
        .as_str()
        .expect("controller.yaml");
    let cfg = hal0::kube::ClusterConfig::from_yaml(text, "deploy/controller.yaml")
        .expect("a valid controller config");
    assert_eq!(cfg.port, 8080);
}

#[test]
fn the_sample_slot_passes_the_slot_rules() {
    let objects = deploy();
    let s = &objects[&("Slot".to_string(), "primary".to_string())];
    let slot: hal0::kube::crd::Slot = serde_json::from_value(s.clone()).expect("a Slot");
    hal0::kube::validate::validate(&slot).expect("the sample Slot is valid");
}

/// The image every deploy/ workload runs is `hal0:<version>`, the chart's appVersion is the
/// crate's version (the chart's default image tag).
#[test]
fn the_image_tag_is_the_hal0_version() {
    let version = env!("CARGO_PKG_VERSION");
    let chart: serde_yaml::Value =
        serde_yaml::from_str(&read(&Path::new(ROOT).join("charts/hal0/Chart.yaml")))
            .expect("Chart.yaml");
    assert_eq!(
        chart["appVersion"].as_str(),
        Some(version),
        "charts/hal0/Chart.yaml appVersion is the hal0 version"
    );
    let mut images = 0;
    for ((kind, name), obj) in deploy() {
        if kind != "Deployment" && kind != "DaemonSet" {
            continue;
        }
        for c in obj["spec"]["template"]["spec"]["containers"]
            .as_array()
            .expect("containers")
        {
            assert_eq!(
                c["image"].as_str(),
                Some(format!("hal0:{version}").as_str()),
                "{kind}/{name}"
            );
            images += 1;
        }
    }
    assert_eq!(
        images, 5,
        "controller, gateway, two device plugins and the GTT plugin"
    );
}

#[test]
fn the_e2e_overlay_config_and_slot_are_valid() {
    let k: serde_yaml::Value =
        serde_yaml::from_str(&read(&Path::new(ROOT).join("e2e/kube/kustomization.yaml")))
            .expect("kustomization");
    let config = k["patches"]
        .as_sequence()
        .expect("patches")
        .iter()
        .filter_map(|p| serde_yaml::from_str::<serde_yaml::Value>(p["patch"].as_str()?).ok())
        .find(|p| p["kind"].as_str() == Some("ConfigMap"))
        .and_then(|p| p["data"]["controller.yaml"].as_str().map(str::to_string))
        .expect("the controller ConfigMap patch");
    let cfg = hal0::kube::ClusterConfig::from_yaml(&config, "e2e").expect("valid config");
    let llama = &cfg.images[&hal0::model::ProviderKind::LlamaCpp];
    assert_eq!(
        llama.command.as_deref(),
        Some(&["hal0-fake-provider".to_string()][..])
    );
    let slot: hal0::kube::crd::Slot =
        serde_yaml::from_str(&read(&Path::new(ROOT).join("e2e/kube/slot.yaml"))).expect("Slot");
    hal0::kube::validate::validate(&slot).expect("the e2e Slot is valid");
}
