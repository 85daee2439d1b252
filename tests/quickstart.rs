//! scripts/quickstart.sh, the README's first command, as a user runs it twice: the first run
//! creates the user config (~/.config/hal0/hal0.toml under a temporary HOME) with a chat slot
//! on the installed llama-server and says so; the user edits it; the second run keeps the
//! file byte for byte and says it did. Step 2 (cargo install) is replaced by the binary under
//! test (HAL0_QUICKSTART_BIN) and step 4 (serve) is skipped; tests/e2e_llama.rs serves.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The provider cache of the machine (not under the temporary HOME).
fn cache() -> PathBuf {
    std::env::var_os("HAL0_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/hal0-test")
        })
}

fn quickstart(home: &Path) -> Output {
    let out = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/quickstart.sh"))
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("HAL0_CONFIG")
        .env("HAL0_TEST_CACHE", cache())
        .env("HAL0_QUICKSTART_BIN", env!("CARGO_BIN_EXE_hal0"))
        .env("HAL0_QUICKSTART_NO_SERVE", "1")
        .output()
        .expect("run scripts/quickstart.sh");
    assert!(
        out.status.success(),
        "quickstart failed (run scripts/test.sh to install the providers it needs):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn the_quickstart_creates_the_user_config_once_and_never_rewrites_it() {
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join(".config/hal0/hal0.toml");

    let first = quickstart(home.path());
    let said = String::from_utf8_lossy(&first.stderr);
    assert!(
        said.contains(&format!("3/4 config: creating {}", config.display())),
        "{said}"
    );
    assert!(
        said.contains("valid, 1 slot"),
        "the new config validates: {said}"
    );
    for step in ["1/4 providers", "2/4 hal0", "took "] {
        assert!(said.contains(step), "{step}: {said}");
    }
    let created = std::fs::read_to_string(&config).expect("the user config exists");
    assert!(created.contains("[slots.primary]") && created.contains("autoload = true"));
    assert!(created.contains("llama-server"), "{created}");

    // The user adds a slot with an editor (rename-save).
    let edited = format!(
        "{created}\n# mine\n[slots.fast]\nprovider = \"llama.cpp\"\nmodel = \"file:/srv/models/fast.gguf\"\n"
    );
    let tmp = config.with_extension("toml.swp");
    std::fs::write(&tmp, &edited).unwrap();
    std::fs::rename(&tmp, &config).unwrap();

    let second = quickstart(home.path());
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(
        said.contains(&format!(
            "3/4 config: {} exists; using it as it is",
            config.display()
        )),
        "{said}"
    );
    assert!(said.contains("valid, 2 slots"), "{said}");
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        edited,
        "never rewritten"
    );
}
