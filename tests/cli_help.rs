//! The CLI teaches: help texts describe every argument of `slot add`, list the providers and
//! the model-ref forms, show no empty `[env: HAL0_URL=]`; shell completions are printed; and
//! every command says which config file it acts on (--config, $HAL0_CONFIG, ./hal0.toml, else
//! the XDG user config).

use std::path::Path;
use std::process::{Command, Output};

const HAL0: &str = env!("CARGO_BIN_EXE_hal0");

/// hal0 in `cwd` with `home` as HOME and none of the variables that choose a config.
fn hal0_in(cwd: &Path, home: &Path, args: &[&str]) -> Output {
    Command::new(HAL0)
        .args(args)
        .current_dir(cwd)
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("HAL0_CONFIG")
        .env_remove("HAL0_URL")
        .env_remove("HAL0_ADMIN_TOKEN")
        .env("HAL0_LOG", "off")
        .output()
        .expect("run hal0")
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn slot_add_help_describes_every_argument() {
    let tmp = tempfile::tempdir().unwrap();
    let o = hal0_in(tmp.path(), tmp.path(), &["slot", "add", "--help"]);
    assert!(o.status.success(), "{}", err(&o));
    let help = out(&o);
    for want in [
        "The slot's name: a lowercase letter",
        "primary (chat), embed (embeddings), stt (speech-to-text) and tts (text-to-speech)",
        "llama.cpp (chat, embeddings, rerank)",
        "openai-compatible (an external upstream",
        "[possible values: llama.cpp, flm, moonshine, kokoro, openai-compatible]",
        "file:/abs/path/model.gguf",
        "hf:org/repo/file.gguf",
        "--upstream",
        "--idle-timeout",
        "--device",
        "--arg <ARG>",
        "--env <NAME=VALUE>",
        "--alias <NAME>",
        "--set <KEY=VALUE>",
        "docs/slots.md",
    ] {
        assert!(help.contains(want), "{want:?} missing from:\n{help}");
    }
}

#[test]
fn no_help_screen_shows_an_empty_env_value() {
    let tmp = tempfile::tempdir().unwrap();
    for args in [
        &["--help"][..],
        &["slot", "--help"],
        &["slot", "list", "--help"],
        &["slot", "add", "--help"],
        &["slot", "edit", "--help"],
        &["model", "pull", "--help"],
        &["config", "validate", "--help"],
        &["serve", "--help"],
        &["service", "install", "--help"],
        &["completions", "--help"],
    ] {
        let o = hal0_in(tmp.path(), tmp.path(), args);
        assert!(o.status.success(), "{args:?}: {}", err(&o));
        let help = out(&o);
        assert!(
            !help.contains("=]"),
            "{args:?} shows an empty env value:\n{help}"
        );
    }
}

#[test]
fn completions_for_bash_zsh_and_fish() {
    let tmp = tempfile::tempdir().unwrap();
    for (shell, marker) in [
        ("bash", "complete -F _hal0"),
        ("zsh", "#compdef hal0"),
        ("fish", "complete -c hal0"),
    ] {
        let o = hal0_in(tmp.path(), tmp.path(), &["completions", shell]);
        assert!(o.status.success(), "{shell}: {}", err(&o));
        let script = out(&o);
        assert!(script.contains(marker), "{shell}: {marker:?} missing");
        assert!(
            script.contains("slot") && script.contains("llama.cpp"),
            "{shell}"
        );
    }
    // bash accepts the script it is given.
    let o = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source <({HAL0} completions bash) && complete -p hal0"
        ))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", err(&o));
    assert!(out(&o).contains("_hal0"), "{}", out(&o));
}

#[test]
fn without_flag_env_or_local_file_the_user_config_is_used_and_named() {
    let home = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let user = home.path().join(".config/hal0/hal0.toml");

    // Missing: the error names the file and how to make one.
    let o = hal0_in(cwd.path(), home.path(), &["config", "validate"]);
    assert_eq!(o.status.code(), Some(1));
    let e = err(&o);
    assert!(
        e.contains(&format!("no config file at {}", user.display())),
        "{e}"
    );
    assert!(e.contains("scripts/quickstart.sh creates it"), "{e}");
    let o = hal0_in(cwd.path(), home.path(), &["serve"]);
    assert!(!o.status.success());
    assert!(
        err(&o).contains(&format!("no config file at {}", user.display())),
        "{}",
        err(&o)
    );

    std::fs::create_dir_all(user.parent().unwrap()).unwrap();
    std::fs::write(
        &user,
        "[slots.primary]\nprovider = \"llama.cpp\"\nmodel = \"file:/m/a.gguf\"\n",
    )
    .unwrap();
    let o = hal0_in(cwd.path(), home.path(), &["config", "validate"]);
    assert!(o.status.success(), "{}", err(&o));
    let first = out(&o).lines().next().unwrap_or_default().to_string();
    assert_eq!(
        first,
        format!(
            "{} (the user config; no --config, $HAL0_CONFIG or ./hal0.toml): valid, 1 slot",
            user.display()
        )
    );
    let o = hal0_in(cwd.path(), home.path(), &["config", "show"]);
    assert!(out(&o).contains(&user.display().to_string()), "{}", out(&o));
    let o = hal0_in(cwd.path(), home.path(), &["model", "list"]);
    assert!(
        err(&o).contains(&format!(
            "(server.models_dir of {} (the user config",
            user.display()
        )),
        "{}",
        err(&o)
    );

    // XDG_CONFIG_HOME moves it.
    let xdg = tempfile::tempdir().unwrap();
    let o = Command::new(HAL0)
        .args(["config", "validate"])
        .current_dir(cwd.path())
        .env("HOME", home.path())
        .env("XDG_CONFIG_HOME", xdg.path())
        .env_remove("HAL0_CONFIG")
        .output()
        .unwrap();
    assert!(
        err(&o).contains(&xdg.path().join("hal0/hal0.toml").display().to_string()),
        "{}",
        err(&o)
    );

    // A hal0.toml in the current directory comes before the user config, and says so.
    std::fs::write(cwd.path().join("hal0.toml"), "").unwrap();
    let o = hal0_in(cwd.path(), home.path(), &["config", "validate"]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(
        out(&o).starts_with(&format!(
            "{} (./hal0.toml in the current directory): valid, no slots declared",
            cwd.path().join("hal0.toml").display()
        )),
        "{}",
        out(&o)
    );

    // $HAL0_CONFIG before both.
    let other = cwd.path().join("other.toml");
    std::fs::write(&other, "").unwrap();
    let o = Command::new(HAL0)
        .args(["config", "validate"])
        .current_dir(cwd.path())
        .env("HOME", home.path())
        .env("HAL0_CONFIG", &other)
        .output()
        .unwrap();
    assert!(
        out(&o).starts_with(&format!("{} (from $HAL0_CONFIG)", other.display())),
        "{}",
        out(&o)
    );
}
