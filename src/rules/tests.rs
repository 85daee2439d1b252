//! Table tests: one typed spec (or set of slots) per rule, with what it must report.

use super::*;
use crate::model::{AnswerProbe, ByteSize, HumanDuration, Role, UpstreamAuth};

fn llama() -> SlotSpec {
    SlotSpec::new(ProviderKind::LlamaCpp, Some("hf:o/r/m.gguf"))
}

fn upstream() -> SlotSpec {
    let mut s = SlotSpec::new(ProviderKind::OpenAiCompatible, None);
    s.upstream = Some("https://x.example/v1".into());
    s
}

/// (what, slot name, spec, where, a fragment of the message)
type Case = (&'static str, &'static str, SlotSpec, At, &'static str);

fn with(mut s: SlotSpec, f: impl FnOnce(&mut SlotSpec)) -> SlotSpec {
    f(&mut s);
    s
}

fn slot_cases() -> Vec<Case> {
    vec![
        ("bad name", "9lives", llama(), At::Name, "lowercase letter"),
        (
            "empty model",
            "a",
            with(llama(), |s| s.model = Some(" ".into())),
            At::Value("model"),
            "must not be empty",
        ),
        (
            "no model",
            "a",
            with(llama(), |s| s.model = None),
            At::Missing("model"),
            "missing required key \"model\"",
        ),
        (
            "no upstream",
            "a",
            with(upstream(), |s| s.upstream = None),
            At::Missing("upstream"),
            "missing required key \"upstream\"",
        ),
        (
            "empty alias",
            "a",
            with(llama(), |s| s.aliases = vec!["x".into(), "".into()]),
            At::Item("aliases", 1),
            "must not be empty",
        ),
        (
            "port 0",
            "a",
            with(llama(), |s| s.port = Some(0)),
            At::Value("port"),
            "from 1 to 65535",
        ),
        (
            "priority 101",
            "a",
            with(llama(), |s| s.priority = Some(101)),
            At::Value("priority"),
            "from 0 to 100",
        ),
        (
            "sleep under a second",
            "a",
            with(llama(), |s| {
                s.sleep_after = Some(HumanDuration::parse("500ms").expect("duration"))
            }),
            At::Value("sleep_after"),
            "at least 1s",
        ),
        (
            "sleep on flm",
            "a",
            with(SlotSpec::new(ProviderKind::Flm, Some("flm:x")), |s| {
                s.sleep_after = Some(HumanDuration::from_secs(60))
            }),
            At::Value("sleep_after"),
            "cannot sleep",
        ),
        (
            "one-sided probe",
            "a",
            with(llama(), |s| {
                s.probe = Some(AnswerProbe {
                    prompt: Some("hi".into()),
                    expect: None,
                })
            }),
            At::Value("probe"),
            "prompt is set without expect",
        ),
        (
            "empty probe expect",
            "a",
            with(llama(), |s| {
                s.probe = Some(AnswerProbe {
                    prompt: Some("hi".into()),
                    expect: Some("".into()),
                })
            }),
            At::Entry("probe", "expect"),
            "must not be empty",
        ),
        (
            "probe on an embeddings slot",
            "embed",
            with(llama(), |s| s.probe = Some(AnswerProbe::default())),
            At::Value("probe"),
            "only applies to chat slots",
        ),
        (
            "upstream not http",
            "a",
            with(upstream(), |s| s.upstream = Some("ftp://x".into())),
            At::Value("upstream"),
            "not an http:// or https:// URL",
        ),
        (
            "upstream with credentials",
            "a",
            with(upstream(), |s| {
                s.upstream = Some("https://u:pw@x/v1".into())
            }),
            At::Value("upstream"),
            "credentials",
        ),
        (
            "a secret as api_key_env",
            "a",
            with(upstream(), |s| s.api_key_env = Some("sk-or-v1-abc".into())),
            At::Value("api_key_env"),
            "not the secret itself",
        ),
        (
            "upstream field on llama.cpp",
            "a",
            with(llama(), |s| s.auth = Some(UpstreamAuth::Bearer)),
            At::Key("auth"),
            "only applies to provider \"openai-compatible\"",
        ),
        (
            "process field on an upstream",
            "a",
            with(upstream(), |s| s.memory = Some(ByteSize::gib(1))),
            At::Key("memory"),
            "only applies to slots that run a process",
        ),
        (
            "role the provider cannot serve",
            "a",
            with(
                SlotSpec::new(ProviderKind::Kokoro, Some("kokoro-82m")),
                |s| s.role = Some(Role::Chat),
            ),
            At::Value("role"),
            "cannot serve chat",
        ),
        (
            "built-in name with a provider that cannot serve it",
            "primary",
            SlotSpec::new(ProviderKind::Kokoro, Some("kokoro-82m")),
            At::Value("provider"),
            "built-in chat slot",
        ),
        (
            "built-in name with another role",
            "embed",
            with(llama(), |s| s.role = Some(Role::Chat)),
            At::Value("role"),
            "always serves embeddings",
        ),
    ]
}

#[test]
fn each_slot_rule_reports_its_slot_field_and_reason() {
    for (what, name, spec, at, says) in slot_cases() {
        let found = check_slot(name, &spec);
        assert!(
            found
                .iter()
                .any(|v| v.slot.as_deref() == Some(name) && v.at == at && v.message.contains(says)),
            "{what}: want {at:?} saying {says:?}, found {found:#?}"
        );
    }
}

#[test]
fn good_slots_break_no_rule() {
    let mut chat = llama();
    chat.probe = Some(AnswerProbe::default());
    chat.sleep_after = Some(HumanDuration::from_secs(60));
    chat.aliases = vec!["fast".into(), "primary".into()];
    let mut embed = llama();
    embed.role = Some(Role::Embeddings);
    let mut cloud = upstream();
    cloud.api_key_env = Some("OPENROUTER_API_KEY".into());
    cloud.models = vec!["gpt-4o".into()];
    for (name, spec) in [("primary", &chat), ("embed", &embed), ("cloud", &cloud)] {
        assert_eq!(check_slot(name, spec), vec![], "{name}");
    }
    let server = ServerSettings::default();
    let all = [("primary", &chat), ("embed", &embed), ("cloud", &cloud)];
    assert_eq!(check_all(&server, &all), vec![]);
}

#[test]
fn violations_name_the_file_path_and_the_spec_path() {
    let v = &check_slot("chat", &with(llama(), |s| s.port = Some(0)))[0];
    assert_eq!(
        v.to_string(),
        "slots.chat.port: must be from 1 to 65535, found 0"
    );
    assert_eq!(v.spec_path(), "spec.port");
    let v = &check_slot("chat", &with(llama(), |s| s.aliases = vec!["".into()]))[0];
    assert_eq!(v.spec_path(), "spec.aliases[0]");
    let v = &check_slot("Chat", &llama())[0];
    assert_eq!(v.spec_path(), "metadata.name");
}

#[test]
fn set_rules_report_the_later_slot() {
    let server = ServerSettings {
        port_range: [9000, 9001],
        memory_budget: Some(ByteSize::gib(4)),
        ..ServerSettings::default()
    };
    let a = with(llama(), |s| {
        s.port = Some(9000);
        s.aliases = vec!["quick".into()];
    });
    let b = with(llama(), |s| {
        s.port = Some(9000);
        s.aliases = vec!["quick".into(), "a".into()];
        s.memory = Some(ByteSize::gib(8));
    });
    let c = llama();
    let found = check_set(&server, &[("a", &a), ("b", &b), ("c", &c)]);
    let at: Vec<(Option<&str>, &At)> = found.iter().map(|v| (v.slot.as_deref(), &v.at)).collect();
    assert_eq!(
        at,
        vec![
            (Some("b"), &At::Value("memory")),
            (Some("b"), &At::Value("port")),
            (Some("c"), &At::Slot),
            (Some("b"), &At::Item("aliases", 0)),
            (Some("b"), &At::Item("aliases", 1)),
        ],
        "{found:#?}"
    );
    assert!(found[1].message.contains("already pinned by slot \"a\""));
    assert!(found[4].message.contains("slot \"a\" (as its slot name)"));
}

#[test]
fn server_rules_have_no_slot() {
    let reversed = ServerSettings {
        port_range: [9001, 9000],
        ..ServerSettings::default()
    };
    let v = check_set(&reversed, &[]);
    assert_eq!(v[0].at, At::Server("port_range"));
    assert_eq!(v[0].slot, None);
    let over_listen = ServerSettings {
        listen: "0.0.0.0:9000".into(),
        port_range: [8990, 9010],
        ..ServerSettings::default()
    };
    assert_eq!(check_set(&over_listen, &[])[0].at, At::Server("listen"));
    let over_default = ServerSettings {
        port_range: [8000, 8100],
        ..ServerSettings::default()
    };
    assert_eq!(
        check_set(&over_default, &[])[0].at,
        At::Server("port_range")
    );
}

#[test]
fn the_cluster_refuses_a_port_once() {
    let spec = with(llama(), |s| s.port = Some(0));
    let found = check_in_cluster("a", &spec);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].at, At::Key("port"));
    assert!(found[0].message.contains("not used in a cluster"));
}

