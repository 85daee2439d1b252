//! `hal0 service install|uninstall|print`: hal0 as a systemd service. The unit files are the
//! ones in `deploy/systemd/` (embedded), with `ExecStart` set to this binary and the config.
//!
//! A system unit (as root, the default for root) runs as the `hal0` user with the config in
//! `/etc/hal0/hal0.toml` and models under `/var/lib/hal0`; a user unit (`--user`, the default
//! for everyone else) runs as you with `~/.config/hal0/hal0.toml`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use clap::{Args, Subcommand};

/// The hardened system unit, as shipped in `deploy/systemd/hal0.service`.
pub const SYSTEM_UNIT: &str = include_str!("../deploy/systemd/hal0.service");
/// The user unit, as shipped in `deploy/systemd/hal0-user.service`.
pub const USER_UNIT: &str = include_str!("../deploy/systemd/hal0-user.service");

const SYSTEM_CONFIG: &str = "/etc/hal0/hal0.toml";
const SYSTEM_UNIT_PATH: &str = "/etc/systemd/system/hal0.service";

#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Write the unit file, reload systemd, enable and start hal0.service.
    Install(UnitArgs),
    /// Stop and disable hal0.service and remove the unit file (the config and models stay).
    Uninstall(ScopeArgs),
    /// Print the unit file `install` would write.
    Print(UnitArgs),
}

#[derive(Debug, Args)]
pub struct ScopeArgs {
    /// A user unit (~/.config/systemd/user) [default: unless run as root].
    #[arg(long, conflicts_with = "system")]
    pub user: bool,
    /// A system unit (/etc/systemd/system, runs as the hal0 user) [default: as root].
    #[arg(long)]
    pub system: bool,
}

#[derive(Debug, Args)]
pub struct UnitArgs {
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// The config the service runs [default: /etc/hal0/hal0.toml for a system unit,
    /// ~/.config/hal0/hal0.toml for a user unit].
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// The hal0 binary the unit starts [default: this one].
    #[arg(long)]
    pub binary: Option<PathBuf>,
    /// Only write the unit file; do not call systemctl.
    #[arg(long)]
    pub no_start: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{what} {path}: {source}", path = path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot find this hal0 binary's path: {0}")]
    NoBinary(std::io::Error),
    #[error("{0}")]
    Refused(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    System,
    User,
}

impl ScopeArgs {
    pub fn scope(&self) -> Scope {
        if self.system {
            Scope::System
        } else if self.user || !is_root() {
            Scope::User
        } else {
            Scope::System
        }
    }
}

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

fn home() -> PathBuf {
    std::env::var_os("HOME").map_or_else(|| PathBuf::from("/"), PathBuf::from)
}

