//! `hal0 model pull|list`: downloads into and listings of `server.models_dir`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use super::slot::human_bytes;
use super::{ModelArgs, ModelCommand, load_config};
use crate::model::DesiredState;
use crate::providers::expand_home;
use crate::pull::{self, Progress};

pub async fn run(args: ModelArgs) -> anyhow::Result<ExitCode> {
    let located = crate::config::locate(args.config.clone());
    let config = load_config(&located.path);
    let models_dir = args.models_dir.clone().unwrap_or_else(|| {
        let dir = config.as_ref().map_or_else(
            || crate::model::ServerSettings::default().models_dir,
            |c| c.server.models_dir.clone(),
        );
        expand_home(&dir)
    });
    // Say where models_dir came from (on stderr, so `--json` stays clean).
    if args.models_dir.is_some() {
        eprintln!("models_dir: {} (from --models-dir)", models_dir.display());
    } else if config.is_some() {
        eprintln!(
            "models_dir: {} (server.models_dir of {located})",
            models_dir.display()
        );
    } else {
        eprintln!(
            "models_dir: {} (the default; {} cannot be read or is invalid)",
            models_dir.display(),
            located.absolute().display()
        );
    }
    match args.command {
        ModelCommand::Pull { model, endpoint } => {
            let endpoint = endpoint.unwrap_or_else(pull::default_endpoint);
            pull_one(&model, &models_dir, &endpoint).await
        }
        ModelCommand::List { json } => list(&models_dir, config.as_ref(), json),
    }
}

async fn pull_one(model: &str, models_dir: &Path, endpoint: &str) -> anyhow::Result<ExitCode> {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(model.to_string());
    bar.enable_steady_tick(Duration::from_millis(200));
    let progress = {
        let bar = bar.clone();
        move |p: Progress| {
            if let Some(t) = p.total {
                bar.set_length(t);
            }
            bar.set_position(p.downloaded);
        }
    };
    let result = pull::pull(model, models_dir, endpoint, &progress).await;
    bar.finish_and_clear();
    match result {
        Ok(p) if p.already_present => {
            println!(
                "{model}: already in {} ({})",
                p.path.display(),
                human_bytes(p.bytes)
            );
            Ok(ExitCode::SUCCESS)
        }
        Ok(p) => {
            let resumed = if p.resumed_from > 0 {
                format!(", resumed at {}", human_bytes(p.resumed_from))
            } else {
                String::new()
            };
            let check = p.sha256.as_deref().map_or_else(
                || "no checksum offered".to_string(),
                |s| format!("sha256 {s} verified"),
            );
            println!(
                "{model}: pulled to {} ({}{resumed}, {check})",
                p.path.display(),
                human_bytes(p.bytes)
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("hal0: cannot pull {model}: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Every file under `dir`, recursively, as paths relative to it.
fn files(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(path),
                Ok(t) if t.is_file() => {
                    let size = e.metadata().map_or(0, |m| m.len());
                    if let Ok(rel) = path.strip_prefix(dir) {
                        out.push((rel.to_path_buf(), size));
                    }
                }
                _ => {}
            }
        }
    }
    out.sort();
    out
}

fn list(models_dir: &Path, config: Option<&DesiredState>, json: bool) -> anyhow::Result<ExitCode> {
    let mut rows = Vec::new();
    for (rel, size) in files(models_dir) {
        let rel_s = rel.to_string_lossy().to_string();
        let (name, partial) = match rel_s.strip_suffix(".part") {
            Some(n) => (n.to_string(), true),
            None => (rel_s, false),
        };
        // org/repo/file… is what an hf: ref names.
        let reference = if name.splitn(3, '/').count() == 3 {
            format!("hf:{name}")
        } else {
            format!("file:{}", models_dir.join(&name).display())
        };
        let slots: Vec<String> = config
            .map(|c| {
                c.slots
                    .iter()
                    .filter(|(_, s)| {
                        s.model.as_deref().is_some_and(|m| {
                            m == reference
                                || crate::providers::ModelRef::parse(m)
                                    .ok()
                                    .and_then(|r| r.local_path(models_dir))
                                    .is_some_and(|p| p == models_dir.join(&name))
                        })
                    })
                    .map(|(n, _)| n.to_string())
                    .collect()
            })
            .unwrap_or_default();
        rows.push((reference, size, partial, slots));
    }
    if json {
        let items: Vec<_> = rows
            .iter()
            .map(|(r, size, partial, slots)| json!({"model": r, "bytes": size, "partial": partial, "slots": slots}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"models_dir": models_dir, "models": items}))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("no models in {}", models_dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    let w = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    println!("{:w$}  {:>10}  SLOTS", "MODEL", "SIZE");
    for (r, size, partial, slots) in rows {
        let size = if partial {
            format!(
                "{} (partial: `hal0 model pull` resumes it)",
                human_bytes(size)
            )
        } else {
            human_bytes(size)
        };
        let slots = if slots.is_empty() {
            "-".into()
        } else {
            slots.join(",")
        };
        println!("{r:w$}  {size:>10}  {slots}");
    }
    Ok(ExitCode::SUCCESS)
}