#[test]
fn the_field_tables_match_the_slot_spec() {
    let schema = schemars::schema_for!(SlotSpec);
    let mut fields: Vec<String> = schema.as_value()["properties"]
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    fields.sort();
    let mut ours: Vec<String> = SLOT_FIELDS.iter().map(|f| f.to_string()).collect();
    ours.sort();
    assert_eq!(ours, fields);
    for f in COLLECTION_FIELDS
        .iter()
        .chain(&UPSTREAM_ONLY)
        .chain(&PROCESS_ONLY)
    {
        assert!(SLOT_FIELDS.contains(f), "{f}");
    }
    // A spec with every field set says so for each of them.
    let mut full = llama();
    full.role = Some(Role::Chat);
    full.idle_timeout = Some(HumanDuration::from_secs(1));
    full.device = Some(crate::model::Device::Cpu);
    full.args = vec!["-v".into()];
    full.env = [("A".to_string(), "b".to_string())].into();
    full.aliases = vec!["x".into()];
    full.port = Some(1);
    full.autoload = true;
    full.priority = Some(1);
    full.pinned = true;
    full.min_residency = Some(HumanDuration::from_secs(1));
    full.sleep_after = Some(HumanDuration::from_secs(1));
    full.probe = Some(AnswerProbe::default());
    full.memory = Some(ByteSize::gib(1));
    full.upstream = Some("https://x/v1".into());
    full.api_key_env = Some("K".into());
    full.auth = Some(UpstreamAuth::Bearer);
    full.models = vec!["m".into()];
    for f in SLOT_FIELDS {
        assert!(is_set(&full, f), "{f}");
    }
}
