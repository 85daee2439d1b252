//! hal0 on a real control plane (etcd, kube-apiserver with RBAC, kube-controller-manager,
//! kube-scheduler, kwok nodes; see tests/cluster): installed with `kubectl apply -k deploy/`,
//! Slots written as YAML through `kubectl apply`, `hal0 controller` and the in-cluster gateway
//! running as the ServiceAccounts deploy/ creates.
//!
//! Covered: create → Deployment + Service owned by the Slot (server-side apply) → kwok runs the
//! pod → Ready/Loaded, endpoint, observedGeneration; a spec edit rolls out; a field the
//! controller stops applying is removed; the gateway wakes a Slot at zero through /scale and
//! routes to it; idle scale-to-zero; delete → finalizer; garbage collection by the real
//! controller-manager; a restarted controller adopts what exists; /readyz and /metrics;
//! leader election; an invalid spec releases its Deployment; SIGTERM is prompt.

mod bad_slots;
mod cluster;

use std::time::Duration;

use bad_slots::{BAD, Bad};
use cluster::{WAIT, cluster, condition, controller, gateway, get, slot_yaml, until};
use serde_json::Value;

async fn slot_where(ns: &str, name: &str, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    until(&format!("Slot {ns}/{name}: {what}"), WAIT, || async {
        let s = get("slot", ns, name).await?;
        f(&s).then_some(s)
    })
    .await
}

fn phase(s: &Value) -> &str {
    s["status"]["phase"].as_str().unwrap_or_default()
}

fn container(d: &Value) -> &Value {
    &d["spec"]["template"]["spec"]["containers"][0]
}

