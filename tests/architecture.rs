//! The pure core stays pure: `core/`, `model/` and `rules/` never import I/O, async, logging or clocks
//! (ARCHITECTURE.md); and every module imports only the modules its line in src/lib.rs allows.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const FORBIDDEN: [&str; 11] = [
    "tokio",
    "kube",
    "axum",
    "tonic",
    "tracing",
    "hyper",
    "std::fs",
    "std::net",
    "std::process",
    "Instant::now",
    "SystemTime",
];

fn check_dir(dir: &Path, bad: &mut Vec<String>) {
    let mut files = Vec::new();
    sources(dir, &mut files);
    assert!(!files.is_empty(), "no source under {}", dir.display());
    for path in files {
        let text = std::fs::read_to_string(&path).expect("read source");
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for word in FORBIDDEN {
                if code.contains(word) {
                    bad.push(format!("{}:{}: uses {word}", path.display(), i + 1));
                }
            }
        }
    }
}

#[test]
fn core_model_and_rules_do_no_io_and_read_no_clock() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut bad = Vec::new();
    check_dir(&root.join("core"), &mut bad);
    check_dir(&root.join("model"), &mut bad);
    check_dir(&root.join("rules"), &mut bad);
    assert!(
        bad.is_empty(),
        "the pure core imports the outside world:\n{}",
        bad.join("\n")
    );
}

/// The layout in src/lib.rs: module → the crate modules it may import (`None` = everything).
fn layout(lib: &str) -> BTreeMap<String, Option<BTreeSet<String>>> {
    let mut out = BTreeMap::new();
    for line in lib.lines() {
        let Some(entry) = line.strip_prefix("//! - `") else {
            continue;
        };
        let Some((name, rest)) = entry.split_once('`') else {
            continue;
        };
        let (_, deps) = rest
            .rsplit_once(" · ")
            .unwrap_or_else(|| panic!("src/lib.rs: the layout line of `{name}` has no ` · `"));
        let deps = match deps.trim() {
            "everything" => None,
            "nothing" => Some(BTreeSet::new()),
            list => Some(list.split(',').map(|d| d.trim().to_string()).collect()),
        };
        out.insert(name.to_string(), deps);
    }
    out
}

/// The crate modules `text` imports: `crate::x::…` and each head of `crate::{x, y::…}`.
fn crate_imports(text: &str) -> BTreeSet<String> {
    let code: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level items of the group: split on commas outside nested braces.
            let (mut depth, mut item_start) = (0usize, 0usize);
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        out.insert(ident(&group[item_start..i]));
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.insert(ident(&group[item_start..i]));
                        item_start = i + 1;
                    }
                    _ => {}
                }
            }
        } else {
            out.insert(ident(rest));
        }
    }
    out.remove("");
    out
}

fn sources(path: &Path, out: &mut Vec<std::path::PathBuf>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).expect("read src dir") {
            sources(&entry.expect("dir entry").path(), out);
        }
    } else if path.is_file() && path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_path_buf());
    }
}

#[test]
fn every_module_imports_only_what_the_layout_allows() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("src/lib.rs");
    let layout = layout(&lib);
    let declared: BTreeSet<String> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';').to_string())
        .collect();
    let listed: BTreeSet<String> = layout.keys().cloned().collect();
    assert_eq!(
        declared, listed,
        "src/lib.rs: the modules declared and the modules in the layout differ"
    );
    for deps in layout.values().flatten() {
        for d in deps {
            assert!(
                listed.contains(d),
                "src/lib.rs: the layout names `{d}`, no such module"
            );
        }
    }

    let mut bad = Vec::new();
    for (module, allowed) in &layout {
        let Some(allowed) = allowed else { continue };
        let mut files = Vec::new();
        let dir = src.join(module);
        sources(&dir, &mut files);
        sources(&src.join(format!("{module}.rs")), &mut files);
        assert!(!files.is_empty(), "no source for module `{module}`");
        for file in files {
            let text = std::fs::read_to_string(&file).expect("read source");
            for import in crate_imports(&text) {
                if import != *module && !allowed.contains(&import) {
                    bad.push(format!(
                        "{}: imports `crate::{import}`; `{module}` may use {allowed:?}",
                        file.display()
                    ));
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "imports the layout in src/lib.rs does not allow:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_import_scanner_reads_groups_and_paths() {
    let text = "use crate::model::{A, B};\nuse crate::{\n    core::{self, X},\n    rules,\n};\n// use crate::api;\nlet x = crate::pull::go();";
    let got: Vec<String> = crate_imports(text).into_iter().collect();
    assert_eq!(got, ["core", "model", "pull", "rules"]);
}
