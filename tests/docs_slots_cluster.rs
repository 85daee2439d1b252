//! The Kubernetes `Slot` examples of README.md and docs/*.md against the real API server (the
//! control plane of tests/cluster): each one is sent with `kubectl apply --dry-run=server`, so
//! the CRD's schema, its patterns and CEL rules, and kubectl's strict field validation all
//! judge it exactly as they would a user's `kubectl apply`. tests/docs_examples.rs checks the
//! same blocks against hal0's own Slot rules without a cluster.

mod cluster;

use cluster::cluster;

/// Every ```yaml block of README.md and docs/*.md, with where it starts.
fn yaml_blocks() -> Vec<(String, String)> {
    let root = cluster::repo();
    let mut docs = vec![root.join("README.md")];
    let mut more: Vec<_> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    more.sort();
    docs.extend(more);
    let mut out = Vec::new();
    for doc in docs {
        let text = std::fs::read_to_string(&doc).expect("read doc");
        let mut open: Option<(usize, bool, String)> = None;
        for (i, line) in text.lines().enumerate() {
            let fence = line.trim_start();
            match &mut open {
                None if fence.starts_with("```") => {
                    let yaml = fence.trim_start_matches('`').trim().starts_with("yaml");
                    open = Some((i + 1, yaml, String::new()));
                }
                None => {}
                Some((at, yaml, body)) if fence.starts_with("```") => {
                    if *yaml {
                        let name = doc.strip_prefix(&root).unwrap_or(&doc).display();
                        out.push((format!("{name}:{at}"), std::mem::take(body)));
                    }
                    open = None;
                }
                Some((_, _, body)) => {
                    body.push_str(line);
                    body.push('\n');
                }
            }
        }
    }
    out
}

#[ignore = "needs the Kubernetes control plane built by scripts/setup-kube.sh; scripts/test.sh runs it"]
#[test]
fn every_slot_example_in_the_docs_is_accepted_by_the_api_server() {
    let c = cluster();
    let ns = c.namespace("docs");
    let mut checked = 0;
    let mut failures = Vec::new();
    for (at, block) in yaml_blocks() {
        for doc in serde_yaml::Deserializer::from_str(&block) {
            let Ok(mut v) = <serde_yaml::Value as serde::Deserialize>::deserialize(doc) else {
                continue;
            };
            if v["kind"].as_str() != Some("Slot") {
                continue;
            }
            // The examples name the namespace hal0 is installed in; each test has its own.
            if let Some(meta) = v["metadata"].as_mapping_mut() {
                meta.remove("namespace");
            }
            let yaml = serde_yaml::to_string(&v).expect("YAML");
            let out = c.kubectl_in(
                &["apply", "--dry-run=server", "-n", &ns, "-f", "-"],
                Some(&yaml),
            );
            checked += 1;
            if !out.ok() || out.stderr.contains("Warning") {
                failures.push(format!("{at}: {}{}", out.stdout, out.stderr));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= 2, "only {checked} Slot examples found");
}

#[ignore = "needs the Kubernetes control plane built by scripts/setup-kube.sh; scripts/test.sh runs it"]
#[test]
fn the_api_server_check_can_fail() {
    let c = cluster();
    let ns = c.namespace("docs-bad");
    let bad = "apiVersion: hal0.dev/v1alpha1\nkind: Slot\nmetadata:\n  name: bad\nspec:\n  provider: llama.cpp\n  model: hf:org/repo/a.gguf\n  idle_timout: 5m\n";
    let out = c.kubectl_in(
        &["apply", "--dry-run=server", "-n", &ns, "-f", "-"],
        Some(bad),
    );
    assert!(!out.ok(), "a misspelt field is refused");
    assert!(out.stderr.contains("idle_timout"), "{}", out.stderr);
}
