//! One Slot that hal0 cannot read never blinds it. A Slot stored under hal0 0.1.0's looser CRD
//! (memory a bare string, durations unbounded) stays in etcd after the CRD is upgraded; the
//! controller must mark only that Slot Degraded (with a reason and an event) and keep
//! reconciling the others, and the gateway must keep routing the others. Its own binary (and
//! control plane): it replaces the cluster-wide CRD.

mod cluster;

use cluster::{WAIT, cluster, condition, controller, gateway, get, repo, until};
use serde_json::Value;

#[ignore = "needs the Kubernetes control plane built by scripts/setup-kube.sh; scripts/test.sh runs it"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_slot_degrades_only_itself() {
    let c = cluster();
    let ns = "hal0";
    let old = repo().join("tests/fixtures/kube/slot-crd-0.1.0.yaml");
    let out = c.kubectl(&["apply", "-f", &old.display().to_string()]);
    assert!(out.ok(), "old CRD: {}", out.stderr);
    let poison = "apiVersion: hal0.dev/v1alpha1\nkind: Slot\nmetadata:\n  name: poison\nspec:\n  provider: llama.cpp\n  model: hf:o/r/m.gguf\n  memory: lots\n---\napiVersion: hal0.dev/v1alpha1\nkind: Slot\nmetadata:\n  name: forever\nspec:\n  provider: llama.cpp\n  model: hf:o/r/m.gguf\n  idle_timeout: 99999999999999999999999s\n";
    // The old schema admits both; wait until it is served (a CRD update is not instant).
    until("the old CRD admits the poison Slots", WAIT, || async {
        c.apply(ns, poison).ok().then_some(())
    })
    .await;
    // Upgrade the CRD the way users do; the stored Slots stay as they are.
    let out = c.kubectl(&["apply", "-k", &repo().join("deploy").display().to_string()]);
    assert!(out.ok(), "upgrade: {}", out.stderr);
    let good = "apiVersion: hal0.dev/v1alpha1\nkind: Slot\nmetadata:\n  name: fine\nspec:\n  provider: llama.cpp\n  model: hf:o/r/Fine.gguf\n  memory: 8Gi\n";
    until("the new CRD serves", WAIT, || async {
        c.apply(ns, good).ok().then_some(())
    })
    .await;

    let mut ctl = controller(Some(ns), &["--leader-elect=false"]);
    let port = cluster::free_port();
    let gw = gateway(&format!("http://127.0.0.1:{port}"));

    until("Slot fine reconciled", WAIT, || async {
        let s = get("slot", ns, "fine").await?;
        (s["status"]["phase"] == "stopped").then_some(())
    })
    .await;
    for (name, field) in [("poison", "memory"), ("forever", "idle_timeout")] {
        let s = until(&format!("Slot {name} Degraded"), WAIT, || async {
            let s = get("slot", ns, name).await?;
            condition(&s, "Degraded")
                .filter(|c| c.0 == "True")
                .map(|_| s)
        })
        .await;
        let (_, reason, message) = condition(&s, "Degraded").expect("degraded");
        assert_eq!(reason, "InvalidSpec", "{name}");
        assert!(message.contains("cannot be read"), "{name}: {message}");
        assert!(
            message.contains(field) || message.contains("duration") || message.contains("memory"),
            "{name}: the message names what is wrong: {message}"
        );
        let out = c.kubectl(&[
            "get",
            "events",
            "-n",
            ns,
            "--field-selector",
            &format!("involvedObject.name={name}"),
            "-o",
            "json",
        ]);
        let events: Value = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
        assert!(
            events["items"].as_array().is_some_and(|a| !a.is_empty()),
            "an event for {name}: {}",
            out.stderr
        );
    }
    let models = cluster::until_listed(&gw, "fine").await;
    let text = models.to_string();
    assert!(
        !text.contains("poison") && !text.contains("forever"),
        "{text}"
    );
    // 0.1.0 ignored SIGTERM for more than 20 s in this state.
    let t0 = std::time::Instant::now();
    assert!(
        ctl.terminate(std::time::Duration::from_secs(12)).is_some(),
        "the controller exits promptly on SIGTERM"
    );
    eprintln!("controller exited {:?} after SIGTERM", t0.elapsed());
}
