//! Valid configs parse into the model with defaults kept; errors are data the API can return.

use std::path::Path;

use hal0::config::{load, parse};
use hal0::model::{ByteSize, HumanDuration, ProviderKind, Role, ServerSettings, SlotName};

#[test]
fn valid_configs_parse_with_their_values() {
    let text = r#"
[server]
listen = "0.0.0.0:9000"
port_range = [9001, 9003]
memory_budget = 4294967296
load_timeout = "1h30m"

[providers.flm]
command = ["/usr/bin/flm", "serve"]

[slots.primary]
provider = "llama.cpp"
model = "hf:org/repo/Qwen-7B-Q4.gguf"
idle_timeout = "90s"
priority = 0
port = 9003
memory = "1.5GB"

[slots]
npu = { provider = "flm", model = "flm:llama3.2:1b", device = "npu", role = "chat" }
up.provider = "openai-compatible"
up.upstream = "https://openrouter.ai/api/v1"
up.auth = "x-api-key"
up.models = ["anthropic/claude-sonnet-4"]
"#;
    let s = parse(Path::new("hal0.toml"), text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.server.listen, "0.0.0.0:9000");
    assert_eq!(s.server.port_range, [9001, 9003]);
    assert_eq!(s.server.memory_budget, Some(ByteSize::gib(4)));
    assert_eq!(s.server.load_timeout, HumanDuration::from_secs(5400));
    assert_eq!(
        s.server.stop_grace,
        HumanDuration::from_secs(10),
        "default kept"
    );
    let flm = s
        .provider_override(ProviderKind::Flm)
        .map(|o| o.command.clone());
    assert_eq!(flm, Some(Some(vec!["/usr/bin/flm".into(), "serve".into()])));
    let p = &s.slots["primary"];
    assert_eq!(p.idle_timeout, Some(HumanDuration::from_secs(90)));
    assert_eq!((p.priority, p.port), (Some(0), Some(9003)));
    assert_eq!(p.memory, Some(ByteSize(1_500_000_000)));
    assert_eq!(s.slots["npu"].effective_role(None), Role::Chat);
    assert_eq!(s.slots["up"].models, ["anthropic/claude-sonnet-4"]);
    assert_eq!(s.slots.len(), 3);
}

#[test]
fn an_empty_file_is_a_valid_config_with_no_slots() {
    let s = parse(Path::new("hal0.toml"), "").unwrap_or_else(|e| panic!("{e}"));
    assert!(s.slots.is_empty());
    assert_eq!(s.server, ServerSettings::default());
}

#[test]
fn gateway_workers_are_a_count_or_auto() {
    let workers = |text: &str| parse(Path::new("h.toml"), text).map(|s| s.server.workers);
    assert_eq!(workers("[server]\nworkers = 3\n").ok(), Some(Some(3)));
    assert_eq!(workers("[server]\nworkers = \"auto\"\n").ok(), Some(None));
    assert_eq!(workers("").ok(), Some(None));
    for bad in ["workers = 0", "workers = \"many\"", "workers = 2000"] {
        let e = workers(&format!("[server]\n{bad}\n")).expect_err(bad);
        assert!(
            e.to_string().starts_with("h.toml:2:11: server.workers: "),
            "{bad}: {e}"
        );
    }
}

#[test]
fn diagnostics_serialise_for_the_api() {
    let e = parse(Path::new("h.toml"), "[server]\nlisen = 1\n").expect_err("invalid");
    let v = serde_json::to_value(&e).unwrap_or_default();
    assert_eq!(v[0]["path"], "h.toml");
    assert_eq!(v[0]["line"], 2);
    assert_eq!(v[0]["col"], 1);
    assert_eq!(v[0]["field"], "server.lisen");
    assert!(
        v[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("listen"))
    );
    let err: &dyn std::error::Error = &e;
    assert!(
        err.to_string()
            .starts_with("h.toml:2:1: server.lisen: unknown key")
    );
}

#[test]
fn the_example_hal0_toml_declares_the_four_builtin_slots() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("hal0.example.toml");
    let s = load(&example).unwrap_or_else(|e| panic!("{e}"));
    for (name, role, provider) in [
        ("primary", Role::Chat, ProviderKind::LlamaCpp),
        ("embed", Role::Embeddings, ProviderKind::LlamaCpp),
        ("stt", Role::SpeechToText, ProviderKind::Moonshine),
        ("tts", Role::TextToSpeech, ProviderKind::Kokoro),
    ] {
        let spec = &s.slots[name];
        let builtin = SlotName::parse(name).ok().and_then(|n| n.builtin_role());
        assert_eq!(spec.provider, provider, "{name}");
        assert_eq!(spec.effective_role(builtin), role, "{name}");
    }
    assert_eq!(s.slots.len(), 4, "custom slots are commented out");
    assert!(s.provider_override(ProviderKind::LlamaCpp).is_some());
}

#[test]
fn the_commented_out_slots_of_the_example_validate_when_uncommented() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("hal0.example.toml");
    let text = std::fs::read_to_string(&example).unwrap_or_default();
    let at = text
        .find("# --- Custom slots")
        .unwrap_or_else(|| panic!("the example has no custom-slot section"));
    let (head, custom) = text.split_at(at);
    // Uncomment TOML lines (`# [table]`, `# key = value`), keep prose comments.
    let uncommented: Vec<&str> = custom
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest)
                if rest.starts_with('[')
                    || rest.split_once(" = ").is_some_and(|(k, _)| {
                        k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                    }) =>
            {
                rest
            }
            _ => l,
        })
        .collect();
    let text = format!("{head}{}\n", uncommented.join("\n"));
    let s = parse(&example, &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(s.slots["fast"].aliases, ["autocomplete"]);
    assert_eq!(
        s.slots["openrouter"].provider,
        ProviderKind::OpenAiCompatible
    );
    assert_eq!(s.slots.len(), 6);
}
