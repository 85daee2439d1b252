//! `hal0 config validate` and `hal0 config show`.

use std::process::ExitCode;

use super::{ConfigErrors, Located, PathOrigin};
use crate::model::{DesiredState, Role};

/// Check a config file. Valid: exit 0 and one line per slot on stdout. Invalid: exit 1 and
/// every problem on stderr, one `PATH:LINE:COL: field: message` line each. The first line says
/// which file was read and why that one.
pub fn validate(config: &Located) -> ExitCode {
    let path = config.path.as_path();
    match super::load(path) {
        Ok(state) => {
            let lines = slot_lines(&state);
            match lines.len() {
                0 => println!("{config}: valid, no slots declared"),
                1 => println!("{config}: valid, 1 slot"),
                n => println!("{config}: valid, {n} slots"),
            }
            for line in lines {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(errors) => report(config, &errors),
    }
}

/// Print the merged view (TOML, or JSON with `json`). An invalid file is reported like
/// `validate` does and nothing is printed on stdout.
pub fn show(config: &Located, json: bool) -> ExitCode {
    let state = match super::load(&config.path) {
        Ok(state) => state,
        Err(errors) => return report(config, &errors),
    };
    match super::show::render(&state, &config.to_string(), json) {
        Ok(text) => {
            print!("{text}");
            if !text.ends_with('\n') {
                println!();
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hal0: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn report(config: &Located, errors: &ConfigErrors) -> ExitCode {
    for d in errors {
        eprintln!("{d}");
    }
    if !config.path.exists() {
        eprintln!("hal0: {}", missing_hint(config));
        return ExitCode::FAILURE;
    }
    let n = errors.len();
    eprintln!(
        "hal0: {config} is invalid: {n} problem{}",
        if n == 1 { "" } else { "s" }
    );
    ExitCode::FAILURE
}

/// What to do when the config file does not exist.
pub fn missing_hint(config: &Located) -> String {
    let mut hint = format!("no config file at {config}.");
    if config.origin == PathOrigin::UserConfig {
        hint.push_str(
            "\n      scripts/quickstart.sh creates it with one chat slot; or copy hal0.example.toml there,\n      or point --config or $HAL0_CONFIG at your file.",
        );
    }
    hint
}

/// `primary  llama.cpp  chat  model=…  port=auto`, columns aligned.
pub fn slot_lines(state: &DesiredState) -> Vec<String> {
    let rows: Vec<[String; 4]> = state
        .slots
        .iter()
        .map(|(name, spec)| {
            let role: Role = spec.effective_role(name.builtin_role());
            let detail = if spec.provider.runs_process() {
                let port = spec
                    .port
                    .map_or_else(|| "auto".to_string(), |p| p.to_string());
                format!(
                    "model={}  port={port}",
                    spec.model.as_deref().unwrap_or("-")
                )
            } else {
                let upstream = spec.upstream.as_deref().map(super::show::redact_url);
                format!("upstream={}", upstream.as_deref().unwrap_or("-"))
            };
            [
                name.to_string(),
                spec.provider.as_str().to_string(),
                role.as_str().to_string(),
                detail,
            ]
        })
        .collect();
    let width = |i: usize| rows.iter().map(|r| r[i].len()).max().unwrap_or(0);
    let (w0, w1, w2) = (width(0), width(1), width(2));
    rows.into_iter()
        .map(|[name, provider, role, detail]| {
            format!("{name:w0$}  {provider:w1$}  {role:w2$}  {detail}")
        })
        .collect()
}
