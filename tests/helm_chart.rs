//! The Helm chart (charts/hal0) with the real helm that scripts/setup-kube.sh builds, installed
//! into the real control plane of tests/cluster (nothing else installed: `cluster_bare`).
//!
//! Covered: `helm lint --strict` with the default and with other values; `helm template` of
//! release hal0 equals `kubectl kustomize deploy/` (names, RBAC rules, workloads, CRD; labels
//! aside); other values (device plugins off, a sample Slot, a custom image, a one-namespace
//! controller); bad values refused by values.schema.json, which agrees with `hal0 controller`
//! on a table of controller configs; `helm install` with the testenv's kubeconfig, as a user
//! runs it, kwok running the pods; releases side by side, a second release of the same name
//! refused, an uninstall that leaves the others alone; `hal0 controller` and the
//! gateway running as a release's ServiceAccounts (the chart's RBAC is enough, cluster-wide and
//! one-namespace); the documented CRD upgrade step (docs/kubernetes.md) over a release
//! installed with an older CRD; every helm/kubectl line of docs/kubernetes.md's helm blocks, run
//! as written.

mod cluster;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use cluster::{
    Out, WAIT, bin_dir, cluster_bare, free_port, get, repo, slot_yaml, spawn_hal0, until,
};
use serde::Deserialize;
use serde_json::Value;

const CHART: &str = "charts/hal0";

/// Values that differ from every default that changes what is rendered.
const OTHER_VALUES: &[&str] = &[
    "--set=devicePlugins.igpu.enabled=false",
    "--set=devicePlugins.npu.enabled=false",
    "--set=sampleSlot.enabled=true",
    "--set=sampleSlot.device=cpu",
    "--set=image.repository=registry.example/hal0",
    "--set=image.tag=1.2.3",
    "--set=controller.watchAllNamespaces=false",
];

/// helm, run from the repository with its state (config, cache, data) kept out of $HOME.
fn helm(args: &[&str]) -> Out {
    let home = Path::new(env!("CARGO_TARGET_TMPDIR")).join("helm-home");
    let out = Command::new(bin_dir().join("helm"))
        .args(args)
        .current_dir(repo())
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"))
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("run helm");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// helm against the test control plane, with its kubeconfig (as a user's `helm install`).
fn helm_kube(args: &[&str]) -> Out {
    let kc = cluster_bare().kubeconfig.display().to_string();
    let mut all = vec!["--kubeconfig", kc.as_str()];
    all.extend_from_slice(args);
    helm(&all)
}

fn ok(out: Out, what: &str) -> Out {
    assert!(
        out.ok(),
        "{what} failed ({}):\n{}\n{}",
        out.code,
        out.stdout,
        out.stderr
    );
    out
}

/// The objects of a multi-document YAML stream.
fn documents(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| serde_yaml::Value::deserialize(d).expect("valid YAML"))
        .filter(|d| !d.is_null())
        .map(|d| serde_json::to_value(d).expect("yaml is json"))
        .collect()
}

