//! hal0.toml: parse, validate with line:column errors, print the merged view.
//!
//! Parsing is pure: [`parse`] is a function of a path (used only in messages) and the text, so
//! the file source, the API and tests all share it; [`load`] adds the file read. A bad config
//! changes nothing here: callers keep their last good [`DesiredState`].
//!
//! Layout:
//! - `diagnostic` `Diagnostic`, `ConfigErrors`, byte span → line:column
//! - `spans`      typed reads from the span-carrying TOML tree, one error per bad value
//! - `read`       top level, `[server]`, `[providers."…"]` → model types
//! - `slot`       one `[slots.<name>]` → `SlotSpec`, with the span of each part
//! - `validate`   runs `crate::rules` on what was read; each violation at its span
//! - `show`       the merged view with defaults filled in and secrets redacted
//! - `cli`        `hal0 config validate|show`
//! - `store`      atomic, comment-preserving slot edits with revision checks (API, CLI)
//! - `replace`    replacing the file without losing a concurrent edit; temp names, leftovers

pub mod cli;
mod diagnostic;
mod read;
pub mod replace;
pub mod show;
mod slot;
mod spans;
pub mod store;
mod validate;

use std::path::{Path, PathBuf};

use toml::de::DeTable;

pub use diagnostic::{ConfigErrors, Diagnostic};

use crate::model::DesiredState;
use diagnostic::Sink;
use spans::Table;

/// Every key a `[slots.<name>]` table may have, in the order hal0 writes them.
pub fn slot_keys() -> &'static [&'static str] {
    &slot::SLOT_KEYS
}

/// The `--config` flag's help, the same on every command.
pub const CONFIG_HELP: &str = "Config file [default: $HAL0_CONFIG, else ./hal0.toml if it exists, else ~/.config/hal0/hal0.toml ($XDG_CONFIG_HOME)]";

/// `--config`, else `$HAL0_CONFIG`, else `./hal0.toml` when it exists, else the user's
/// config ([`user_config_path`]), existing or not.
pub fn resolve_path(flag: Option<PathBuf>) -> PathBuf {
    locate(flag).path
}

/// Why a config path was chosen, for messages like "config: PATH (from $HAL0_CONFIG)".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathOrigin {
    Flag,
    Env,
    CurrentDir,
    UserConfig,
}

impl PathOrigin {
    pub fn describe(self) -> &'static str {
        match self {
            PathOrigin::Flag => "from --config",
            PathOrigin::Env => "from $HAL0_CONFIG",
            PathOrigin::CurrentDir => "./hal0.toml in the current directory",
            PathOrigin::UserConfig => "the user config; no --config, $HAL0_CONFIG or ./hal0.toml",
        }
    }
}

/// The config file a command acts on, and why that one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub path: PathBuf,
    pub origin: PathOrigin,
}

impl Located {
    /// The absolute path (for messages; relative paths depend on where the command ran).
    pub fn absolute(&self) -> PathBuf {
        std::path::absolute(&self.path).unwrap_or_else(|_| self.path.clone())
    }
}

/// `/home/me/.config/hal0/hal0.toml (the user config)`.
impl std::fmt::Display for Located {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({})",
            self.absolute().display(),
            self.origin.describe()
        )
    }
}

/// [`resolve_path`] with the reason for the choice.
pub fn locate(flag: Option<PathBuf>) -> Located {
    let (path, origin) = if let Some(p) = flag {
        (p, PathOrigin::Flag)
    } else if let Some(p) = std::env::var_os("HAL0_CONFIG").filter(|p| !p.is_empty()) {
        (PathBuf::from(p), PathOrigin::Env)
    } else if Path::new("hal0.toml").exists() {
        (PathBuf::from("hal0.toml"), PathOrigin::CurrentDir)
    } else {
        (user_config_path(), PathOrigin::UserConfig)
    };
    Located { path, origin }
}

/// `$XDG_CONFIG_HOME/hal0/hal0.toml`, else `~/.config/hal0/hal0.toml` (what
/// `scripts/quickstart.sh` creates). Relative `XDG_CONFIG_HOME` values are ignored, as the
/// XDG spec says.
pub fn user_config_path() -> PathBuf {
    let xdg = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    let base = xdg.unwrap_or_else(|| {
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/"))
            .join(".config")
    });
    base.join("hal0").join("hal0.toml")
}

/// Parse and validate config text. `path` is only used in messages.
///
/// Returns every problem found, not just the first: all TOML syntax errors if the text is not
/// TOML; otherwise every unknown key, bad value and broken rule.
pub fn parse(path: &Path, text: &str) -> Result<DesiredState, ConfigErrors> {
    let mut sink = Sink::new(path, text);
    let (root, syntax_errors) = DeTable::parse_recoverable(text);
    if !syntax_errors.is_empty() {
        // The recovered tree is a guess; rules run on it would report phantom problems.
        for e in syntax_errors {
            let span = e.span().unwrap_or(0..0);
            let message = syntax_message(e.message(), sink.text(span.clone()));
            sink.error(span, "", message);
        }
        return Err(sink.into_errors());
    }
    let root = Table {
        entries: root.get_ref(),
        path: String::new(),
    };
    let doc = read::document(&mut sink, &root);
    validate::check(&mut sink, &doc);
    sink.finish()?;
    Ok(doc.state)
}

/// Read, parse and validate a config file.
pub fn load(path: &Path) -> Result<DesiredState, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors::unreadable(path, &e))?;
    parse(path, &text)
}

fn syntax_message(message: &str, at: &str) -> String {
    if message == "duplicate key" && !at.is_empty() {
        format!(
            "TOML syntax error: duplicate key {at}; each key and table may be defined only once"
        )
    } else {
        format!("TOML syntax error: {message}")
    }
}
