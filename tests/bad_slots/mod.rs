//! Bad slots, shared by the tests of every place that checks a slot, so that one rule is
//! proven to be one rule: hal0.toml (`config::parse`, which the file source, the API and the
//! CLI use), the typed rules (`hal0::rules`), a Kubernetes Slot in the controller and the
//! in-cluster gateway (`validate`), and, where the schema can express it, the API server's
//! admission of the generated CRD (tests/kube_cluster.rs applies each one with kubectl).

// Each test binary that includes this reads only some of the fields.
#![allow(dead_code)]

/// One bad slot and where it must be refused.
pub struct Bad {
    pub what: &'static str,
    /// The slot's name (`[slots.<name>]`, the Slot's `metadata.name`).
    pub name: &'static str,
    /// The spec as JSON (kubectl reads it as YAML; the tests write it as TOML for hal0.toml).
    pub spec: &'static str,
    /// The field every refusal names (`memory`, `aliases[0]`); empty when the name is wrong.
    pub field: &'static str,
    /// hal0.toml refuses it too (false: a rule only a cluster has).
    pub file: bool,
    /// The spec reads into a `SlotSpec`, so the typed rules refuse it (false: reading it fails).
    pub typed: bool,
    /// What the API server's refusal says, when the CRD schema can express the rule; `None`:
    /// the API server admits it and the controller marks the Slot Degraded (InvalidSpec).
    pub crd: Option<&'static str>,
}

const fn bad(
    what: &'static str,
    name: &'static str,
    spec: &'static str,
    field: &'static str,
    crd: Option<&'static str>,
) -> Bad {
    Bad {
        what,
        name,
        spec,
        field,
        file: true,
        typed: true,
        crd,
    }
}

/// Read as `SlotSpec` fails: a value that is not of its type.
const fn unreadable(
    what: &'static str,
    name: &'static str,
    spec: &'static str,
    field: &'static str,
    crd: &'static str,
) -> Bad {
    Bad {
        typed: false,
        ..bad(what, name, spec, field, Some(crd))
    }
}