fn by_kind_and_name(objects: Vec<Value>) -> BTreeMap<(String, String), Value> {
    let mut out = BTreeMap::new();
    for o in objects {
        let key = (
            o["kind"].as_str().unwrap_or_default().to_string(),
            o["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
        assert!(out.insert(key.clone(), o).is_none(), "{key:?} twice");
    }
    out
}

fn template(release: &str, namespace: &str, extra: &[&str]) -> BTreeMap<(String, String), Value> {
    let mut args = vec!["template", release, CHART, "--namespace", namespace];
    args.extend_from_slice(extra);
    let out = ok(helm(&args), "helm template");
    by_kind_and_name(documents(&out.stdout))
}

fn labels(o: &Value) -> BTreeMap<String, String> {
    o["metadata"]["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

fn containers(o: &Value) -> Vec<Value> {
    o["spec"]["template"]["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[ignore = "needs the Kubernetes control plane built by scripts/setup-kube.sh; scripts/test.sh runs it"]
#[test]
fn helm_lint_is_clean() {
    for values in [&[][..], OTHER_VALUES] {
        let mut args = vec!["lint", "--strict", CHART];
        args.extend_from_slice(values);
        let out = ok(helm(&args), &format!("helm lint --strict {values:?}"));
        assert!(
            out.stdout.contains("1 chart(s) linted, 0 chart(s) failed"),
            "{}",
            out.stdout
        );
        assert!(
            !out.stdout.contains("[WARNING]") && !out.stdout.contains("[ERROR]"),
            "helm lint {values:?}:\n{}",
            out.stdout
        );
    }
}

/// Released as hal0 in namespace hal0, the chart installs what deploy/ holds: the same objects
/// under the same names, equal field for field once labels are set aside (the chart adds Helm's;
/// deploy/'s are a subset of them), plus a config hash that restarts the controller on a config
/// change.
#[ignore = "needs the Kubernetes control plane built by scripts/setup-kube.sh; scripts/test.sh runs it"]
#[test]
fn helm_template_renders_what_deploy_holds() {
    let mut chart = template(
        "hal0",
        "hal0",
        &["--set=sampleSlot.enabled=true", "--include-crds"],
    );
    let out = cluster::kubectl_with(
        Path::new("/dev/null"),
        &["kustomize", &repo().join("deploy").display().to_string()],
        None,
    );
    assert!(out.ok(), "kubectl kustomize deploy/: {}", out.stderr);
    let mut deploy = by_kind_and_name(documents(&out.stdout));
    deploy
        .remove(&("Namespace".to_string(), "hal0".to_string()))
        .expect("deploy/ creates namespace hal0; helm installs into the release namespace");
    assert_eq!(
        chart.keys().collect::<Vec<_>>(),
        deploy.keys().collect::<Vec<_>>(),
        "the chart (release hal0) and deploy/ have different objects"
    );
    for (key, want) in deploy.iter_mut() {
        let got = chart.get_mut(key).expect("same keys");
        let (have, need) = (labels(got), labels(want));
        for (k, v) in &need {
            assert_eq!(have.get(k), Some(v), "{key:?}: label {k} of deploy/");
        }
        if key.0 != "CustomResourceDefinition" {
            assert_eq!(have["app.kubernetes.io/instance"], "hal0", "{key:?}");
            assert_eq!(have["app.kubernetes.io/managed-by"], "Helm", "{key:?}");
        }
        got["metadata"]["labels"] = Value::Null;
        want["metadata"]["labels"] = Value::Null;
        if key == &("Deployment".to_string(), "hal0-controller".to_string()) {
            let annotations = &mut got["spec"]["template"]["metadata"]["annotations"];
            assert!(
                annotations["hal0.dev/config-hash"].is_string(),
                "the controller restarts when its config changes"
            );
            annotations
                .as_object_mut()
                .expect("annotations")
                .remove("hal0.dev/config-hash");
            if annotations.as_object().is_some_and(|a| a.is_empty()) {
                got["spec"]["template"]["metadata"]
                    .as_object_mut()
                    .expect("metadata")
                    .remove("annotations");
            }
        }
        if key.0 == "ConfigMap" {
            let parse = |v: &Value| {
                hal0::kube::ClusterConfig::from_yaml(
                    v["data"]["controller.yaml"].as_str().unwrap_or_default(),
                    "controller.yaml",
                )
                .expect("a valid controller config")
            };
            assert_eq!(parse(got), parse(want), "controller config");
            got["data"] = Value::Null;
            want["data"] = Value::Null;
        }
        // kubectl kustomize writes the CRD's `maximum: 65535.0` as 65535.
        numbers_as_f64(got);
        numbers_as_f64(want);
        assert_eq!(*got, *want, "{key:?} differs between the chart and deploy/");
    }
}

fn numbers_as_f64(v: &mut Value) {
    match v {
        Value::Number(n) => {
            if let Some(f) = n.as_f64().and_then(serde_json::Number::from_f64) {
                *n = f;
            }
        }
        Value::Array(a) => a.iter_mut().for_each(numbers_as_f64),
        Value::Object(o) => o.values_mut().for_each(numbers_as_f64),
        _ => {}
    }
}

#[ignore = "needs the Kubernetes control plane built by scripts/setup-kube.sh; scripts/test.sh runs it"]
#[test]
fn helm_template_follows_the_values() {
    let chart = template("edge", "ai", OTHER_VALUES);
    assert!(
        !chart.keys().any(|(k, _)| k == "DaemonSet"),
        "device plugins off"
    );
    assert!(
        !chart
            .keys()
            .any(|(k, _)| k == "ClusterRole" || k == "ClusterRoleBinding"),
        "a one-namespace controller needs nothing cluster-wide"
    );
    for ((kind, name), o) in &chart {
        assert_eq!(o["metadata"]["namespace"], "ai", "{kind}/{name}");
        assert_eq!(
            labels(o)["app.kubernetes.io/instance"],
            "edge",
            "{kind}/{name}"
        );
        if kind != "Slot" {
            assert!(
                name.starts_with("edge-hal0-"),
                "{kind}/{name} is release-scoped"
            );
        }
        for c in containers(o) {
            assert_eq!(c["image"], "registry.example/hal0:1.2.3", "{kind}/{name}");
        }
    }
    // The Role has the rules the default ClusterRole has.
    let defaults = template("edge", "ai", &[]);
    let key = |k: &str| (k.to_string(), "edge-hal0-controller".to_string());
    assert_eq!(
        chart[&key("Role")]["rules"],
        defaults[&key("ClusterRole")]["rules"]
    );
    assert_eq!(chart[&key("RoleBinding")]["roleRef"]["kind"], "Role");
    let env = containers(&chart[&key("Deployment")])[0]["env"].clone();
    assert!(
        env.as_array()
            .into_iter()
            .flatten()
            .any(|e| e["name"] == "HAL0_WATCH_NAMESPACE"
                && e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"),
        "the controller watches its own namespace: {env}"
    );
    let slot: hal0::kube::crd::Slot =
        serde_json::from_value(chart[&("Slot".to_string(), "primary".to_string())].clone())
            .expect("the sample Slot is a Slot");
    hal0::kube::validate::validate(&slot).expect("the sample Slot is valid");

    // The default image is hal0:<appVersion>, the image docs/kubernetes.md says how to build.
    for c in containers(&defaults[&key("Deployment")]) {
        assert_eq!(c["image"], format!("hal0:{}", env!("CARGO_PKG_VERSION")));
    }
}

/// values.schema.json refuses bad values at the door, naming the value.
#[ignore = "needs the Kubernetes control plane built by scripts/setup-kube.sh; scripts/test.sh runs it"]
#[test]
fn bad_values_are_refused_naming_the_value() {
    let cases: &[(&str, &str)] = &[
        ("--set=image.repository=", "/image/repository"),
        ("--set=image.repository=null", "repository"),
        ("--set=image.pullPolicy=Sometimes", "/image/pullPolicy"),
        (
            "--set=controller.watchAllNamespaces=maybe",
            "/controller/watchAllNamespaces",
        ),
        ("--set=gateway.port=70000", "/gateway/port"),
        (
            "--set-string=gateway.loadTimeout=10 minutes",
            "/gateway/loadTimeout",
        ),
        (
            "--set=devicePlugins.igpu.shared=0",
            "/devicePlugins/igpu/shared",
        ),
        ("--set=devicePlugins.gpu.enabled=true", "'gpu' not allowed"),
        ("--set=sampleSlot.name=Big", "/sampleSlot/name"),
        ("--set=sampleSlot.device=gpu", "/sampleSlot/device"),
        ("--set=imagee.tag=1", "'imagee' not allowed"),
    ];
    for (value, names) in cases {
        let out = helm(&["template", "x", CHART, value]);
        assert!(!out.ok(), "{value} was accepted");
        assert!(
            out.stderr
                .contains("values don't meet the specifications of the schema")
                && out.stderr.contains(names),
            "{value}: the error names {names}: {}",
            out.stderr
        );
    }
}

/// `a` with `b` merged into it, as helm merges a values file over values.yaml.
fn merge(a: &mut Value, b: &Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b.clone(),
    }
}

/// The schema of `controller.config` and the controller (`ClusterConfig`) agree on a table of
/// configs: helm accepts each exactly when `hal0 controller` would, so a typo fails `helm
/// install` instead of crash-looping the controller.
#[ignore = "needs the Kubernetes control plane built by scripts/setup-kube.sh; scripts/test.sh runs it"]
#[test]
fn the_schema_takes_the_controller_configs_hal0_takes() {
    let defaults: Value = serde_yaml::from_str(
        &std::fs::read_to_string(repo().join(CHART).join("values.yaml")).expect("values.yaml"),
    )
    .expect("values.yaml");
    let cases = [
        (serde_json::json!({}), true),
        (
            serde_json::json!({"port": 9000, "startupTimeoutSeconds": 30}),
            true,
        ),
        (serde_json::json!({"imagePullPolicy": "Always"}), true),
        (
            serde_json::json!({"modelVolume": {"mountPath": "/m", "claimName": "models"}}),
            true,
        ),
        (
            serde_json::json!({"images": {"flm": {"image": "r/flm:1", "command": ["flm"], "env": {"A": "b"}}}}),
            true,
        ),
        (serde_json::json!({"prot": 8080}), false),
        (serde_json::json!({"port": 70000}), false),
        (serde_json::json!({"port": "8080"}), false),
        (serde_json::json!({"startupTimeoutSeconds": "10m"}), false),
        (
            serde_json::json!({"modelVolume": {"claim": "models"}}),
            false,
        ),
        (
            serde_json::json!({"images": {"llamacpp": {"image": "r/l:1"}}}),
            false,
        ),
        (
            serde_json::json!({"images": {"flm": {"command": ["flm"]}}}),
            false,
        ),
        (
            serde_json::json!({"images": {"flm": {"image": "r/flm:1", "cmd": ["flm"]}}}),
            false,
        ),
        // hal0 reads a scalar env value as its text: the schema takes it too.
        (
            serde_json::json!({"images": {"flm": {"image": "r/flm:1", "env": {"A": 1}}}}),
            true,
        ),
        (
            serde_json::json!({"images": {"flm": {"image": "r/flm:1", "env": {"A": [1]}}}}),
            false,
        ),
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    for (i, (config, valid)) in cases.iter().enumerate() {
        let mut merged = defaults["controller"]["config"].clone();
        merge(&mut merged, config);
        let yaml = serde_yaml::to_string(&merged).expect("yaml");
        let hal0 = hal0::kube::ClusterConfig::from_yaml(&yaml, "controller.yaml");
        assert_eq!(hal0.is_ok(), *valid, "hal0 on {config}: {hal0:?}");

        let file = dir.path().join(format!("values-{i}.yaml"));
        let values = serde_json::json!({"controller": {"config": config}});
        std::fs::write(&file, serde_yaml::to_string(&values).expect("yaml")).expect("write");
        let out = helm(&["template", "x", CHART, "-f", &file.display().to_string()]);
        assert_eq!(out.ok(), *valid, "helm on {config}: {}", out.stderr);
        if out.ok() {
            let cm = by_kind_and_name(documents(&out.stdout))
                [&("ConfigMap".to_string(), "x-hal0-controller".to_string())]
                .clone();
            let rendered = hal0::kube::ClusterConfig::from_yaml(
                cm["data"]["controller.yaml"].as_str().unwrap_or_default(),
                "controller.yaml",
            )
            .expect("the rendered config is valid");
            assert_eq!(
                Some(rendered),
                hal0.ok(),
                "the ConfigMap is the merged config"
            );
        } else {
            assert!(out.stderr.contains("/controller/config"), "{}", out.stderr);
        }
    }
}

// ---- against the control plane ----

/// The message of a caught panic.
fn panic_message(e: Box<dyn std::any::Any + Send>) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".to_string())
}

/// The CRD upgrade scenario needs a cluster where no chart has installed the Slot CRD yet, so it
/// runs once, first: every test that touches the cluster goes through here.
fn crd_upgrade() -> Result<(), String> {
    static DONE: Mutex<Option<Result<(), String>>> = Mutex::new(None);
    let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
    done.get_or_insert_with(|| {
        std::panic::catch_unwind(crd_upgrade_scenario).map_err(panic_message)
    })
    .clone()
}

fn cluster_ready() -> &'static cluster::Cluster {
    if let Err(e) = crd_upgrade() {
        panic!("the CRD upgrade scenario (run first, once) failed: {e}");
    }
    cluster_bare()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir").flatten() {
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy");
        }
    }
}

/// A release installed from an older chart, whose CRD does not know `spec.priority` yet (helm
/// creates the CRD on that first install); `helm upgrade` to this chart leaves the CRD as it
/// was, so a Slot with `priority` is still refused; the step docs/kubernetes.md gives brings
/// the new CRD, and the Slot is accepted; helm upgrades over it.
fn crd_upgrade_scenario() {
    let c = cluster_bare();
    let ns = c.namespace("upgrade");
    let old = Path::new(env!("CARGO_TARGET_TMPDIR")).join("hal0-chart-old");
    let _ = std::fs::remove_dir_all(&old);
    copy_dir(&repo().join(CHART), &old);
    let crd_path = old.join("crds/slot.yaml");
    let mut crd: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&crd_path).expect("crd")).expect("crd");
    let spec_props = &mut crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        ["properties"];
    spec_props
        .as_mapping_mut()
        .expect("spec properties")
        .remove("priority")
        .expect("the CRD has spec.priority");
    std::fs::write(&crd_path, serde_yaml::to_string(&crd).expect("yaml")).expect("write crd");
    let old_chart = old.display().to_string();

    let out = c.kubectl(&["get", "crd", "slots.hal0.dev"]);
    assert!(
        !out.ok(),
        "the Slot CRD exists before the first helm install"
    );
    ok(
        helm_kube(&[
            "install",
            "up",
            &old_chart,
            "-n",
            &ns,
            "--wait",
            "--timeout=2m",
        ]),
        "helm install (older chart)",
    );
    let has_priority = || {
        let out = c.kubectl(&["get", "crd", "slots.hal0.dev", "-o", "json"]);
        assert!(out.ok(), "helm created the CRD: {}", out.stderr);
        let crd: Value = serde_json::from_str(&out.stdout).expect("crd json");
        !crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
            ["priority"]
            .is_null()
    };
    assert!(!has_priority(), "helm installed the older chart's CRD");
    let slot = slot_yaml("prio", "  priority: 5\n");
    let out = c.apply(&ns, &slot);
    assert!(!out.ok(), "the older CRD refuses spec.priority");
    assert!(
        out.stderr.contains("priority"),
        "the refusal names the field: {}",
        out.stderr
    );

    ok(
        helm_kube(&["upgrade", "up", CHART, "-n", &ns, "--wait", "--timeout=2m"]),
        "helm upgrade",
    );
    assert!(!has_priority(), "helm upgrade never touches the CRD");

    // The documented step (docs/kubernetes.md, "Upgrading"). helm created the CRD, so it owns
    // its fields: a server-side apply without --force-conflicts is refused.
    let crd_file = repo().join(CHART).join("crds/slot.yaml");
    let out = c.kubectl(&[
        "apply",
        "--server-side",
        "-f",
        &crd_file.display().to_string(),
    ]);
    assert!(
        !out.ok() && out.stderr.contains("conflict with \"helm\""),
        "a server-side apply without --force-conflicts: {}",
        out.stderr
    );
    let out = c.kubectl(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        &crd_file.display().to_string(),
    ]);
    assert!(out.ok(), "the documented CRD apply: {}", out.stderr);
    assert!(has_priority(), "the CRD is the chart's now");
    let out = c.kubectl(&[
        "wait",
        "--for=condition=Established",
        "crd/slots.hal0.dev",
        "--timeout=60s",
    ]);
    assert!(out.ok(), "{}", out.stderr);
    let out = c.apply(&ns, &slot);
    assert!(out.ok(), "the new CRD takes spec.priority: {}", out.stderr);
    let out = c.kubectl(&[
        "get",
        "slot",
        "prio",
        "-n",
        &ns,
        "-o",
        "jsonpath={.spec.priority}",
    ]);
    assert_eq!(out.stdout, "5", "spec.priority is stored, not pruned");
    ok(
        helm_kube(&[
            "upgrade",
            "up",
            CHART,
            "-n",
            &ns,
            "--reset-then-reuse-values",
            "--wait",
            "--timeout=2m",
        ]),
        "helm upgrade after the CRD apply (as documented)",
    );
}

