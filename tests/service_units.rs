//! The systemd units of deploy/systemd, as `hal0 service` writes them: `systemd-analyze verify`
//! accepts both (it checks every directive, and that ExecStart's binary exists), and
//! `hal0 service install --user --no-start` writes the user unit where systemd looks for it
//! and `uninstall` removes it again. scripts/test.sh installs Debian's systemd package for
//! `systemd-analyze`; without it this test fails and says so.

use std::path::Path;
use std::process::{Command, Output};

const HAL0: &str = env!("CARGO_BIN_EXE_hal0");

fn hal0(args: &[&str], home: &Path) -> Output {
    Command::new(HAL0)
        .args(args)
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .env("HAL0_LOG", "off")
        .output()
        .expect("run hal0")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn systemd_analyze() -> &'static str {
    let found = Command::new("systemd-analyze").arg("--version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "systemd-analyze is missing: install Debian's systemd package (scripts/test.sh does)"
    );
    "systemd-analyze"
}

/// `systemd-analyze verify` on `unit` saved as `dir/hal0.service`; its complaints, if any.
fn verify(dir: &Path, unit: &str, user: bool) -> Result<(), String> {
    let path = dir.join("hal0.service");
    std::fs::write(&path, unit).expect("write unit");
    let mut cmd = Command::new(systemd_analyze());
    if user {
        // The user manager needs a runtime directory, as a login session has.
        let runtime = dir.join("runtime");
        std::fs::create_dir_all(&runtime).expect("runtime dir");
        cmd.arg("--user").env("XDG_RUNTIME_DIR", runtime);
    }
    let out = cmd
        .args(["verify", "--man=no"])
        .arg(&path)
        .env("SYSTEMD_LOG_LEVEL", "notice")
        .output()
        .expect("run systemd-analyze");
    // verify prints problems with other units on this machine too; only ours count.
    let ours: Vec<String> = text(&out)
        .lines()
        .filter(|l| l.contains("hal0.service") || l.contains(&path.display().to_string()))
        .map(String::from)
        .collect();
    if out.status.success() && ours.is_empty() {
        Ok(())
    } else {
        Err(format!("{}\n{unit}", text(&out)))
    }
}

#[ignore = "needs systemd-analyze (Debian's systemd package); scripts/test.sh runs it"]
#[test]
fn systemd_analyze_verify_accepts_the_system_and_the_user_unit() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (scope, user) in [("--system", false), ("--user", true)] {
        let out = hal0(
            &["service", "print", scope, "--config", "/etc/hal0/hal0.toml"],
            home.path(),
        );
        assert!(out.status.success(), "{}", text(&out));
        let unit = String::from_utf8(out.stdout).unwrap();
        assert!(
            unit.contains(&format!(
                "ExecStart={HAL0} serve --config /etc/hal0/hal0.toml"
            )),
            "{unit}"
        );
        verify(dir.path(), &unit, user).unwrap_or_else(|e| panic!("{scope}: {e}"));
    }
}

#[ignore = "needs systemd-analyze (Debian's systemd package); scripts/test.sh runs it"]
#[test]
fn verify_would_catch_a_broken_unit() {
    // The check above can fail: a misspelt directive and a missing binary are reported.
    let dir = tempfile::tempdir().unwrap();
    let broken = hal0::service::SYSTEM_UNIT
        .replace("Restart=on-failure", "Restart=on-failur")
        .replace("/usr/local/bin/hal0", "/nonexistent/hal0");
    let err = verify(dir.path(), &broken, false).expect_err("a broken unit is refused");
    assert!(
        err.contains("Restart") || err.contains("/nonexistent/hal0"),
        "{err}"
    );
}

#[test]
fn install_and_uninstall_a_user_unit() {
    let home = tempfile::tempdir().unwrap();
    let out = hal0(&["service", "install", "--user", "--no-start"], home.path());
    assert!(out.status.success(), "{}", text(&out));
    let unit_path = home.path().join(".config/systemd/user/hal0.service");
    let unit = std::fs::read_to_string(&unit_path).expect("unit written");
    let config = home.path().join(".config/hal0/hal0.toml");
    assert!(
        unit.contains(&format!(
            "ExecStart={HAL0} serve --config {}",
            config.display()
        )),
        "{unit}"
    );
    let said = text(&out);
    assert!(
        said.contains("systemctl --user enable --now hal0.service"),
        "{said}"
    );
    assert!(said.contains("does not exist yet"), "{said}");

    let out = hal0(&["service", "uninstall", "--user"], home.path());
    assert!(out.status.success(), "{}", text(&out));
    assert!(!unit_path.exists(), "unit removed");
    let again = hal0(&["service", "uninstall", "--user"], home.path());
    assert!(again.status.success());
    assert!(text(&again).contains("nothing to remove"));
}
