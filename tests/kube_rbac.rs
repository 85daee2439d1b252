//! Least privilege: the verbs the controller and the gateway use (read from the requests they
//! make to the fake API server while doing everything they do) are exactly the verbs that
//! deploy/rbac.yaml grants them, apart from a short, explained list of verbs a real API server
//! checks that the fake cannot observe.

mod kube_support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use hal0::crd::Slot;
use k8s_openapi::api::rbac::v1::PolicyRule;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube_support::fake_api::{FakeApi, Kind, Recorded};
use kube_support::gateway::Gateway;
use kube_support::harness::{WAIT, slot, start};
use serde::Deserialize;
use serde_json::json;

type Rule = (String, String, String); // (apiGroup, resource, verb)

/// The RBAC (group, resource, verb) a request needs.
fn needed(r: &Recorded) -> Rule {
    let segs: Vec<&str> = r.path.trim_matches('/').split('/').collect();
    let (group, rest) = match segs.as_slice() {
        ["api", "v1", rest @ ..] => ("", rest),
        ["apis", g, _, rest @ ..] => (*g, rest),
        _ => panic!("unexpected path {}", r.path),
    };
    let rest = match rest {
        ["namespaces", _, rest @ ..] => rest,
        _ => rest,
    };
    let resource = match rest {
        [res, _, sub] => format!("{res}/{sub}"),
        [res, ..] => res.to_string(),
        [] => panic!("no resource in {}", r.path),
    };
    let verb = match (r.method.as_str(), rest.len()) {
        ("GET", 1) if r.query.contains("watch=true") => "watch",
        ("GET", 1) => "list",
        ("GET", _) => "get",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", _) => "delete",
        (m, _) => panic!("unexpected method {m}"),
    };
    (group.to_string(), resource, verb.to_string())
}

/// The rules granted to a role of `kind` and `name` in deploy/rbac.yaml.
fn granted(kind: &str, name: &str) -> BTreeSet<Rule> {
    let text = include_str!("../deploy/rbac.yaml");
    let mut out = BTreeSet::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let v = serde_yaml::Value::deserialize(doc).expect("yaml");
        if v["kind"].as_str() != Some(kind) || v["metadata"]["name"].as_str() != Some(name) {
            continue;
        }
        let rules: Vec<PolicyRule> =
            serde_yaml::from_value(v["rules"].clone()).expect("typed PolicyRules");
        for r in rules {
            for g in r.api_groups.iter().flatten() {
                for res in r.resources.iter().flatten() {
                    for verb in &r.verbs {
                        out.insert((g.clone(), res.clone(), verb.clone()));
                    }
                }
            }
        }
    }
    assert!(
        !out.is_empty(),
        "{kind} {name} not found in deploy/rbac.yaml"
    );
    out
}

fn rule(g: &str, r: &str, v: &str) -> Rule {
    (g.into(), r.into(), v.into())
}

fn used(api: &FakeApi) -> BTreeSet<Rule> {
    api.requests().iter().map(needed).collect()
}

