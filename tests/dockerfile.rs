//! The root Dockerfile and .dockerignore, checked as far as a machine without a container
//! engine can: the stages and `COPY --from` references agree, every binary built is a
//! `[[bin]]` of Cargo.toml, everything the build reads (Cargo.toml, Cargo.lock, build.rs, the
//! proto, every `include_str!` target) is copied into the build stage and let through by
//! .dockerignore, target/ is kept out, and the image runs as a non-root user with CA
//! certificates.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The Dockerfile's instructions, continuation lines joined, comments dropped.
fn instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && cur.is_empty()) {
            continue;
        }
        if let Some(head) = t.strip_suffix('\\') {
            cur.push_str(head);
            cur.push(' ');
        } else {
            cur.push_str(t);
            out.push(std::mem::take(&mut cur));
        }
    }
    out
}

struct Stage {
    name: String,
    lines: Vec<String>,
}

fn stages() -> Vec<Stage> {
    let mut stages: Vec<Stage> = Vec::new();
    for ins in instructions(&read("Dockerfile")) {
        let words: Vec<&str> = ins.split_whitespace().collect();
        if words
            .first()
            .is_some_and(|w| w.eq_ignore_ascii_case("FROM"))
        {
            let name = match words.as_slice() {
                [_, _, as_, name] if as_.eq_ignore_ascii_case("AS") => name.to_string(),
                _ => format!("#{}", stages.len()),
            };
            stages.push(Stage {
                name,
                lines: Vec::new(),
            });
        } else if let Some(s) = stages.last_mut() {
            s.lines.push(ins);
        } else {
            assert!(
                ins.starts_with("ARG"),
                "only ARG may come before FROM: {ins}"
            );
        }
    }
    stages
}

/// .dockerignore's verdict on a repository path (the Docker rules this file uses: `*`, then
/// `!dir/` or `!file` exceptions; the last matching line wins).
fn let_in(path: &str) -> bool {
    let mut included = true;
    for line in read(".dockerignore").lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (negate, pat) = match line.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, line),
        };
        let pat = pat.trim_start_matches('/');
        let matches = pat == "*"
            || path == pat.trim_end_matches('/')
            || (pat.ends_with('/') && path.starts_with(pat))
            || path.starts_with(&format!("{pat}/"));
        if matches {
            included = negate;
        }
    }
    included
}