#[ignore = "needs the Kubernetes control plane built by scripts/setup-kube.sh; scripts/test.sh runs it"]
#[test]
fn the_documented_crd_upgrade_works() {
    if let Err(e) = crd_upgrade() {
        panic!("{e}");
    }
}

/// `kubectl get pods -n ns` as JSON items.
fn pods(ns: &str) -> Vec<Value> {
    let out = cluster_bare().kubectl(&["get", "pods", "-n", ns, "-o", "json"]);
    assert!(out.ok(), "{}", out.stderr);
    let list: Value = serde_json::from_str(&out.stdout).expect("pod list");
    list["items"].as_array().cloned().unwrap_or_default()
}

fn exists(args: &[&str]) -> bool {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    cluster_bare().kubectl(&all).ok()
}

#[ignore = "needs the Kubernetes control plane built by scripts/setup-kube.sh; scripts/test.sh runs it"]
#[test]
fn two_releases_share_a_cluster() {
    let c = cluster_ready();
    // Device plugin pods need an AMD node: kwok's nodes say they are.
    let out = c.kubectl(&[
        "label",
        "nodes",
        "-l",
        "type=kwok",
        "hal0.dev/igpu=true",
        "hal0.dev/npu=true",
        "--overwrite",
    ]);
    assert!(out.ok(), "{}", out.stderr);
    let nodes = c
        .kubectl(&["get", "nodes", "-l", "type=kwok", "-o", "name"])
        .stdout
        .lines()
        .count();
    assert!(nodes > 0, "kwok nodes");

    let (ns_a, ns_b) = (c.namespace("rel-a"), c.namespace("rel-b"));
    let a = ok(
        helm_kube(&["install", "a", CHART, "-n", &ns_a, "--wait", "--timeout=2m"]),
        "helm install a",
    );
    let mut args = vec!["install", "b", CHART, "-n", &ns_b, "--wait", "--timeout=2m"];
    args.extend_from_slice(OTHER_VALUES);
    let b = ok(helm_kube(&args), "helm install b");
    for out in [&a, &b] {
        assert!(
            !out.stderr.to_lowercase().contains("warning"),
            "helm install warned: {}",
            out.stderr
        );
        assert!(out.stdout.contains("STATUS: deployed"), "{}", out.stdout);
    }
    assert!(
        b.stdout.contains("Slots are reconciled in namespace") && b.stdout.contains(&ns_b),
        "NOTES: {}",
        b.stdout
    );

    // Every workload runs (kwok), from its release's image.
    let running = |ns: &str| {
        pods(ns)
            .into_iter()
            .filter(|p| p["status"]["phase"] == "Running")
            .map(|p| {
                let component = p["metadata"]["labels"]["app.kubernetes.io/component"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let image = p["spec"]["containers"][0]["image"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                (component, image)
            })
            .collect::<Vec<_>>()
    };
    let image = format!("hal0:{}", env!("CARGO_PKG_VERSION"));
    let mut want_a = vec![
        ("controller".to_string(), image.clone()),
        ("gateway".to_string(), image.clone()),
    ];
    for _ in 0..nodes {
        want_a.push(("device-plugin-igpu".to_string(), image.clone()));
        want_a.push(("device-plugin-npu".to_string(), image.clone()));
    }
    want_a.sort();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(until("release a's pods running", WAIT, || async {
        let mut got = running(&ns_a);
        got.sort();
        (got == want_a).then_some(())
    }));
    let custom = "registry.example/hal0:1.2.3".to_string();
    let want_b = vec![
        ("controller".to_string(), custom.clone()),
        ("gateway".to_string(), custom.clone()),
    ];
    rt.block_on(until("release b's pods running", WAIT, || async {
        let mut got = running(&ns_b);
        got.sort();
        (got == want_b).then_some(())
    }));

    // Cluster-wide names carry the release; the one-namespace release has none.
    assert!(exists(&["clusterrole", "a-hal0-controller"]));
    assert!(exists(&["clusterrolebinding", "a-hal0-controller"]));
    assert!(!exists(&["clusterrole", "b-hal0-controller"]));
    assert!(exists(&["role", "b-hal0-controller", "-n", &ns_b]));
    assert!(exists(&["slot", "primary", "-n", &ns_b]));
    assert!(
        !exists(&["slot", "primary", "-n", &ns_a]),
        "no sample Slot by default"
    );

    // A second cluster-wide release (installs side by side; docs/kubernetes.md says why two
    // cluster-wide controllers are not run together).
    let ns_c = c.namespace("rel-c");
    ok(
        helm_kube(&[
            "install",
            "c",
            CHART,
            "-n",
            &ns_c,
            "--set=devicePlugins.igpu.enabled=false",
            "--set=devicePlugins.npu.enabled=false",
        ]),
        "helm install c (cluster-wide, next to a)",
    );
    assert!(exists(&["clusterrole", "c-hal0-controller"]));
    assert!(exists(&["clusterrolebinding", "c-hal0-controller"]));

    // A second cluster-wide release named `a` would take over a's ClusterRole: refused.
    let ns_d = c.namespace("rel-d");
    let out = helm_kube(&["install", "a", CHART, "-n", &ns_d, "--timeout=2m"]);
    assert!(!out.ok(), "a second release `a` installed: {}", out.stdout);
    assert!(
        out.stderr.contains("a-hal0-controller"),
        "the refusal names the clashing object: {}",
        out.stderr
    );
    assert!(
        pods(&ns_d).is_empty() && !exists(&["deployment", "a-hal0-gateway", "-n", &ns_d]),
        "the refused install created nothing"
    );

    // Uninstalling a leaves b, and the CRD, alone.
    ok(
        helm_kube(&["uninstall", "a", "-n", &ns_a, "--wait", "--timeout=2m"]),
        "helm uninstall a",
    );
    assert!(!exists(&["clusterrole", "a-hal0-controller"]));
    assert!(exists(&["clusterrole", "c-hal0-controller"]));
    assert!(exists(&["crd", "slots.hal0.dev"]), "helm keeps the CRD");
    let mut got = running(&ns_b);
    got.sort();
    assert_eq!(got, want_b, "release b still runs");
    let out = ok(helm_kube(&["status", "b", "-n", &ns_b]), "helm status b");
    assert!(out.stdout.contains("STATUS: deployed"), "{}", out.stdout);
}

/// `kubectl auth can-i VERB RESOURCE` as ServiceAccount `sa` of `ns`, with `scope` flags.
fn can_i(sa_ns: &str, sa: &str, verb: &str, resource: &str, scope: &[&str]) -> bool {
    let who = format!("--as=system:serviceaccount:{sa_ns}:{sa}");
    let mut args = vec!["auth", "can-i", verb, resource, who.as_str()];
    args.extend_from_slice(scope);
    let out = cluster_bare().kubectl(&args);
    out.stdout.trim() == "yes"
}

/// The controller config the chart ships, written where `hal0 controller --config` reads it.
fn chart_config(ns: &str, release: &str) -> PathBuf {
    let out = cluster_bare().kubectl(&[
        "get",
        "configmap",
        &format!("{release}-hal0-controller"),
        "-n",
        ns,
        "-o",
        "jsonpath={.data.controller\\.yaml}",
    ]);
    assert!(out.ok() && !out.stdout.is_empty(), "{}", out.stderr);
    let path = cluster_bare().dir.join(format!("controller-{ns}.yaml"));
    std::fs::write(&path, out.stdout).expect("write config");
    path
}

/// `hal0 controller` as release `release`'s controller ServiceAccount, with the chart's config
/// and the leader Lease in the release namespace, as the chart's Deployment runs it.
fn release_controller(ns: &str, release: &str, extra: &[&str]) -> cluster::Proc {
    let c = cluster_bare();
    let sa = format!("{release}-hal0-controller");
    let kc = c.service_account_kubeconfig_in(&sa, ns, ns);
    let port = free_port();
    let mut args = vec![
        "controller".to_string(),
        format!("--health-listen=127.0.0.1:{port}"),
        format!("--config={}", chart_config(ns, release).display()),
        format!("--lease-namespace={ns}"),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    spawn_hal0("controller", &kc, &args, port)
}

async fn slot_phase(ns: &str, name: &str, phase: &str) -> Value {
    until(&format!("Slot {ns}/{name} {phase}"), WAIT, || async {
        let s = get("slot", ns, name).await?;
        (s["status"]["phase"] == phase).then_some(s)
    })
    .await
}

#[ignore = "needs the Kubernetes control plane built by scripts/setup-kube.sh; scripts/test.sh runs it"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_service_accounts_run_the_controller_and_gateway() {
    let c = tokio::task::spawn_blocking(cluster_ready)
        .await
        .expect("cluster");
    let plugins_off = [
        "--set=devicePlugins.igpu.enabled=false",
        "--set=devicePlugins.npu.enabled=false",
    ];

    // Cluster-wide (the default): the controller reconciles a Slot in another namespace.
    let ns = c.namespace("rbac");
    let mut args = vec!["install", "r", CHART, "-n", &ns];
    args.extend_from_slice(&plugins_off);
    ok(helm_kube(&args), "helm install r");
    let ctl = release_controller(&ns, "r", &[]);
    let elsewhere = c.namespace("rbac-slots");
    let out = c.apply(&elsewhere, &slot_yaml("helmed", "  autoload: true\n"));
    assert!(out.ok(), "{}", out.stderr);
    slot_phase(&elsewhere, "helmed", "ready").await;
    assert!(
        get("deployment", &elsewhere, "hal0-slot-helmed")
            .await
            .is_some()
    );
    let lease = get("lease", &ns, "hal0-controller")
        .await
        .expect("the leader Lease in the release namespace");
    assert!(
        lease["spec"]["holderIdentity"].is_string(),
        "the controller holds the Lease: {lease}"
    );

    // The gateway as the release's gateway ServiceAccount routes the Slots of its namespace.
    let out = c.apply(&ns, &slot_yaml("routed", "  idle_timeout: 10m\n"));
    assert!(out.ok(), "{}", out.stderr);
    slot_phase(&ns, "routed", "stopped").await;
    let kc = c.service_account_kubeconfig_in("r-hal0-gateway", &ns, &ns);
    let port = free_port();
    let gw = spawn_hal0(
        "gateway",
        &kc,
        &[
            "serve".to_string(),
            "--source=kube".to_string(),
            format!("--listen=127.0.0.1:{port}"),
        ],
        port,
    );
    cluster::until_listed(&gw, "routed").await;
    drop(gw);
    drop(ctl);

    // One namespace: a Role only, and a controller that reconciles that namespace. (Release
    // `n` also checks that names are quoted: unquoted, YAML reads the label value n as false.)
    let ns_n = c.namespace("rbac-ns");
    let mut args = vec![
        "install",
        "n",
        CHART,
        "-n",
        &ns_n,
        "--set=controller.watchAllNamespaces=false",
    ];
    args.extend_from_slice(&plugins_off);
    ok(helm_kube(&args), "helm install n");
    let sa = "n-hal0-controller";
    assert!(can_i(&ns_n, sa, "list", "slots.hal0.dev", &["-n", &ns_n]));
    assert!(!can_i(
        &ns_n,
        sa,
        "list",
        "slots.hal0.dev",
        &["--all-namespaces"]
    ));
    assert!(can_i(
        &ns,
        "r-hal0-controller",
        "list",
        "slots.hal0.dev",
        &["--all-namespaces"]
    ));
    let _ctl = release_controller(&ns_n, "n", &[&format!("--namespace={ns_n}")]);
    let out = c.apply(&ns_n, &slot_yaml("local", "  autoload: true\n"));
    assert!(out.ok(), "{}", out.stderr);
    slot_phase(&ns_n, "local", "ready").await;
}

/// The `helm` and `kubectl` lines of docs/kubernetes.md's shell blocks that mention helm, run as
/// written (with the test cluster's kubeconfig), block after block: install, install with an
/// image, the CRD-first upgrade.
#[ignore = "needs the Kubernetes control plane built by scripts/setup-kube.sh; scripts/test.sh runs it"]
#[test]
fn the_documented_helm_commands_work() {
    let c = cluster_ready();
    let docs = std::fs::read_to_string(repo().join("docs/kubernetes.md")).expect("docs");
    let mut blocks = Vec::new();
    let mut current: Option<Vec<String>> = None;
    for line in docs.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(Vec::new()),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some(lines), l) => {
                // A continuation joins the previous line.
                match lines.last_mut() {
                    Some(prev) if prev.ends_with('\\') => {
                        prev.pop();
                        prev.push_str(l.trim_start());
                    }
                    _ => lines.push(l.to_string()),
                }
            }
            (None, _) => {}
        }
    }
    let blocks: Vec<Vec<String>> = blocks
        .into_iter()
        .filter(|b| b.iter().any(|l| l.starts_with("helm ")))
        .map(|b| {
            b.into_iter()
                .map(|l| l.split(" # ").next().unwrap_or_default().trim().to_string())
                .filter(|l| l.starts_with("helm ") || l.starts_with("kubectl "))
                .collect()
        })
        .collect();
    assert!(
        blocks.len() >= 3,
        "install, image and upgrade blocks: {blocks:?}"
    );
    let home = Path::new(env!("CARGO_TARGET_TMPDIR")).join("helm-home");
    let path = format!(
        "{}:{}",
        bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for block in &blocks {
        if block.iter().any(|l| l.starts_with("helm install hal0 "))
            && helm_kube(&["status", "hal0", "-n", "hal0"]).ok()
        {
            ok(
                helm_kube(&["uninstall", "hal0", "-n", "hal0", "--wait"]),
                "helm uninstall hal0 (between documented installs)",
            );
        }
        for cmd in block {
            let out = Command::new("sh")
                .args(["-c", cmd])
                .current_dir(repo())
                .env("PATH", &path)
                .env("KUBECONFIG", &c.kubeconfig)
                .env("HELM_CONFIG_HOME", home.join("config"))
                .env("HELM_CACHE_HOME", home.join("cache"))
                .env("HELM_DATA_HOME", home.join("data"))
                .stdin(Stdio::null())
                .output()
                .expect("sh");
            assert!(
                out.status.success(),
                "docs/kubernetes.md: `{cmd}` failed:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let dep = c.kubectl(&[
        "get",
        "deployment",
        "hal0-controller",
        "-n",
        "hal0",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    assert_eq!(
        dep.stdout,
        format!("registry.example/hal0:{}", env!("CARGO_PKG_VERSION")),
        "the documented image.repository survives the documented upgrade"
    );
}