#[tokio::test]
async fn the_controller_role_grants_exactly_what_the_controller_uses() {
    let api = FakeApi::start().await;
    let offset = Arc::new(AtomicI64::new(0));
    let ctl = start(&api, offset.clone());
    let slots: Api<Slot> = Api::namespaced(api.client(), "ai");
    slots
        .create(&PostParams::default(), &slot("fast"))
        .await
        .expect("create");
    api.wait_for("reconciled", WAIT, |a| {
        a.get(Kind::Slot, "ai", "fast")
            .is_some_and(|s| s["status"]["phase"].is_string())
    })
    .await;
    api.wait_for("an event", WAIT, |a| !a.events().is_empty())
        .await;
    let pp = PatchParams::default();
    slots
        .patch_scale("fast", &pp, &Patch::Merge(json!({"spec": {"replicas": 1}})))
        .await
        .expect("scale");
    api.wait_for("ready", WAIT, |a| {
        a.get(Kind::Slot, "ai", "fast")
            .is_some_and(|s| s["status"]["phase"] == "ready")
    })
    .await;
    offset.store(3600, Ordering::SeqCst);
    slots
        .patch(
            "fast",
            &pp,
            &Patch::Merge(json!({"metadata": {"labels": {"t": "1"}}})),
        )
        .await
        .expect("touch");
    api.wait_for("idled", WAIT, |a| {
        a.get(Kind::Slot, "ai", "fast")
            .is_some_and(|s| s["spec"]["replicas"] == 0)
    })
    .await;
    slots
        .delete("fast", &DeleteParams::default())
        .await
        .expect("delete");
    api.wait_for("cleaned up", WAIT, |a| a.all(Kind::Slot).is_empty())
        .await;
    ctl.stop().await;

    // The test's own requests (create, scale, touch, delete of the Slot) are not the
    // controller's: drop them by their shape.
    let test_made: BTreeSet<Rule> = [
        rule("hal0.dev", "slots", "create"),
        rule("hal0.dev", "slots", "delete"),
    ]
    .into();
    let mut uses: BTreeSet<Rule> = used(&api).difference(&test_made).cloned().collect();
    // Seen by a real API server only: an apply that creates needs create, and owner
    // references with blockOwnerDeletion need update on the owner's finalizers.
    uses.extend([
        rule("apps", "deployments", "create"),
        rule("", "services", "create"),
        rule("hal0.dev", "slots/finalizers", "update"),
        // kube-runtime's recorder patches an event series when the same event repeats.
        rule("events.k8s.io", "events", "patch"),
    ]);
    assert_eq!(granted("ClusterRole", "hal0-controller"), uses);
}

#[tokio::test]
async fn the_gateway_role_grants_exactly_what_the_gateway_uses() {
    let api = FakeApi::start().await;
    let (upstream, _u) = kube_support::upstream::start().await;
    let setup: Api<Slot> = Api::namespaced(api.client(), "ai");
    setup
        .create(&PostParams::default(), &slot("fast"))
        .await
        .expect("create");
    let body = json!({"status": {"phase": "stopped", "endpoint": upstream}});
    setup
        .patch_status("fast", &PatchParams::default(), &Patch::Merge(&body))
        .await
        .expect("status");
    let before = api.requests().len();
    let gw = Gateway::start(&api, WAIT).await;
    let url = gw.url.clone();
    let request = tokio::spawn(async move {
        // Retried until the routing table has the Slot (bounded by WAIT below).
        loop {
            let r = reqwest::Client::new()
                .post(format!("{url}/v1/chat/completions"))
                .json(&json!({"model": "fast", "messages": []}))
                .send()
                .await;
            if let Ok(r) = r
                && r.status() != 404
            {
                return r.status().as_u16();
            }
            tokio::task::yield_now().await;
        }
    });
    api.wait_for("woken", WAIT, |a| {
        a.get(Kind::Slot, "ai", "fast")
            .is_some_and(|s| s["spec"]["replicas"] == 1)
    })
    .await;
    let ready = json!({"status": {"phase": "ready"}});
    setup
        .patch_status("fast", &PatchParams::default(), &Patch::Merge(&ready))
        .await
        .expect("ready");
    let code = tokio::time::timeout(WAIT, request)
        .await
        .expect("served")
        .expect("task");
    assert_eq!(code, 200);
    api.wait_for("activity written", WAIT, |a| {
        a.requests()[before..]
            .iter()
            .any(|r| r.path.ends_with("/status"))
    })
    .await;
    gw.stop().await;
    let gateway_made: BTreeSet<Rule> = api.requests()[before..].iter().map(needed).collect();
    // The test's own status write (ready) happened after `before` too: it is a status patch,
    // which the gateway also makes, so it adds nothing.
    assert_eq!(granted("Role", "hal0-gateway"), gateway_made);
}