/// Paths the build stage copies into /src.
fn copied(build: &Stage) -> Vec<String> {
    build
        .lines
        .iter()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
        .flat_map(|l| {
            let words: Vec<&str> = l.split_whitespace().skip(1).collect();
            words[..words.len() - 1]
                .iter()
                .map(|w| w.trim_end_matches('/').to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Every file under `dir` (repository-relative).
fn files(dir: &Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(
                p.strip_prefix(root())
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
}

/// Repository files the Rust build reads: manifest, lock, build script, proto, sources and
/// the `include_str!`/`include_bytes!` targets.
fn build_inputs() -> BTreeSet<String> {
    let mut inputs: BTreeSet<String> = ["Cargo.toml", "Cargo.lock", "build.rs"]
        .map(String::from)
        .into();
    let mut src = Vec::new();
    files(&root().join("src"), &mut src);
    files(&root().join("proto"), &mut src);
    for f in &src {
        inputs.insert(f.clone());
        if !f.ends_with(".rs") {
            continue;
        }
        let text = read(f);
        for mac in ["include_str!(\"", "include_bytes!(\""] {
            for part in text.split(mac).skip(1) {
                let rel = part.split('"').next().unwrap();
                let full = root().join(f).parent().unwrap().join(rel);
                let full =
                    std::fs::canonicalize(&full).unwrap_or_else(|e| panic!("{f}: {rel}: {e}"));
                let rel = full.strip_prefix(root()).unwrap();
                inputs.insert(rel.to_string_lossy().into_owned());
            }
        }
    }
    inputs
}

#[test]
fn stages_and_copy_from_agree() {
    let stages = stages();
    let names: Vec<&str> = stages.iter().map(|s| s.name.as_str()).collect();
    for want in ["build", "runtime", "e2e"] {
        assert!(names.contains(&want), "stage {want} in {names:?}");
    }
    for (i, s) in stages.iter().enumerate() {
        for l in &s.lines {
            if let Some(rest) = l.split("--from=").nth(1) {
                let from = rest.split_whitespace().next().unwrap();
                assert!(
                    names[..i].contains(&from),
                    "stage {}: COPY --from={from} names no earlier stage",
                    s.name
                );
            }
        }
    }
    // The default target (the last stage) is the runtime image, not the e2e one.
    let last = stages.last().unwrap();
    assert!(
        last.lines.is_empty(),
        "the last stage is the plain runtime image"
    );
    let from_runtime = read("Dockerfile")
        .lines()
        .filter(|l| l.starts_with("FROM runtime"))
        .count();
    assert_eq!(from_runtime, 2, "e2e and the final image build on runtime");
}

#[test]
fn the_binaries_built_and_copied_are_cargo_bins() {
    let manifest: toml::Table = read("Cargo.toml").parse().unwrap();
    let bins: BTreeSet<String> = manifest["bin"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap().to_string())
        .collect();
    let build = stages().into_iter().find(|s| s.name == "build").unwrap();
    let run = build
        .lines
        .iter()
        .find(|l| l.contains("cargo build"))
        .expect("the build stage runs cargo build");
    assert!(
        run.contains("--release") && run.contains("--locked"),
        "{run}"
    );
    let built: Vec<&str> = run
        .split("--bin ")
        .skip(1)
        .map(|s| s.split_whitespace().next().unwrap())
        .collect();
    assert!(built.contains(&"hal0"), "{run}");
    for b in &built {
        assert!(
            bins.contains(*b),
            "--bin {b} is not a [[bin]] of Cargo.toml"
        );
        assert!(
            run.contains(&format!("target/release/{b}")),
            "{b} is copied out of the target cache"
        );
    }
}

#[test]
fn every_build_input_is_copied_and_let_in_by_dockerignore() {
    let build = stages().into_iter().find(|s| s.name == "build").unwrap();
    let copied = copied(&build);
    for input in build_inputs() {
        assert!(
            let_in(&input),
            ".dockerignore keeps out {input}, which the build reads"
        );
        assert!(
            copied
                .iter()
                .any(|c| input == *c || input.starts_with(&format!("{c}/"))),
            "the build stage does not COPY {input} (copies {copied:?})"
        );
    }
    for out in [
        "target/release/hal0",
        "tests/fixtures/config/minimal.toml",
        ".git/HEAD",
        "e2e/kube/run.sh",
    ] {
        assert!(!let_in(out), ".dockerignore lets in {out}");
    }
}

#[test]
fn the_image_runs_as_non_root_with_ca_certificates() {
    let stages = stages();
    let runtime = stages.iter().find(|s| s.name == "runtime").unwrap();
    let user = runtime
        .lines
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("USER in the runtime stage");
    let uid = user.split(':').next().unwrap().trim();
    assert!(uid != "0" && uid != "root", "USER {user}");
    assert!(
        runtime
            .lines
            .iter()
            .any(|l| l.contains("apt-get install") && l.contains("ca-certificates")),
        "ca-certificates installed"
    );
    assert!(
        runtime
            .lines
            .iter()
            .any(|l| l.starts_with("ENTRYPOINT [\"hal0\"]")),
        "hal0 is the entrypoint"
    );
}

#[test]
fn e2e_kube_builds_the_same_dockerfile() {
    let run = read("e2e/kube/run.sh");
    assert!(
        run.contains("docker build --target e2e -t hal0:e2e ."),
        "e2e/kube/run.sh must build the root Dockerfile's e2e stage"
    );
    assert!(
        !std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("e2e/kube/Dockerfile")
            .exists()
    );
    assert!(
        read("Dockerfile").contains("AS e2e"),
        "the root Dockerfile has the e2e stage"
    );
}
