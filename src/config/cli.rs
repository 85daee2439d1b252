//! `hal0 config validate` and `hal0 config show`.

use std::path::Path;
use std::process::ExitCode;

pub fn validate(path: &Path) -> ExitCode {
    match super::load(path) {
        Ok(d) => {
            for (name, spec) in &d.slots {
                println!("{name}: {}", spec.provider);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

pub fn show(path: &Path, _json: bool) -> ExitCode {
    validate(path)
}