fn env_names(d: &Value) -> Vec<String> {
    container(d)["env"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[ignore = "needs the Kubernetes control plane built by scripts/setup-kube.sh; scripts/test.sh runs it"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_from_kubectl_gets_owned_objects_a_ready_pod_and_rolls_out_edits() {
    let c = cluster();
    let ns = c.namespace("lifecycle");
    let _ctl = controller(Some(&ns), &["--leader-elect=false"]);
    let out = c.apply(
        &ns,
        &slot_yaml(
            "fast",
            "  autoload: true\n  memory: 8Gi\n  idle_timeout: 10m\n  env:\n    FOO: bar\n",
        ),
    );
    assert!(out.ok(), "kubectl apply: {}", out.stderr);

    let slot = slot_where(&ns, "fast", "ready", |s| phase(s) == "ready").await;
    assert_eq!(
        slot["status"]["observedGeneration"],
        slot["metadata"]["generation"]
    );
    assert_eq!(condition(&slot, "Loaded").map(|c| c.0), Some("True".into()));
    assert_eq!(condition(&slot, "Ready").map(|c| c.0), Some("True".into()));
    assert_eq!(
        slot["status"]["endpoint"],
        format!("http://hal0-slot-fast.{ns}.svc:8080")
    );
    assert_eq!(slot["status"]["replicas"], 1);

    for kind in ["deployment", "service"] {
        let o = get(kind, &ns, "hal0-slot-fast")
            .await
            .unwrap_or_else(|| panic!("{kind} exists"));
        let owner = &o["metadata"]["ownerReferences"][0];
        assert_eq!(owner["uid"], slot["metadata"]["uid"], "{kind} owner");
        assert_eq!(owner["kind"], "Slot");
        assert_eq!(owner["controller"], true);
        let applied_by_controller = o["metadata"]["managedFields"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|m| m["manager"] == "hal0-controller" && m["operation"] == "Apply");
        assert!(applied_by_controller, "{kind} is server-side applied: {o}");
    }
    let dep = get("deployment", &ns, "hal0-slot-fast").await.expect("dep");
    assert_eq!(
        container(&dep)["resources"]["requests"]["memory"],
        "8Gi",
        "memory: 8Gi is the pod's memory request"
    );
    assert!(env_names(&dep).contains(&"FOO".to_string()));

    // A spec edit: generation bump, rollout, the status follows the new generation.
    let out = c.apply(
        &ns,
        &slot_yaml(
            "fast",
            "  autoload: true\n  memory: 8Gi\n  idle_timeout: 10m\n  args: [\"--ctx-size\", \"2048\"]\n",
        ),
    );
    assert!(out.ok(), "kubectl apply (edit): {}", out.stderr);
    let generation = get("slot", &ns, "fast").await.expect("slot")["metadata"]["generation"]
        .as_i64()
        .expect("generation");
    assert!(generation >= 2, "the edit bumped the generation");
    let dep = until("the Deployment runs the new args", WAIT, || async {
        let d = get("deployment", &ns, "hal0-slot-fast").await?;
        let args = container(&d)["args"].to_string();
        args.contains("2048").then_some(d)
    })
    .await;
    // A field the controller stops applying is removed (server-side apply ownership).
    assert!(
        !env_names(&dep).contains(&"FOO".to_string()),
        "env FOO was dropped from the Slot, so from the Deployment: {}",
        container(&dep)["env"]
    );
    slot_where(&ns, "fast", "ready at the new generation", |s| {
        phase(s) == "ready" && s["status"]["observedGeneration"].as_i64() == Some(generation)
    })
    .await;
}

#[ignore = "needs the Kubernetes control plane built by scripts/setup-kube.sh; scripts/test.sh runs it"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_slot_scales_to_zero() {
    let c = cluster();
    let ns = c.namespace("idle");
    let _ctl = controller(Some(&ns), &["--leader-elect=false"]);
    let out = c.apply(
        &ns,
        &slot_yaml("sleepy", "  autoload: true\n  idle_timeout: 3s\n"),
    );
    assert!(out.ok(), "{}", out.stderr);
    slot_where(&ns, "sleepy", "scaled to zero after idling", |s| {
        s["spec"]["replicas"] == 0 && phase(s) == "stopped"
    })
    .await;
    until("the Deployment at zero", WAIT, || async {
        let d = get("deployment", &ns, "hal0-slot-sleepy").await?;
        (d["spec"]["replicas"] == 0).then_some(())
    })
    .await;
}

async fn chat(http: &reqwest::Client, gw: &cluster::Proc, model: &str) -> (u16, String) {
    let resp = http
        .post(gw.url("/v1/chat/completions"))
        .json(&serde_json::json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
        .timeout(WAIT)
        .send()
        .await
        .expect("chat through the gateway");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

/// Activity writes (PATCH slots/status) the gateway's ServiceAccount made for `slot`.
fn gateway_status_writes(slot: &str) -> usize {
    cluster()
        .audit_events()
        .iter()
        .filter(|e| {
            e["user"]["username"] == "system:serviceaccount:hal0:hal0-gateway"
                && e["verb"] == "patch"
                && e["objectRef"]["resource"] == "slots"
                && e["objectRef"]["subresource"] == "status"
                && e["objectRef"]["name"] == slot
                && e["stage"] == "ResponseComplete"
        })
        .count()
}

#[ignore = "needs the Kubernetes control plane built by scripts/setup-kube.sh; scripts/test.sh runs it"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_wakes_a_slot_at_zero_routes_to_it_and_parks_a_degraded_one() {
    let c = cluster();
    // The gateway's Role (deploy/rbac.yaml) is for namespace hal0.
    let ns = "hal0";
    let port = cluster::free_port();
    // Killed when dropped, also when an assertion fails.
    struct Provider(std::process::Child);
    impl Drop for Provider {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _provider = Provider(
        std::process::Command::new(env!("CARGO_BIN_EXE_hal0-fake-provider"))
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["-m", "/models/Small.gguf"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("fake provider"),
    );
    // A quota no 8Gi pod fits in: the Deployment of Slot "stuck" cannot create its pod.
    let quota = "apiVersion: v1\nkind: ResourceQuota\nmetadata:\n  name: small\nspec:\n  hard:\n    requests.memory: 2Gi\n";
    assert!(c.apply(ns, quota).ok());
    let _ctl = controller(Some(ns), &["--leader-elect=false"]);
    let gw = gateway(&format!("http://127.0.0.1:{port}"));
    let out = c.apply(
        ns,
        &format!(
            "{}---\n{}",
            slot_yaml("wake", "  idle_timeout: 10m\n  memory: 512Mi\n  aliases: [\"waker\"]\n"),
            "apiVersion: hal0.dev/v1alpha1\nkind: Slot\nmetadata:\n  name: stuck\nspec:\n  provider: llama.cpp\n  model: hf:org/repo/Big.gguf\n  autoload: true\n  memory: 8Gi\n"
        ),
    );
    assert!(out.ok(), "{}", out.stderr);
    slot_where(ns, "wake", "reconciled at zero", |s| phase(s) == "stopped").await;

    let http = reqwest::Client::new();
    cluster::until_listed(&gw, "wake").await;
    let (status, body) = chat(&http, &gw, "waker").await;
    assert_eq!(status, 200, "{body}");
    let slot = get("slot", ns, "wake").await.expect("slot");
    assert_eq!(slot["spec"]["replicas"], 1, "woken through /scale");
    assert_eq!(phase(&slot), "ready");
    assert!(
        slot["status"]["lastActivity"].is_string(),
        "the gateway recorded activity: {}",
        slot["status"]
    );
    // By name, alias and model id; many requests, few writes (at most one per 30 s per Slot).
    for model in ["wake", "waker", "Small"].iter().cycle().take(30) {
        let (status, body) = chat(&http, &gw, model).await;
        assert_eq!(status, 200, "{model}: {body}");
    }
    let writes = gateway_status_writes("wake");
    assert!(
        (1..=2).contains(&writes),
        "31 requests made {writes} activity writes"
    );

    // A Slot whose pods cannot be created is Degraded; the gateway fails it at once.
    slot_where(ns, "stuck", "Degraded by the quota", |s| {
        condition(s, "Degraded").is_some_and(|c| c.0 == "True")
    })
    .await;
    let t0 = std::time::Instant::now();
    let (status, body) = chat(&http, &gw, "stuck").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "answered at once, not after a load timeout"
    );
    let _ = c.kubectl(&["delete", "slot", "wake", "stuck", "-n", ns, "--wait=false"]);
    let _ = c.kubectl(&["delete", "resourcequota", "small", "-n", ns]);
}

#[ignore = "needs the Kubernetes control plane built by scripts/setup-kube.sh; scripts/test.sh runs it"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_cleans_up_and_the_garbage_collector_removes_orphans() {
    let c = cluster();
    let ns = c.namespace("delete");
    let mut ctl = controller(Some(&ns), &["--leader-elect=false"]);
    let out = c.apply(
        &ns,
        &format!("{}---\n{}", slot_yaml("gone", ""), slot_yaml("orphan", "")),
    );
    assert!(out.ok(), "{}", out.stderr);
    for name in ["gone", "orphan"] {
        slot_where(&ns, name, "reconciled", |s| phase(s) == "stopped").await;
    }
    // With the controller: the finalizer removes the objects, then the Slot goes.
    let out = c.kubectl(&["delete", "slot", "gone", "-n", &ns, "--timeout=60s"]);
    assert!(out.ok(), "kubectl delete: {}", out.stderr);
    assert!(get("deployment", &ns, "hal0-slot-gone").await.is_none());
    assert!(get("service", &ns, "hal0-slot-gone").await.is_none());

    // Without the controller: a Slot whose finalizer is removed by hand is gone at once, and
    // kube-controller-manager's garbage collector deletes what it owned.
    assert!(ctl.terminate(Duration::from_secs(15)).is_some());
    let out = c.kubectl(&["delete", "slot", "orphan", "-n", &ns, "--wait=false"]);
    assert!(out.ok(), "{}", out.stderr);
    let out = c.kubectl(&[
        "patch",
        "slot",
        "orphan",
        "-n",
        &ns,
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    assert!(out.ok(), "{}", out.stderr);
    until(
        "GC of the orphan's Deployment and Service",
        WAIT,
        || async {
            let d = get("deployment", &ns, "hal0-slot-orphan").await;
            let s = get("service", &ns, "hal0-slot-orphan").await;
            (d.is_none() && s.is_none()).then_some(())
        },
    )
    .await;
}

async fn metric(proc_: &cluster::Proc, name: &str) -> Option<f64> {
    let text = reqwest::get(proc_.url("/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .reduce(|a, b| a + b)
}

#[ignore = "needs the Kubernetes control plane built by scripts/setup-kube.sh; scripts/test.sh runs it"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_controller_adopts_what_exists_and_reports_ready_and_metrics() {
    let c = cluster();
    let ns = c.namespace("adopt");
    let mut first = controller(Some(&ns), &["--leader-elect=false"]);
    let out = c.apply(&ns, &slot_yaml("kept", "  autoload: true\n"));
    assert!(out.ok(), "{}", out.stderr);
    slot_where(&ns, "kept", "ready", |s| phase(s) == "ready").await;
    until("/readyz after the watch synced", WAIT, || async {
        let r = reqwest::get(first.url("/readyz")).await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    assert!(
        metric(&first, "hal0_controller_reconciles_total")
            .await
            .is_some_and(|n| n >= 1.0),
        "reconciles are counted"
    );
    let before = get("deployment", &ns, "hal0-slot-kept").await.expect("dep");
    let t0 = std::time::Instant::now();
    assert!(
        first.terminate(Duration::from_secs(12)).is_some(),
        "the controller exits promptly on SIGTERM"
    );
    eprintln!("controller stopped in {:?}", t0.elapsed());

    let second = controller(Some(&ns), &["--leader-elect=false"]);
    until("the second controller synced", WAIT, || async {
        let r = reqwest::get(second.url("/readyz")).await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    until("the second controller reconciled", WAIT, || async {
        metric(&second, "hal0_controller_reconciles_total")
            .await
            .filter(|n| *n >= 1.0)
    })
    .await;
    let after = get("deployment", &ns, "hal0-slot-kept").await.expect("dep");
    assert_eq!(
        after["metadata"]["uid"], before["metadata"]["uid"],
        "adopted, not recreated"
    );
    assert_eq!(
        after["metadata"]["generation"], before["metadata"]["generation"],
        "no rollout from a restart"
    );
    let out = c.kubectl(&["get", "deployments", "-n", &ns, "-o", "name"]);
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
    assert_eq!(
        phase(&get("slot", &ns, "kept").await.expect("slot")),
        "ready"
    );
}

#[ignore = "needs the Kubernetes control plane built by scripts/setup-kube.sh; scripts/test.sh runs it"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spec_that_becomes_invalid_releases_its_pod() {
    let c = cluster();
    let ns = c.namespace("release");
    let _ctl = controller(Some(&ns), &["--leader-elect=false"]);
    let out = c.apply(&ns, &slot_yaml("held", "  autoload: true\n"));
    assert!(out.ok(), "{}", out.stderr);
    slot_where(&ns, "held", "ready", |s| phase(s) == "ready").await;
    // Admitted by the schema, refused by hal0's model-ref rule.
    let bad = "apiVersion: hal0.dev/v1alpha1\nkind: Slot\nmetadata:\n  name: held\nspec:\n  provider: llama.cpp\n  model: hf:org/repo\n  autoload: true\n";
    let out = c.apply(&ns, bad);
    assert!(out.ok(), "{}", out.stderr);
    let slot = slot_where(&ns, "held", "Degraded", |s| {
        condition(s, "Degraded").is_some_and(|c| c.0 == "True")
    })
    .await;
    let (_, reason, message) = condition(&slot, "Degraded").expect("degraded");
    assert_eq!(reason, "InvalidSpec");
    assert!(message.contains("model"), "{message}");
    until("the Deployment released (scaled to zero)", WAIT, || async {
        let d = get("deployment", &ns, "hal0-slot-held").await?;
        (d["spec"]["replicas"] == 0).then_some(())
    })
    .await;
}

#[ignore = "needs the Kubernetes control plane built by scripts/setup-kube.sh; scripts/test.sh runs it"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_lease_holder_reconciles_and_a_successor_takes_over() {
    let c = cluster();
    let ns = c.namespace("leader");
    let flags = ["--lease-namespace=hal0", "--lease-duration=4s"];
    let mut a = controller(Some(&ns), &flags);
    until("the first controller leads", WAIT, || async {
        metric(&a, "hal0_controller_leader")
            .await
            .filter(|v| *v == 1.0)
    })
    .await;
    let b = controller(Some(&ns), &flags);
    // b is a candidate: it serves /metrics but does not lead while a renews.
    until("the second controller is up", WAIT, || async {
        reqwest::get(b.url("/healthz")).await.ok().map(|_| ())
    })
    .await;
    let out = c.apply(&ns, &slot_yaml("one", ""));
    assert!(out.ok(), "{}", out.stderr);
    slot_where(&ns, "one", "reconciled by the leader", |s| {
        phase(s) == "stopped"
    })
    .await;
    assert_eq!(metric(&b, "hal0_controller_leader").await, Some(0.0));
    assert_eq!(
        metric(&b, "hal0_controller_reconciles_total").await,
        None,
        "the candidate reconciled nothing"
    );
    let lease = get("lease", "hal0", "hal0-controller")
        .await
        .expect("lease");
    let holder = lease["spec"]["holderIdentity"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(holder.ends_with(&a.child.id().to_string()), "{holder}");

    assert!(a.terminate(Duration::from_secs(12)).is_some());
    until("the second controller leads", WAIT, || async {
        metric(&b, "hal0_controller_leader")
            .await
            .filter(|v| *v == 1.0)
    })
    .await;
    let out = c.apply(&ns, &slot_yaml("two", ""));
    assert!(out.ok(), "{}", out.stderr);
    slot_where(&ns, "two", "reconciled by the successor", |s| {
        phase(s) == "stopped"
    })
    .await;
}

/// A bad Slot of tests/bad_slots as a manifest (its JSON spec is a YAML flow mapping).
fn bad_yaml(bad: &Bad) -> String {
    format!(
        "apiVersion: hal0.dev/v1alpha1\nkind: Slot\nmetadata:\n  name: {}\nspec: {}\n",
        bad.name, bad.spec
    )
}

/// The secrets some bad Slots carry; no refusal may show them.
const SECRETS: [&str; 2] = ["sk-or-v1-abc", "hunter2"];

#[ignore = "needs the Kubernetes control plane built by scripts/setup-kube.sh; scripts/test.sh runs it"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_slots_are_refused_at_the_door_and_good_ones_next_to_them_are_not() {
    let c = cluster();
    let ns = c.namespace("door");
    let _ctl = controller(Some(&ns), &["--leader-elect=false"]);
    let mut failures = Vec::new();
    let at_door: Vec<(&Bad, &str)> = BAD
        .iter()
        .filter_map(|b| b.crd.map(|says| (b, says)))
        .collect();
    for (i, (bad, says)) in at_door.iter().enumerate() {
        let good = format!("good-{i}");
        let yaml = format!(
            "{}---\n{}",
            slot_yaml(&good, "  memory: 512Mi\n"),
            bad_yaml(bad)
        );
        let out = c.apply(&ns, &yaml);
        if out.ok() {
            failures.push(format!("{}: admitted", bad.what));
        } else if !out.stderr.contains(says) {
            failures.push(format!(
                "{}: the error does not say {:?}: {}",
                bad.what, says, out.stderr
            ));
        }
        if SECRETS.iter().any(|s| out.stderr.contains(s)) {
            failures.push(format!(
                "{}: the error shows a secret: {}",
                bad.what, out.stderr
            ));
        }
        if get("slot", &ns, &good).await.is_none() {
            failures.push(format!(
                "{}: the good Slot next to it was not created",
                bad.what
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Every good Slot is reconciled; none of the bad ones exists.
    for i in 0..at_door.len() {
        slot_where(&ns, &format!("good-{i}"), "reconciled", |s| {
            phase(s) == "stopped"
        })
        .await;
    }
    for (bad, _) in at_door {
        assert!(
            get("slot", &ns, bad.name).await.is_none(),
            "{} exists",
            bad.what
        );
    }
}

/// The bad Slots whose rule the schema cannot express (URLs, blank strings, a probe's role):
/// the API server admits them, the controller refuses them by the same rules as hal0.toml,
/// naming the field, and applies nothing.
#[ignore = "needs the Kubernetes control plane built by scripts/setup-kube.sh; scripts/test.sh runs it"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_slots_past_the_door_are_refused_by_the_controller_naming_the_field() {
    let c = cluster();
    let ns = c.namespace("rules");
    let _ctl = controller(Some(&ns), &["--leader-elect=false"]);
    let past: Vec<&Bad> = BAD.iter().filter(|b| b.crd.is_none()).collect();
    assert!(!past.is_empty());
    for bad in &past {
        let out = c.apply(&ns, &bad_yaml(bad));
        assert!(
            out.ok(),
            "{}: the schema refuses it: {}",
            bad.what,
            out.stderr
        );
    }
    for bad in past {
        let slot = slot_where(&ns, bad.name, "Degraded", |s| {
            condition(s, "Degraded").is_some_and(|c| c.0 == "True")
        })
        .await;
        let (_, reason, message) = condition(&slot, "Degraded").expect("degraded");
        assert_eq!(reason, "InvalidSpec", "{}: {message}", bad.what);
        let field = format!("spec.{}: ", bad.field);
        assert!(message.contains(&field), "{}: {message}", bad.what);
        assert!(
            !SECRETS.iter().any(|s| message.contains(s)),
            "{}: {message}",
            bad.what
        );
        assert!(
            get("deployment", &ns, &format!("hal0-slot-{}", bad.name))
                .await
                .is_none(),
            "{}: a Deployment was applied",
            bad.what
        );
    }
}

#[ignore = "needs the Kubernetes control plane built by scripts/setup-kube.sh; scripts/test.sh runs it"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_is_accepted_as_a_kubernetes_quantity_and_as_hal0_writes_it() {
    let c = cluster();
    let ns = c.namespace("memory");
    let _ctl = controller(Some(&ns), &["--leader-elect=false"]);
    let cases = [
        ("m-gi", "8Gi", "8Gi"),
        ("m-gib", "8GiB", "8Gi"),
        ("m-mi", "512Mi", "512Mi"),
        // The API server writes quantities in its canonical form.
        ("m-g", "2G", "2G"),
        ("m-int", "1073741824", "1Gi"),
        ("m-odd", "1000001", "1000001"),
    ];
    for (name, memory, _) in cases {
        let out = c.apply(&ns, &slot_yaml(name, &format!("  memory: {memory}\n")));
        assert!(out.ok(), "memory {memory}: {}", out.stderr);
    }
    for (name, memory, bytes) in cases {
        let d = until(&format!("Deployment for memory {memory}"), WAIT, || async {
            get("deployment", &ns, &format!("hal0-slot-{name}")).await
        })
        .await;
        assert_eq!(
            container(&d)["resources"]["requests"]["memory"],
            bytes,
            "memory {memory}"
        );
    }
}

#[ignore = "needs the Kubernetes control plane built by scripts/setup-kube.sh; scripts/test.sh runs it"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_slots_claiming_one_alias_are_both_degraded_until_one_lets_go() {
    let c = cluster();
    let ns = c.namespace("alias");
    let _ctl = controller(Some(&ns), &["--leader-elect=false"]);
    let out = c.apply(
        &ns,
        &format!(
            "{}---\n{}",
            slot_yaml("left", "  aliases: [\"shared\"]\n"),
            slot_yaml("right", "  aliases: [\"shared\"]\n")
        ),
    );
    assert!(out.ok(), "{}", out.stderr);
    for (me, other) in [("left", "right"), ("right", "left")] {
        let s = slot_where(&ns, me, "Degraded for the shared alias", |s| {
            condition(s, "Degraded").is_some_and(|c| c.1 == "NameConflict")
        })
        .await;
        let (_, _, message) = condition(&s, "Degraded").expect("degraded");
        assert!(
            message.contains("\"shared\"") && message.contains(&format!("Slot \"{other}\"")),
            "{me}: {message}"
        );
    }
    let out = c.apply(&ns, &slot_yaml("right", "  aliases: [\"mine\"]\n"));
    assert!(out.ok(), "{}", out.stderr);
    for me in ["left", "right"] {
        slot_where(&ns, me, "no longer Degraded", |s| {
            condition(s, "Degraded").is_some_and(|c| c.0 == "False")
        })
        .await;
    }
}

#[ignore = "needs the Kubernetes control plane built by scripts/setup-kube.sh; scripts/test.sh runs it"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn igpu_slots_request_their_memory_so_the_scheduler_never_overcommits_an_apu() {
    let c = cluster();
    let ns = c.namespace("placement");
    // One APU node: 8 schedulable iGPU IDs and 16 GiB of GTT, as `hal0 device-plugin --device
    // igpu` and `--device igpu-memory` advertise them. The other kwok nodes have neither.
    let node = "apu-node";
    let yaml = format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {node}\n  annotations:\n    kwok.x-k8s.io/node: fake\n  labels:\n    kubernetes.io/hostname: {node}\n    type: kwok\nstatus:\n  allocatable: {{cpu: \"32\", memory: 128Gi, pods: \"110\", amd.com/gpu: \"8\", amd.com/gpu-memory: \"16\"}}\n  capacity: {{cpu: \"32\", memory: 128Gi, pods: \"110\", amd.com/gpu: \"8\", amd.com/gpu-memory: \"16\"}}\n"
    );
    let out = c.kubectl_in(&["apply", "-f", "-"], Some(&yaml));
    assert!(out.ok(), "{}", out.stderr);
    let config = cluster().dir.join("controller-gpu-memory.yaml");
    std::fs::write(&config, "gpuMemoryResource: amd.com/gpu-memory\n").expect("config");
    let _ctl = controller(
        Some(&ns),
        &[
            "--leader-elect=false",
            &format!("--config={}", config.display()),
        ],
    );
    let big = |name: &str| slot_yaml(name, "  device: igpu\n  memory: 10Gi\n  autoload: true\n");
    assert!(c.apply(&ns, &big("first")).ok());
    let first = slot_where(&ns, "first", "loaded on the APU", |s| phase(s) == "ready").await;
    assert_eq!(first["status"]["replicas"], 1);
    let dep = get("deployment", &ns, "hal0-slot-first")
        .await
        .expect("dep");
    assert_eq!(
        container(&dep)["resources"]["limits"]["amd.com/gpu-memory"],
        "10",
        "10Gi of memory is 10 GiB units of GTT"
    );
    // A second 10 GiB model does not fit next to the first (16 GiB): its pod stays Pending.
    assert!(c.apply(&ns, &big("second")).ok());
    until("the second pod Pending for lack of GTT", WAIT, || async {
        let out = c.kubectl(&[
            "get",
            "pods",
            "-n",
            &ns,
            "-l",
            "hal0.dev/slot=second",
            "-o",
            "jsonpath={.items[0].status.conditions[?(@.type==\"PodScheduled\")].message}",
        ]);
        out.stdout.contains("amd.com/gpu-memory").then_some(())
    })
    .await;
    assert_eq!(
        phase(&get("slot", &ns, "second").await.expect("slot")),
        "loading"
    );
    // When the first goes, the second gets the memory.
    let out = c.kubectl(&["delete", "slot", "first", "-n", &ns, "--timeout=60s"]);
    assert!(out.ok(), "{}", out.stderr);
    slot_where(&ns, "second", "loaded once the first is gone", |s| {
        phase(s) == "ready"
    })
    .await;
}