/// Where the unit file goes.
pub fn unit_path(scope: Scope) -> PathBuf {
    match scope {
        Scope::System => PathBuf::from(SYSTEM_UNIT_PATH),
        Scope::User => {
            let base = std::env::var_os("XDG_CONFIG_HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .unwrap_or_else(|| home().join(".config"));
            base.join("systemd/user/hal0.service")
        }
    }
}

/// The config a unit of this scope runs by default.
pub fn default_config(scope: Scope) -> PathBuf {
    match scope {
        Scope::System => PathBuf::from(SYSTEM_CONFIG),
        Scope::User => crate::config::user_config_path(),
    }
}

/// systemd splits ExecStart on whitespace and treats `%` and `\` specially: quote the path.
fn exec_arg(p: &Path) -> String {
    let s = p.display().to_string().replace('%', "%%");
    if s.chars()
        .any(|c| c.is_whitespace() || c == '"' || c == '\\' || c == '\'')
    {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        s
    }
}

/// The unit text for `scope`, starting `binary` on `config`.
pub fn render(scope: Scope, binary: &Path, config: &Path) -> String {
    let template = match scope {
        Scope::System => SYSTEM_UNIT,
        Scope::User => USER_UNIT,
    };
    template
        .lines()
        .map(|l| {
            if l.starts_with("ExecStart=") {
                format!(
                    "ExecStart={} serve --config {}",
                    exec_arg(binary),
                    exec_arg(config)
                )
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

fn resolve(args: &UnitArgs) -> Result<(Scope, PathBuf, PathBuf), ServiceError> {
    let scope = args.scope.scope();
    let binary = match &args.binary {
        Some(b) => std::path::absolute(b).unwrap_or_else(|_| b.clone()),
        None => std::env::current_exe().map_err(ServiceError::NoBinary)?,
    };
    let config = args
        .config
        .as_ref()
        .map(|c| std::path::absolute(c).unwrap_or_else(|_| c.clone()))
        .unwrap_or_else(|| default_config(scope));
    Ok((scope, binary, config))
}

fn write_file(path: &Path, text: &str) -> Result<(), ServiceError> {
    let io = |what, source| ServiceError::Io {
        what,
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io("cannot create the directory of", e))?;
    }
    let tmp = path.with_extension("service.tmp");
    std::fs::write(&tmp, text).map_err(|e| io("cannot write", e))?;
    std::fs::rename(&tmp, path).map_err(|e| io("cannot write", e))
}

fn systemctl(scope: Scope, args: &[&str]) -> String {
    let mut cmd = String::from("systemctl");
    if scope == Scope::User {
        cmd.push_str(" --user");
    }
    for a in args {
        cmd.push(' ');
        cmd.push_str(a);
    }
    cmd
}

/// Runs systemctl; on failure says what to run by hand.
fn run_systemctl(scope: Scope, args: &[&str]) -> bool {
    let line = systemctl(scope, args);
    let mut cmd = Command::new("systemctl");
    if scope == Scope::User {
        cmd.arg("--user");
    }
    match cmd.args(args).status() {
        Ok(s) if s.success() => {
            println!("ran: {line}");
            true
        }
        Ok(s) => {
            eprintln!("hal0: `{line}` failed ({s}); run it yourself once systemd is up");
            false
        }
        Err(e) => {
            eprintln!("hal0: cannot run `{line}` ({e}); run it yourself where systemd runs");
            false
        }
    }
}

fn install(args: &UnitArgs) -> Result<ExitCode, ServiceError> {
    let (scope, binary, config) = resolve(args)?;
    if scope == Scope::System && !is_root() {
        return Err(ServiceError::Refused(
            "a system unit needs root: run `sudo hal0 service install`, or use --user".into(),
        ));
    }
    let path = unit_path(scope);
    write_file(&path, &render(scope, &binary, &config))?;
    println!("wrote {}", path.display());
    println!(
        "  ExecStart={} serve --config {}",
        binary.display(),
        config.display()
    );
    if scope == Scope::System {
        ensure_system_user();
    }
    if !config.exists() {
        println!(
            "note: {} does not exist yet; create it (hal0.example.toml shows every setting) before starting",
            config.display()
        );
    }
    let steps: [&[&str]; 2] = [&["daemon-reload"], &["enable", "--now", "hal0.service"]];
    if args.no_start {
        println!("not started (--no-start); to start it:");
        for s in steps {
            println!("  {}", systemctl(scope, s));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let ok = steps.iter().all(|s| run_systemctl(scope, s));
    if ok {
        println!(
            "hal0 runs as a service; logs: {}",
            if scope == Scope::User {
                "journalctl --user -u hal0 -f"
            } else {
                "journalctl -u hal0 -f"
            }
        );
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The system unit runs as `hal0`; create that system user unless it exists.
fn ensure_system_user() {
    let exists = Command::new("id")
        .arg("hal0")
        .output()
        .is_ok_and(|o| o.status.success());
    if exists {
        return;
    }
    let made = Command::new("useradd")
        .args([
            "--system",
            "--user-group",
            "--home-dir",
            "/var/lib/hal0",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            "hal0",
        ])
        .status();
    match made {
        Ok(s) if s.success() => println!("created the system user hal0"),
        _ => eprintln!(
            "hal0: could not create the system user hal0; create it with: useradd --system --user-group --home-dir /var/lib/hal0 --shell /usr/sbin/nologin hal0"
        ),
    }
}

fn uninstall(args: &ScopeArgs) -> Result<ExitCode, ServiceError> {
    let scope = args.scope();
    let path = unit_path(scope);
    if !path.exists() {
        println!("{} does not exist: nothing to remove", path.display());
        return Ok(ExitCode::SUCCESS);
    }
    // Best effort: systemd may not run here (a container, a chroot).
    run_systemctl(scope, &["disable", "--now", "hal0.service"]);
    std::fs::remove_file(&path).map_err(|source| ServiceError::Io {
        what: "cannot remove",
        path: path.clone(),
        source,
    })?;
    println!("removed {}", path.display());
    run_systemctl(scope, &["daemon-reload"]);
    println!("the config and the models stay where they are");
    Ok(ExitCode::SUCCESS)
}

/// `hal0 service …`
pub fn run(cmd: ServiceCommand) -> ExitCode {
    let result = match cmd {
        ServiceCommand::Install(args) => install(&args),
        ServiceCommand::Uninstall(args) => uninstall(&args),
        ServiceCommand::Print(args) => resolve(&args).map(|(scope, binary, config)| {
            print!("{}", render(scope, &binary, &config));
            ExitCode::SUCCESS
        }),
    };
    result.unwrap_or_else(|e| {
        eprintln!("hal0: error: {e}");
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_start_points_at_the_binary_and_the_config() {
        let unit = render(
            Scope::System,
            Path::new("/opt/hal0/bin/hal0"),
            Path::new("/etc/hal0/hal0.toml"),
        );
        assert!(
            unit.lines()
                .any(|l| l == "ExecStart=/opt/hal0/bin/hal0 serve --config /etc/hal0/hal0.toml"),
            "{unit}"
        );
        assert_eq!(unit.matches("ExecStart=").count(), 1);
        let unit = render(
            Scope::User,
            Path::new("/home/a b/bin/hal0"),
            Path::new("/home/a b/100%.toml"),
        );
        assert!(
            unit.contains(
                "ExecStart=\"/home/a b/bin/hal0\" serve --config \"/home/a b/100%%.toml\""
            ),
            "{unit}"
        );
    }

    #[test]
    fn the_system_unit_is_hardened_and_restarts() {
        for key in [
            "Restart=on-failure",
            "ProtectSystem=strict",
            "NoNewPrivileges=yes",
            "StateDirectory=hal0",
            "ReadWritePaths=/etc/hal0",
            "User=hal0",
        ] {
            assert!(SYSTEM_UNIT.lines().any(|l| l == key), "{key}");
        }
        assert!(USER_UNIT.contains("WantedBy=default.target"));
    }
}
