//! hal0.toml: parse, validate with line:column errors, print the merged view. (In progress.)

pub mod cli;

use std::path::{Path, PathBuf};

use crate::model::DesiredState;

/// `--config`, else `$HAL0_CONFIG`, else `./hal0.toml`.
pub fn resolve_path(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os("HAL0_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("hal0.toml"))
}

/// Every problem found in a config file, each as `PATH:LINE:COL: message`.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct ConfigErrors(pub Vec<String>);

/// Parse and validate config text. `path` is only used in messages.
pub fn parse(path: &Path, text: &str) -> Result<DesiredState, ConfigErrors> {
    toml::from_str(text).map_err(|e| ConfigErrors(vec![format!("{}: {e}", path.display())]))
}

/// Read, parse and validate a config file.
pub fn load(path: &Path) -> Result<DesiredState, ConfigErrors> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigErrors(vec![format!("{}: cannot read: {e}", path.display())]))?;
    parse(path, &text)
}
