//! The pure core stays pure: `core/`, `model/` and `rules/` never import I/O, async, logging or clocks
//! (ARCHITECTURE.md). A use of any of these words in their source fails this test.

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
    for entry in std::fs::read_dir(dir).expect("read src dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            check_dir(&path, bad);
            continue;
        }
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
