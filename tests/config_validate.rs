//! Every config rule, each with the exact line:column it reports and the key parts of its
//! message. Inline TOML keeps each case next to what it must produce.

use std::path::Path;

use hal0::config::{Diagnostic, parse};

/// One expected problem: line, column, field, and fragments the message must contain.
type Want = (usize, usize, &'static str, &'static [&'static str]);

fn problems(text: &str) -> Vec<Diagnostic> {
    match parse(Path::new("hal0.toml"), text) {
        Ok(state) => panic!("expected errors, parsed {state:#?}"),
        Err(e) => e.0,
    }
}

fn check(case: &str, text: &str, want: &[Want]) {
    let got = problems(text);
    let shown: Vec<String> = got.iter().map(ToString::to_string).collect();
    assert_eq!(
        got.len(),
        want.len(),
        "{case}: wrong number of problems:\n{}",
        shown.join("\n")
    );
    for (d, (line, col, field, parts)) in got.iter().zip(want) {
        assert_eq!(
            (d.line, d.col, d.field.as_str()),
            (Some(*line), Some(*col), *field),
            "{case}: {d}"
        );
        for p in *parts {
            assert!(d.message.contains(p), "{case}: {d:?} lacks {p:?}");
        }
        assert!(
            d.to_string()
                .starts_with(&format!("hal0.toml:{line}:{col}: ")),
            "{case}: {d}"
        );
    }
}

fn run(cases: &[(&str, &str, &[Want])]) {
    for (case, text, want) in cases {
        check(case, text, want);
    }
}

#[test]
fn toml_syntax_errors_have_positions() {
    run(&[
        (
            "unclosed table header",
            "[server\nlisten = \"127.0.0.1:8080\"\n",
            &[(1, 8, "", &["TOML syntax error", "unclosed table"])],
        ),
        (
            "duplicate key",
            "[server]\nlisten = \"127.0.0.1:1\"\nlisten = \"127.0.0.1:2\"\n",
            &[(3, 1, "", &["duplicate key listen", "only once"])],
        ),
        (
            "value missing",
            "[slots.a]\nprovider =\n",
            &[(2, 11, "", &["TOML syntax error"])],
        ),
    ]);
}

#[test]
fn slot_names_must_match_the_pattern() {
    run(&[
        (
            "upper case",
            "[slots.Fast]\nprovider = \"flm\"\nmodel = \"flm:a\"\n",
            &[(
                1,
                8,
                "slots.Fast",
                &["must start with a lowercase letter", "^[a-z][a-z0-9_-]*$"],
            )],
        ),
        (
            "leading digit",
            "[slots.9lives]\nprovider = \"flm\"\nmodel = \"flm:a\"\n",
            &[(
                1,
                8,
                "slots.9lives",
                &["\"9lives\"", "must start with a lowercase letter"],
            )],
        ),
        (
            "dot in a quoted name",
            "[slots.\"a.b\"]\nprovider = \"flm\"\nmodel = \"flm:a\"\n",
            &[(1, 8, "slots.\"a.b\"", &["contains '.'"])],
        ),
        (
            "a badly named slot is still checked",
            "[slots.My-Slot]\nprovider = \"llama.cpp\"\npriority = 500\n",
            &[
                (
                    1,
                    8,
                    "slots.My-Slot",
                    &["must start with a lowercase letter"],
                ),
                (1, 8, "slots.My-Slot", &["missing required key \"model\""]),
                (3, 12, "slots.My-Slot.priority", &["must be from 0 to 100"]),
            ],
        ),
        (
            "a badly named slot without a provider",
            "[slots.My-Slot]\nmodel = \"flm:a\"\n",
            &[
                (
                    1,
                    8,
                    "slots.My-Slot",
                    &["must start with a lowercase letter"],
                ),
                (
                    1,
                    8,
                    "slots.My-Slot",
                    &["missing required key \"provider\""],
                ),
            ],
        ),
    ]);
}

#[test]
fn builtin_slots_keep_their_role() {
    run(&[
        (
            "embed with a provider that cannot embed",
            "[slots.embed]\nprovider = \"kokoro\"\nmodel = \"kokoro-82m\"\n",
            &[(
                2,
                12,
                "slots.embed.provider",
                &[
                    "built-in embeddings slot",
                    "\"kokoro\" cannot serve embeddings",
                    "llama.cpp, openai-compatible",
                ],
            )],
        ),
        (
            "stt with llama.cpp",
            "[slots.stt]\nprovider = \"llama.cpp\"\nmodel = \"/m.gguf\"\n",
            &[(
                2,
                12,
                "slots.stt.provider",
                &["cannot serve speech-to-text", "moonshine"],
            )],
        ),
        (
            "primary asked to embed",
            "[slots.primary]\nprovider = \"llama.cpp\"\nmodel = \"/m.gguf\"\nrole = \"embeddings\"\n",
            &[(
                4,
                8,
                "slots.primary.role",
                &["built-in chat slot", "always serves chat", "\"chat\""],
            )],
        ),
    ]);
}

#[test]
fn providers_and_roles_must_exist_and_fit() {
    run(&[
        (
            "unknown provider with a near miss",
            "[slots.a]\nprovider = \"llama\"\nmodel = \"/m.gguf\"\n",
            &[(
                2,
                12,
                "slots.a.provider",
                &[
                    "unknown provider \"llama\"",
                    "did you mean \"llama.cpp\"?",
                    "flm",
                ],
            )],
        ),
        (
            "unknown provider without a near miss",
            "[slots.a]\nprovider = \"vllm\"\nmodel = \"m\"\n",
            &[(
                2,
                12,
                "slots.a.provider",
                &["unknown provider \"vllm\"", "expected one of"],
            )],
        ),
        (
            "role the provider cannot serve",
            "[slots.a]\nprovider = \"flm\"\nmodel = \"flm:x\"\nrole = \"embeddings\"\n",
            &[(
                4,
                8,
                "slots.a.role",
                &["\"flm\" cannot serve embeddings", "it serves: chat"],
            )],
        ),
        (
            "unknown role",
            "[slots.a]\nprovider = \"llama.cpp\"\nmodel = \"/m.gguf\"\nrole = \"embedding\"\n",
            &[(
                4,
                8,
                "slots.a.role",
                &["unknown role", "did you mean \"embeddings\"?"],
            )],
        ),
        (
            "unknown device",
            "[slots.a]\nprovider = \"llama.cpp\"\nmodel = \"/m.gguf\"\ndevice = \"gpu\"\n",
            &[(
                4,
                10,
                "slots.a.device",
                &["unknown device \"gpu\"", "cpu, igpu, npu"],
            )],
        ),
        (
            "missing provider",
            "[slots.a]\nmodel = \"/m.gguf\"\n",
            &[(1, 8, "slots.a", &["missing required key \"provider\""])],
        ),
    ]);
}

#[test]
fn unknown_keys_are_errors_everywhere() {
    run(&[
        (
            "top level",
            "[slot.a]\nprovider = \"flm\"\n",
            &[(
                1,
                2,
                "slot",
                &["unknown key \"slot\"", "did you mean \"slots\"?"],
            )],
        ),
        (
            "server",
            "[server]\nlisen = \"127.0.0.1:8080\"\n",
            &[(
                2,
                1,
                "server.lisen",
                &["unknown key \"lisen\"", "did you mean \"listen\"?"],
            )],
        ),
        (
            "provider override",
            "[providers.\"llama.cpp\"]\ncomand = [\"x\"]\n",
            &[(
                2,
                1,
                "providers.\"llama.cpp\".comand",
                &["did you mean \"command\"?"],
            )],
        ),
        (
            "slot",
            "[slots.a]\nprovider = \"flm\"\nmodel = \"flm:x\"\nidle_timout = \"1m\"\n",
            &[(
                4,
                1,
                "slots.a.idle_timout",
                &["unknown key", "did you mean \"idle_timeout\"?"],
            )],
        ),
        (
            "slot, nothing close",
            "[slots.a]\nprovider = \"flm\"\nmodel = \"flm:x\"\ncolour = \"red\"\n",
            &[(
                4,
                1,
                "slots.a.colour",
                &["unknown key \"colour\"", "allowed here: provider"],
            )],
        ),
    ]);
    let d = &problems("[slots.a]\nprovider = \"flm\"\nmodel = \"flm:x\"\ncolour = \"red\"\n")[0];
    assert!(!d.message.contains("did you mean"), "{d}");
}

#[test]
fn values_must_have_the_right_type() {
    run(&[
        (
            "listen as a number",
            "[server]\nlisten = 8080\n",
            &[(
                2,
                10,
                "server.listen",
                &["expected a string, found an integer"],
            )],
        ),
        (
            "server not a table",
            "server = \"x\"\n",
            &[(1, 10, "server", &["expected a table, found a string"])],
        ),
        (
            "bool as a string",
            "[slots.a]\nprovider = \"flm\"\nmodel = \"flm:x\"\nautoload = \"yes\"\n",
            &[(
                4,
                12,
                "slots.a.autoload",
                &["expected a boolean", "found a string"],
            )],
        ),
        (
            "aliases not an array",
            "[slots.a]\nprovider = \"flm\"\nmodel = \"flm:x\"\naliases = \"x\"\n",
            &[(
                4,
                11,
                "slots.a.aliases",
                &["expected an array of strings, found a string"],
            )],
        ),
        (
            "alias not a string",
            "[slots.a]\nprovider = \"flm\"\nmodel = \"flm:x\"\naliases = [\"x\", 2]\n",
            &[(
                4,
                17,
                "slots.a.aliases[1]",
                &["expected a string, found an integer"],
            )],
        ),
        (
            "env not a table",
            "[slots.a]\nprovider = \"flm\"\nmodel = \"flm:x\"\nenv = [\"A=1\"]\n",
            &[(4, 7, "slots.a.env", &["expected a table, found an array"])],
        ),
        (
            "env value not a string",
            "[slots.a]\nprovider = \"flm\"\nmodel = \"flm:x\"\nenv = { A = 1 }\n",
            &[(
                4,
                13,
                "slots.a.env.A",
                &["expected a string, found an integer"],
            )],
        ),
        (
            "provider not a string",
            "[slots.a]\nprovider = 3\nmodel = \"m\"\n",
            &[(
                2,
                12,
                "slots.a.provider",
                &["expected a string, found an integer"],
            )],
        ),
        (
            "slot not a table",
            "[slots]\na = \"flm\"\n",
            &[(2, 5, "slots.a", &["expected a table, found a string"])],
        ),
    ]);
}

#[test]
fn durations_sizes_and_priorities_are_checked() {
    run(&[
        (
            "bad duration unit",
            "[slots.a]\nprovider = \"flm\"\nmodel = \"flm:x\"\nidle_timeout = \"10x\"\n",
            &[(
                4,
                16,
                "slots.a.idle_timeout",
                &["\"10x\" is not a duration", "unknown unit \"x\"", "1h30m"],
            )],
        ),
        (
            "duration without a unit",
            "[server]\nload_timeout = \"300\"\n",
            &[(2, 16, "server.load_timeout", &["missing unit"])],
        ),
        (
            "duration as a number",
            "[server]\nstop_grace = 10\n",
            &[(
                2,
                14,
                "server.stop_grace",
                &["expected a string, found an integer"],
            )],
        ),
        (
            "bad memory size",
            "[server]\nmemory_budget = \"96 gigs\"\n",
            &[(
                2,
                17,
                "server.memory_budget",
                &["not a memory size", "unknown unit", "96GiB"],
            )],
        ),
        (
            "slot memory not a size",
            "[slots.a]\nprovider = \"flm\"\nmodel = \"flm:x\"\nmemory = true\n",
            &[(
                4,
                10,
                "slots.a.memory",
                &["expected a memory size", "found a boolean"],
            )],
        ),
        (
            "priority above 100",
            "[slots.a]\nprovider = \"flm\"\nmodel = \"flm:x\"\npriority = 101\n",
            &[(
                4,
                12,
                "slots.a.priority",
                &["must be from 0 to 100, found 101"],
            )],
        ),
        (
            "negative priority",
            "[slots.a]\nprovider = \"flm\"\nmodel = \"flm:x\"\npriority = -1\n",
            &[(
                4,
                12,
                "slots.a.priority",
                &["must be from 0 to 100, found -1"],
            )],
        ),
    ]);
}

#[test]
fn ports_fit_the_range() {
    run(&[
        (
            "more process slots than ports",
            "[server]\nport_range = [8081, 8082]\n\
             [slots.a]\nprovider = \"flm\"\nmodel = \"flm:a\"\n\
             [slots.b]\nprovider = \"flm\"\nmodel = \"flm:b\"\n\
             [slots.up]\nprovider = \"openai-compatible\"\nupstream = \"https://x.example/v1\"\n\
             [slots.c]\nprovider = \"flm\"\nmodel = \"flm:c\"\n",
            &[(
                12,
                8,
                "slots.c",
                &[
                    "slot number 3 that runs a process",
                    "[8081, 8082] holds only 2 port(s)",
                ],
            )],
        ),
        (
            "reversed range",
            "[server]\nport_range = [8099, 8081]\n",
            &[(2, 14, "server.port_range", &["is reversed", "[8081, 8099]"])],
        ),
        (
            "range of one value",
            "[server]\nport_range = [8081]\n",
            &[(
                2,
                14,
                "server.port_range",
                &["expected two ports [low, high]"],
            )],
        ),
        (
            "port out of u16",
            "[server]\nport_range = [8081, 70000]\n",
            &[(
                2,
                21,
                "server.port_range[1]",
                &["must be from 1 to 65535, found 70000"],
            )],
        ),
        (
            "pinned port outside the range",
            "[slots.a]\nprovider = \"flm\"\nmodel = \"flm:x\"\nport = 9000\n",
            &[(
                4,
                8,
                "slots.a.port",
                &["port 9000 is outside server.port_range [8081, 8099]"],
            )],
        ),
        (
            "port pinned twice",
            "[slots.a]\nprovider = \"flm\"\nmodel = \"flm:a\"\nport = 8085\n\
             [slots.b]\nprovider = \"flm\"\nmodel = \"flm:b\"\nport = 8085\n",
            &[(
                8,
                8,
                "slots.b.port",
                &["port 8085 is already pinned by slot \"a\""],
            )],
        ),
    ]);
}

#[test]
fn required_and_misplaced_keys() {
    run(&[
        (
            "model missing",
            "[slots.a]\nprovider = \"llama.cpp\"\n",
            &[(
                1,
                8,
                "slots.a",
                &[
                    "missing required key \"model\"",
                    "\"llama.cpp\" needs a model",
                ],
            )],
        ),
        (
            "upstream missing",
            "[slots.up]\nprovider = \"openai-compatible\"\nmodels = [\"gpt-4o\"]\n",
            &[(
                1,
                8,
                "slots.up",
                &["missing required key \"upstream\"", "https://"],
            )],
        ),
        (
            "upstream not http",
            "[slots.up]\nprovider = \"openai-compatible\"\nupstream = \"ftp://x.example\"\n",
            &[(
                3,
                12,
                "slots.up.upstream",
                &["not an http:// or https:// URL"],
            )],
        ),
        (
            "upstream without a host",
            "[slots.up]\nprovider = \"openai-compatible\"\nupstream = \"https:///v1\"\n",
            &[(
                3,
                12,
                "slots.up.upstream",
                &["not an http:// or https:// URL"],
            )],
        ),
        (
            "upstream fields on a local slot",
            "[slots.a]\nprovider = \"llama.cpp\"\nmodel = \"/m.gguf\"\n\
             upstream = \"https://x.example\"\napi_key_env = \"K\"\nauth = \"bearer\"\nmodels = [\"m\"]\n",
            &[
                (
                    4,
                    1,
                    "slots.a.upstream",
                    &[
                        "only applies to provider \"openai-compatible\"",
                        "\"llama.cpp\"",
                    ],
                ),
                (
                    5,
                    1,
                    "slots.a.api_key_env",
                    &["only applies to provider \"openai-compatible\""],
                ),
                (
                    6,
                    1,
                    "slots.a.auth",
                    &["only applies to provider \"openai-compatible\""],
                ),
                (
                    7,
                    1,
                    "slots.a.models",
                    &["only applies to provider \"openai-compatible\""],
                ),
            ],
        ),
        (
            "process fields on an upstream",
            "[slots.up]\nprovider = \"openai-compatible\"\nupstream = \"https://x.example\"\n\
             port = 8085\nargs = [\"-v\"]\n",
            &[
                (
                    4,
                    1,
                    "slots.up.port",
                    &["only applies to slots that run a process"],
                ),
                (
                    5,
                    1,
                    "slots.up.args",
                    &["only applies to slots that run a process"],
                ),
            ],
        ),
        (
            "api key pasted instead of a variable name",
            "[slots.up]\nprovider = \"openai-compatible\"\nupstream = \"https://x.example\"\n\
             api_key_env = \"sk-or-v1-abc\"\n",
            &[(
                4,
                15,
                "slots.up.api_key_env",
                &["name of an environment variable", "not the secret itself"],
            )],
        ),
        (
            "unknown auth",
            "[slots.up]\nprovider = \"openai-compatible\"\nupstream = \"https://x.example\"\nauth = \"x-api-keys\"\n",
            &[(4, 8, "slots.up.auth", &["did you mean \"x-api-key\"?"])],
        ),
    ]);
    // The secret itself is never echoed back.
    let d = &problems(
        "[slots.up]\nprovider = \"openai-compatible\"\nupstream = \"https://x.example\"\napi_key_env = \"sk-or-v1-abc\"\n",
    )[0];
    assert!(!d.to_string().contains("sk-or-v1-abc"), "{d}");
}

#[test]
fn model_names_route_to_one_slot() {
    run(&[
        (
            "alias claimed twice",
            "[slots.a]\nprovider = \"flm\"\nmodel = \"flm:a\"\naliases = [\"auto\"]\n\
             [slots.b]\nprovider = \"flm\"\nmodel = \"flm:b\"\naliases = [\"x\", \"auto\"]\n",
            &[(
                8,
                17,
                "slots.b.aliases[1]",
                &[
                    "alias \"auto\" is already claimed by slot \"a\" (as its alias)",
                    "ambiguous",
                ],
            )],
        ),
        (
            "alias equal to another slot's name",
            "[slots.b]\nprovider = \"flm\"\nmodel = \"flm:b\"\naliases = [\"zeta\"]\n\
             [slots.zeta]\nprovider = \"flm\"\nmodel = \"flm:z\"\n",
            &[(
                4,
                12,
                "slots.b.aliases[0]",
                &["claimed by slot \"zeta\" (as its slot name)"],
            )],
        ),
        (
            "upstream model equal to an alias",
            "[slots.a]\nprovider = \"flm\"\nmodel = \"flm:a\"\naliases = [\"gpt-4o\"]\n\
             [slots.up]\nprovider = \"openai-compatible\"\nupstream = \"https://x.example\"\nmodels = [\"gpt-4o\"]\n",
            &[(
                8,
                11,
                "slots.up.models[0]",
                &["upstream model \"gpt-4o\"", "slot \"a\" (as its alias)"],
            )],
        ),
    ]);
    // Two slots may serve the same model file: routing picks by the endpoint's role.
    assert!(
        parse(
            Path::new("hal0.toml"),
            "[slots.a]\nprovider = \"llama.cpp\"\nmodel = \"file:/m/q.gguf\"\n\
             [slots.b]\nprovider = \"llama.cpp\"\nmodel = \"hf:o/r/q.gguf\"\nrole = \"embeddings\"\n"
        )
        .is_ok()
    );
    // A slot may repeat its own names.
    assert!(
        parse(
            Path::new("hal0.toml"),
            "[slots.a]\nprovider = \"flm\"\nmodel = \"flm:a\"\naliases = [\"a\"]\n"
        )
        .is_ok()
    );
}

#[test]
fn server_and_provider_overrides_are_checked() {
    run(&[
        (
            "listen without an IP",
            "[server]\nlisten = \"localhost:8080\"\n",
            &[(
                2,
                10,
                "server.listen",
                &[
                    "\"localhost:8080\" is not a socket address",
                    "127.0.0.1:8080",
                ],
            )],
        ),
        (
            "listen without a port",
            "[server]\nlisten = \"127.0.0.1\"\n",
            &[(2, 10, "server.listen", &["not a socket address"])],
        ),
        (
            "unknown provider override",
            "[providers.\"lama.cpp\"]\ncommand = [\"x\"]\n",
            &[(
                1,
                12,
                "providers.\"lama.cpp\"",
                &[
                    "unknown provider \"lama.cpp\"",
                    "did you mean \"llama.cpp\"?",
                ],
            )],
        ),
        (
            "override for an upstream",
            "[providers.\"openai-compatible\"]\ncommand = [\"x\"]\n",
            &[(1, 12, "providers.openai-compatible", &["runs no process"])],
        ),
        (
            "empty command",
            "[providers.\"llama.cpp\"]\ncommand = []\n",
            &[(
                2,
                11,
                "providers.\"llama.cpp\".command",
                &["is empty", "the program to run"],
            )],
        ),
        (
            "empty program",
            "[providers.flm]\ncommand = [\"\"]\n",
            &[(2, 12, "providers.flm.command[0]", &["must not be empty"])],
        ),
        (
            "api_keys holding a key",
            "[server]\napi_keys = [\"HAL0_API_KEY\", \"sk-live-123\"]\n",
            &[(
                2,
                29,
                "server.api_keys[1]",
                &["name of an environment variable"],
            )],
        ),
        (
            "slot memory above the budget",
            "[server]\nmemory_budget = \"8GiB\"\n[slots.a]\nprovider = \"flm\"\nmodel = \"flm:a\"\nmemory = \"16GiB\"\n",
            &[(
                6,
                10,
                "slots.a.memory",
                &["16GiB is more than server.memory_budget (8GiB)"],
            )],
        ),
        (
            "zero load timeout",
            "[server]\nload_timeout = \"0s\"\n",
            &[(2, 16, "server.load_timeout", &["must be longer than 0s"])],
        ),
        (
            "listen port inside the slot range",
            "[server]\nlisten = \"127.0.0.1:8085\"\n",
            &[(
                2,
                10,
                "server.listen",
                &["port 8085 lies inside server.port_range [8081, 8099]"],
            )],
        ),
        (
            "slot range widened over the default listen port",
            "[server]\nport_range = [8000, 8100]\n",
            &[(
                2,
                14,
                "server.port_range",
                &["includes port 8080, where hal0 itself listens"],
            )],
        ),
    ]);
}

#[test]
fn every_problem_is_reported_in_file_order() {
    let text = "\
[server]
listen = \"nowhere\"
port_range = [8081, 8099]

[slots.primary]
provider = \"kokoro\"
model = \"kokoro-82m\"
idle_timeout = \"soon\"

[slots.fast]
provder = \"llama.cpp\"
";
    let got = problems(text);
    let lines: Vec<(Option<usize>, &str)> =
        got.iter().map(|d| (d.line, d.field.as_str())).collect();
    assert_eq!(
        lines,
        [
            (Some(2), "server.listen"),
            (Some(6), "slots.primary.provider"),
            (Some(8), "slots.primary.idle_timeout"),
            (Some(10), "slots.fast"),
            (Some(11), "slots.fast.provder"),
        ]
    );
}

#[test]
fn turn_and_answer_check_settings_are_checked() {
    let slot = "[slots.primary]\nprovider = \"llama.cpp\"\nmodel = \"/m.gguf\"\n";
    let cases: Vec<(&str, String, Vec<Want>)> = vec![
        (
            "min_residency needs a unit",
            format!("{slot}min_residency = \"10\"\n"),
            vec![(4, 17, "slots.primary.min_residency", &["missing unit"])],
        ),
        (
            "max_wait needs a unit",
            "[server]\nmax_wait = 60\n".to_string(),
            vec![(2, 12, "server.max_wait", &["expected a string"])],
        ),
        (
            "probe with a prompt but no expect",
            format!("{slot}probe = {{ prompt = \"Say hi.\" }}\n"),
            vec![(
                4,
                9,
                "slots.primary.probe",
                &["prompt is set without expect", "probe = {}"],
            )],
        ),
        (
            "probe with an unknown key",
            format!("{slot}probe = {{ prompt = \"x\", expect = \"y\", answer = \"z\" }}\n"),
            vec![(4, 39, "slots.primary.probe.answer", &["unknown key \"answer\""])],
        ),
        (
            "probe on an embeddings slot",
            "[slots.embed]\nprovider = \"llama.cpp\"\nmodel = \"/m.gguf\"\nprobe = {}\n"
                .to_string(),
            vec![(4, 9, "slots.embed.probe", &["only applies to chat slots"])],
        ),
        (
            "min_residency and probe on an upstream",
            "[slots.cloud]\nprovider = \"openai-compatible\"\nupstream = \"https://x.invalid/v1\"\nmin_residency = \"1s\"\nprobe = {}\n"
                .to_string(),
            vec![
                (4, 1, "slots.cloud.min_residency", &["only applies to slots that run a process"]),
                (5, 1, "slots.cloud.probe", &["only applies to slots that run a process"]),
            ],
        ),
    ];
    for (case, text, want) in &cases {
        check(case, text, want);
    }
}

#[test]
fn sleep_after_is_for_llama_cpp_and_at_least_a_second() {
    let cases: Vec<(&str, String, Vec<Want>)> = vec![
        (
            "sleep_after on a provider that cannot sleep",
            "[slots.tts]\nprovider = \"kokoro\"\nmodel = \"kokoro-82m\"\nsleep_after = \"5m\"\n"
                .to_string(),
            vec![(4, 15, "slots.tts.sleep_after", &["cannot sleep", "only llama.cpp"])],
        ),
        (
            "sleep_after under a second",
            "[slots.primary]\nprovider = \"llama.cpp\"\nmodel = \"/m.gguf\"\nsleep_after = \"500ms\"\n"
                .to_string(),
            vec![(4, 15, "slots.primary.sleep_after", &["at least 1s"])],
        ),
    ];
    for (case, text, want) in &cases {
        check(case, text, want);
    }
}
