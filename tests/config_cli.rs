//! `hal0 config validate` and `hal0 config show`, run as the real binary on fixture files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/config")
        .join(name)
}

fn hal0(args: &[&str], config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hal0"))
        .args(args)
        .arg("--config")
        .arg(config)
        // Values of variables named by api_keys / api_key_env must never be printed.
        .env("HAL0_API_KEY", "gateway-key-value")
        .env("OPENROUTER_API_KEY", "sk-or-env-value")
        .env("HAL0_LOG", "off")
        .output()
        .unwrap_or_else(|e| panic!("cannot run hal0: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn validate_reports_every_problem_as_path_line_col_and_exits_1() {
    let path = fixture("invalid.toml");
    let out = hal0(&["config", "validate"], &path);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stdout),
        "",
        "nothing on stdout for an invalid file"
    );
    let stderr = text(&out.stderr);
    let p = path.display();
    let want = [
        format!("{p}:3:10: server.listen: \"localhost:8080\" is not a socket address"),
        format!("{p}:7:12: slots.primary.provider: \"primary\" is the built-in chat slot"),
        format!("{p}:10:8: slots.fast: missing required key \"provider\""),
        format!("{p}:11:1: slots.fast.provder: unknown key \"provder\""),
        format!("{p}:13:16: slots.fast.idle_timeout: \"10 minutes\" is not a duration"),
    ];
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), want.len() + 1, "{stderr}");
    for (line, want) in lines.iter().zip(&want) {
        assert!(line.starts_with(want.as_str()), "{line}\nwanted {want}");
    }
    assert!(stderr.contains("did you mean \"provider\"?"), "{stderr}");
    assert!(
        lines[want.len()].contains("5 problems"),
        "summary line: {stderr}"
    );
}

#[test]
fn validate_lists_one_line_per_slot_and_exits_0() {
    let path = fixture("minimal.toml");
    let out = hal0(&["config", "validate"], &path);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    // First the file, and why that one.
    assert_eq!(
        stdout.lines().next(),
        Some(format!("{} (from --config): valid, 2 slots", path.display()).as_str())
    );
    let lines: Vec<Vec<&str>> = stdout
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines,
        [
            vec![
                "fast",
                "llama.cpp",
                "chat",
                "model=file:/srv/models/fast.gguf",
                "port=8090"
            ],
            vec![
                "primary",
                "llama.cpp",
                "chat",
                "model=hf:org/repo/Tiny-Q4.gguf",
                "port=auto"
            ],
        ]
    );
}

#[test]
fn validate_reports_an_unreadable_file() {
    let out = hal0(&["config", "validate"], &fixture("does-not-exist.toml"));
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cannot read the config file"));
}

#[test]
fn the_example_hal0_toml_validates() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("hal0.example.toml");
    let out = hal0(&["config", "validate"], &example);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for (slot, role) in [
        ("embed", "embeddings"),
        ("primary", "chat"),
        ("stt", "speech-to-text"),
        ("tts", "text-to-speech"),
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(slot) && l.contains(role)),
            "{slot} {role}:\n{stdout}"
        );
    }
}

#[test]
fn show_redacts_secrets() {
    for json in [false, true] {
        let args: &[&str] = if json {
            &["config", "show", "--json"]
        } else {
            &["config", "show"]
        };
        let out = hal0(args, &fixture("secrets.toml"));
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let shown = text(&out.stdout);
        for secret in [
            "hf_provider_secret",
            "slot-secret-value",
            "hunter2",
            "url-secret",
            "gateway-key-value",
            "sk-or-env-value",
        ] {
            assert!(!shown.contains(secret), "{secret} leaked:\n{shown}");
        }
        // Variable names stay, so the user can see what is read from where.
        for name in [
            "HAL0_API_KEY",
            "OPENROUTER_API_KEY",
            "MY_API_KEY",
            "HF_TOKEN",
        ] {
            assert!(shown.contains(name), "{name} missing:\n{shown}");
        }
        // Harmless values stay too.
        assert!(shown.contains("LLAMA_ARG_THREADS"), "{shown}");
    }

    let out = hal0(&["config", "show", "--json"], &fixture("secrets.toml"));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let env = &v["slots"]["primary"]["env"];
    assert_eq!(env["MY_API_KEY"], "<redacted>");
    assert_eq!(env["db_password"], "<redacted>");
    assert_eq!(env["LLAMA_ARG_THREADS"], "8");
    assert_eq!(v["providers"]["llama.cpp"]["env"]["HF_TOKEN"], "<redacted>");
    // (Credentials in an upstream URL are refused: tests/api_guard.rs.)
    assert_eq!(
        v["slots"]["openrouter"]["upstream"],
        "https://openrouter.ai/api/v1"
    );
    assert_eq!(
        v["slots"]["openrouter"]["api_key_env"],
        "OPENROUTER_API_KEY"
    );
}

#[test]
fn show_fills_in_every_default() {
    let out = hal0(&["config", "show", "--json"], &fixture("minimal.toml"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let server = &v["server"];
    assert_eq!(server["listen"], "127.0.0.1:8080");
    assert_eq!(server["port_range"], serde_json::json!([8081, 8099]));
    assert_eq!(server["memory_budget"], "unlimited");
    assert_eq!(server["load_timeout"], "5m");
    assert_eq!(server["stop_grace"], "10s");
    assert_eq!(server["workers"], "auto");
    let primary = &v["slots"]["primary"];
    assert_eq!(primary["role"], "chat");
    assert_eq!(primary["builtin"], true);
    assert_eq!(primary["idle_timeout"], "10m");
    assert_eq!(primary["priority"], 50);
    assert_eq!(primary["device"], "cpu");
    assert_eq!(primary["port"], "auto");
    assert_eq!(primary["model_id"], "Tiny-Q4");
    assert_eq!(v["slots"]["fast"]["port"], 8090);
    assert_eq!(v["slots"]["fast"]["builtin"], false);
    // Built-in slots the file does not declare are not invented.
    let names: Vec<&String> = v["slots"]
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    assert_eq!(names, ["fast", "primary"]);

    let out = hal0(&["config", "show"], &fixture("minimal.toml"));
    let shown = text(&out.stdout);
    for line in [
        "[slots.primary]",
        "idle_timeout = \"10m\"",
        "priority = 50",
        "device = \"cpu\"",
        "port = \"auto\"",
        "port = 8090",
        "listen = \"127.0.0.1:8080\"",
    ] {
        assert!(shown.lines().any(|l| l == line), "{line} missing:\n{shown}");
    }
}

#[test]
fn show_refuses_an_invalid_file() {
    let out = hal0(&["config", "show"], &fixture("invalid.toml"));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "");
    assert!(text(&out.stderr).contains(":3:10: server.listen"));
}
