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
//! - `slot`       one `[slots.<name>]` → `SlotSpec`
//! - `validate`   rules across fields and slots (roles, ports, names, misplaced keys)
//! - `suggest`    "did you mean" by edit distance
//! - `show`       the merged view with defaults filled in and secrets redacted
//! - `cli`        `hal0 config validate|show`
//! - `store`      atomic, comment-preserving slot edits with revision checks (API, CLI)

pub mod cli;
mod diagnostic;
mod read;
pub mod show;
mod slot;
mod spans;
pub mod store;
pub mod suggest;
mod validate;

use std::path::{Path, PathBuf};

use toml::de::DeTable;

pub use diagnostic::{ConfigErrors, Diagnostic};

use crate::model::DesiredState;
use diagnostic::Sink;
use spans::Table;

/// `--config`, else `$HAL0_CONFIG`, else `./hal0.toml`.
pub fn resolve_path(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os("HAL0_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("hal0.toml"))
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