pub const BAD: &[Bad] = &[
    unreadable(
        "memory in words",
        "b-mem",
        r#"{"provider": "llama.cpp", "model": "hf:o/r/m.gguf", "memory": "8 gigs"}"#,
        "memory",
        "spec.memory",
    ),
    unreadable(
        "memory in milli",
        "b-milli",
        r#"{"provider": "llama.cpp", "model": "hf:o/r/m.gguf", "memory": "512m"}"#,
        "memory",
        "spec.memory",
    ),
    unreadable(
        "an over-long duration",
        "b-long",
        r#"{"provider": "llama.cpp", "model": "hf:o/r/m.gguf", "idle_timeout": "99999999999999999999s"}"#,
        "idle_timeout",
        "spec.idle_timeout",
    ),
    unreadable(
        "a duration in words",
        "b-words",
        r#"{"provider": "llama.cpp", "model": "hf:o/r/m.gguf", "idle_timeout": "ten minutes"}"#,
        "idle_timeout",
        "spec.idle_timeout",
    ),
    unreadable(
        "an unknown provider",
        "b-prov",
        r#"{"provider": "vllm", "model": "x"}"#,
        "provider",
        "spec.provider",
    ),
    bad(
        "no model",
        "b-nomodel",
        r#"{"provider": "llama.cpp"}"#,
        "model",
        Some("spec.model is required"),
    ),
    bad(
        "no upstream",
        "b-noup",
        r#"{"provider": "openai-compatible"}"#,
        "upstream",
        Some("spec.upstream is required"),
    ),
    bad(
        "upstream on llama.cpp",
        "b-up",
        r#"{"provider": "llama.cpp", "model": "hf:o/r/m.gguf", "upstream": "http://x/v1"}"#,
        "upstream",
        Some("spec.upstream only applies"),
    ),
    bad(
        "args on an upstream",
        "b-args",
        r#"{"provider": "openai-compatible", "upstream": "http://x/v1", "args": ["-v"]}"#,
        "args",
        Some("spec.args only applies"),
    ),
    Bad {
        file: false,
        ..bad(
            "a port",
            "b-port",
            r#"{"provider": "llama.cpp", "model": "hf:o/r/m.gguf", "port": 8090}"#,
            "port",
            Some("spec.port is not used in a cluster"),
        )
    },
    bad(
        "a role the provider cannot serve",
        "b-role",
        r#"{"provider": "kokoro", "model": "kokoro-82m", "role": "chat"}"#,
        "role",
        Some("spec.role"),
    ),
    bad(
        "primary that cannot chat",
        "primary",
        r#"{"provider": "kokoro", "model": "kokoro-82m"}"#,
        "provider",
        Some("built-in chat slot"),
    ),
    bad(
        "embed with another role",
        "embed",
        r#"{"provider": "llama.cpp", "model": "hf:o/r/m.gguf", "role": "chat"}"#,
        "role",
        Some("built-in embeddings slot"),
    ),
    bad(
        "a name with a leading digit",
        "9lives",
        r#"{"provider": "llama.cpp", "model": "hf:o/r/m.gguf"}"#,
        "",
        Some("metadata.name must be a slot name"),
    ),
    bad(
        "a name longer than 50",
        "a-very-long-slot-name-that-is-longer-than-fifty-chars",
        r#"{"provider": "llama.cpp", "model": "hf:o/r/m.gguf"}"#,
        "",
        Some("longer than 50"),
    ),
    bad(
        "priority above 100",
        "b-prio",
        r#"{"provider": "llama.cpp", "model": "hf:o/r/m.gguf", "priority": 101}"#,
        "priority",
        Some("spec.priority"),
    ),
    bad(
        "sleep_after on a provider that cannot sleep",
        "b-sleep",
        r#"{"provider": "flm", "model": "flm:llama3.2:1b", "sleep_after": "5m"}"#,
        "sleep_after",
        Some("spec.sleep_after"),
    ),
    bad(
        "a secret as api_key_env",
        "b-secret",
        r#"{"provider": "openai-compatible", "upstream": "https://x.example/v1", "api_key_env": "sk-or-v1-abc"}"#,
        "api_key_env",
        Some("spec.api_key_env"),
    ),
    bad(
        "a probe with a prompt and no expect",
        "b-probe",
        r#"{"provider": "llama.cpp", "model": "hf:o/r/m.gguf", "probe": {"prompt": "Say hi."}}"#,
        "probe",
        Some("spec.probe"),
    ),
    bad(
        "an empty model",
        "b-empty",
        r#"{"provider": "llama.cpp", "model": " "}"#,
        "model",
        None,
    ),
    bad(
        "an empty alias",
        "b-alias",
        r#"{"provider": "llama.cpp", "model": "hf:o/r/m.gguf", "aliases": ["ok", " "]}"#,
        "aliases[1]",
        None,
    ),
    bad(
        "an upstream that is not an http URL",
        "b-ftp",
        r#"{"provider": "openai-compatible", "upstream": "ftp://x.example/v1"}"#,
        "upstream",
        None,
    ),
    bad(
        "an upstream with credentials",
        "b-creds",
        r#"{"provider": "openai-compatible", "upstream": "https://me:hunter2@x.example/v1"}"#,
        "upstream",
        None,
    ),
    bad(
        "sleep_after under a second",
        "b-nap",
        r#"{"provider": "llama.cpp", "model": "hf:o/r/m.gguf", "sleep_after": "500ms"}"#,
        "sleep_after",
        None,
    ),
    bad(
        "a probe on an embeddings slot",
        "b-eprobe",
        r#"{"provider": "llama.cpp", "model": "hf:o/r/m.gguf", "role": "embeddings", "probe": {}}"#,
        "probe",
        None,
    ),
];
