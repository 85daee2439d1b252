//! Examples never rot: every fenced example in README.md and docs/*.md is checked.
//!
//! - ```toml blocks are complete hal0.toml files: each must pass `hal0 config validate` (the
//!   real binary, on a real file).
//! - ```yaml blocks that are a `Slot` must deserialize as one, use only fields of the CRD's
//!   schema (`hal0 crd`), and pass the Slot rules the controller applies.
//! - every `hal0 …` line of a ```sh block must be accepted by hal0's argument parser as typed:
//!   it is run with `--help` appended, which parses every subcommand, flag and value first
//!   (an unknown flag or value fails) and then only prints help.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every docs/*.md.
fn documents() -> Vec<PathBuf> {
    let mut docs = vec![root().join("README.md")];
    let mut more: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/")
        .map(|e| e.expect("docs entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    more.sort();
    docs.extend(more);
    docs
}

/// A fenced block: where it starts (1-based line of the fence) and its text.
struct Block {
    file: PathBuf,
    line: usize,
    text: String,
}

impl Block {
    fn at(&self) -> String {
        format!(
            "{}:{}",
            self.file
                .strip_prefix(root())
                .unwrap_or(&self.file)
                .display(),
            self.line
        )
    }
}

/// Every ```LANG block of `file`.
fn blocks(file: &Path, lang: &str) -> Vec<Block> {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let mut out = Vec::new();
    let mut current: Option<Block> = None;
    for (i, line) in text.lines().enumerate() {
        let fence = line.trim_start();
        match &mut current {
            None if fence.starts_with("```") => {
                let info = fence.trim_start_matches('`').trim();
                current = Some(Block {
                    file: file.to_path_buf(),
                    line: i + 1,
                    text: String::new(),
                });
                if info.split_whitespace().next() != Some(lang) {
                    // Another language: still consume it, so its closing fence is not read
                    // as an opening one.
                    current.as_mut().expect("just set").line = 0;
                }
            }
            None => {}
            Some(b) if fence.starts_with("```") => {
                if b.line != 0 {
                    out.push(current.take().expect("open block"));
                }
                current = None;
            }
            Some(b) => {
                b.text.push_str(line);
                b.text.push('\n');
            }
        }
    }
    assert!(current.is_none(), "{}: unclosed code fence", file.display());
    out
}

fn all_blocks(lang: &str) -> Vec<Block> {
    documents().iter().flat_map(|d| blocks(d, lang)).collect()
}

#[test]
fn the_slot_guide_exists_and_the_readme_links_it() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    assert!(
        readme.contains("docs/slots.md"),
        "README.md must link docs/slots.md"
    );
    let guide = root().join("docs/slots.md");
    assert!(
        blocks(&guide, "toml").len() >= 8,
        "docs/slots.md should show its slots as TOML"
    );
    assert!(
        !blocks(&guide, "yaml").is_empty(),
        "and as Kubernetes Slots"
    );
}

#[test]
fn every_toml_example_passes_hal0_config_validate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let examples = all_blocks("toml");
    assert!(!examples.is_empty());
    let mut failures = Vec::new();
    for (i, b) in examples.iter().enumerate() {
        let path = dir.path().join(format!("example-{i}.toml"));
        std::fs::write(&path, &b.text).expect("write example");
        let out = Command::new(env!("CARGO_BIN_EXE_hal0"))
            .args(["config", "validate", "--config"])
            .arg(&path)
            .env("HAL0_LOG", "off")
            .output()
            .expect("run hal0");
        if !out.status.success() {
            failures.push(format!(
                "{} (```toml block):\n{}",
                b.at(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The field names the CRD's schema allows in `spec`.
fn crd_spec_fields() -> BTreeSet<String> {
    let crd: serde_yaml::Value =
        serde_yaml::from_str(&hal0::kube::crd::crd_yaml().expect("CRD renders"))
            .expect("CRD is YAML");
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    let fields: BTreeSet<String> = spec
        .as_mapping()
        .expect("spec.properties in the CRD")
        .keys()
        .filter_map(|k| k.as_str().map(String::from))
        .collect();
    assert!(fields.contains("provider"), "{fields:?}");
    fields
}

#[test]
fn every_slot_yaml_example_passes_the_slot_rules_and_the_crd_fields() {
    let allowed = crd_spec_fields();
    let mut slots = 0;
    let mut failures = Vec::new();
    for b in all_blocks("yaml") {
        for doc in serde_yaml::Deserializer::from_str(&b.text) {
            let value = match serde_yaml::Value::deserialize(doc) {
                Ok(v) => v,
                Err(e) => {
                    failures.push(format!("{}: not YAML: {e}", b.at()));
                    continue;
                }
            };
            if value["kind"].as_str() != Some("Slot") {
                continue;
            }
            slots += 1;
            if value["apiVersion"].as_str() != Some("hal0.dev/v1alpha1") {
                failures.push(format!("{}: apiVersion must be hal0.dev/v1alpha1", b.at()));
            }
            for key in value["spec"]
                .as_mapping()
                .into_iter()
                .flatten()
                .map(|(k, _)| k)
            {
                let key = key.as_str().unwrap_or_default();
                if !allowed.contains(key) {
                    failures.push(format!(
                        "{}: spec.{key} is not a field of the Slot CRD ({allowed:?})",
                        b.at()
                    ));
                }
            }
            match serde_yaml::from_value::<hal0::kube::crd::Slot>(value) {
                Err(e) => failures.push(format!("{}: not a Slot: {e}", b.at())),
                Ok(slot) => {
                    if let Err(e) = hal0::kube::validate::validate(&slot) {
                        failures.push(format!("{}: {e}", b.at()));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(slots >= 2, "the docs show Slots; found {slots}");
}

use serde::Deserialize;

/// The `hal0 …` commands of a ```sh block, without what the shell adds (comments, pipes,
/// redirections, `sudo`), continuation lines joined.
fn hal0_lines(block: &str) -> Vec<String> {
    let mut joined = Vec::new();
    let mut cur = String::new();
    for line in block.lines() {
        if let Some(head) = line.strip_suffix('\\') {
            cur.push_str(head);
            cur.push(' ');
            continue;
        }
        cur.push_str(line);
        joined.push(std::mem::take(&mut cur));
    }
    joined
        .into_iter()
        .filter_map(|l| {
            let l = l.trim();
            let l = l.strip_prefix("sudo ").unwrap_or(l);
            if !l.starts_with("hal0 ") {
                return None;
            }
            let mut end = l.len();
            for stop in [" #", " |", " >", " &&", " &", ";"] {
                if let Some(i) = l.find(stop) {
                    end = end.min(i);
                }
            }
            Some(l[..end].trim().to_string())
        })
        .collect()
}

#[test]
fn every_hal0_command_line_in_the_docs_parses_as_typed() {
    let bin = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_hal0"), bin.path().join("hal0"))
        .expect("link hal0");
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut checked = 0;
    let mut failures = Vec::new();
    for b in all_blocks("sh") {
        for line in hal0_lines(&b.text) {
            checked += 1;
            let out = Command::new("bash")
                .arg("-c")
                .arg(format!("{line} --help"))
                .env("PATH", &path)
                .env("HAL0_LOG", "off")
                .env_remove("HAL0_URL")
                .output()
                .expect("run bash");
            if !out.status.success() {
                failures.push(format!(
                    "{}: `{line}` is not accepted:\n{}",
                    b.at(),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= 10, "only {checked} hal0 command lines found");
}

#[test]
fn the_command_line_extraction_strips_what_the_shell_adds() {
    assert_eq!(
        hal0_lines(
            "hal0 slot list   # every slot\nsudo hal0 service install\nhal0 completions bash > x\ncurl a | jq\nhal0 slot edit a \\\n  --set b=c\n"
        ),
        [
            "hal0 slot list",
            "hal0 service install",
            "hal0 completions bash",
            "hal0 slot edit a    --set b=c"
        ]
    );
}
