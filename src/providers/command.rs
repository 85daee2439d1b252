//! LaunchSpec → the command that starts the provider.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::model::{Device, LaunchSpec, ProviderKind, Role, model_id_of};

use super::{ModelRef, ModelRefError};

/// A fully resolved command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub program: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
}

impl Command {
    /// The whole argv, for logs and status.
    pub fn argv(&self) -> Vec<String> {
        std::iter::once(self.program.clone())
            .chain(self.args.iter().cloned())
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    #[error("slot {slot}: provider {provider} runs no process (it is an external upstream)")]
    NoProcess {
        slot: String,
        provider: ProviderKind,
    },
    #[error("slot {slot}: provider {provider} needs a model")]
    NoModel {
        slot: String,
        provider: ProviderKind,
    },
    #[error("slot {slot}: {source}")]
    Model {
        slot: String,
        #[source]
        source: ModelRefError,
    },
    #[error("slot {slot}: [providers.\"{provider}\"] command is empty")]
    EmptyCommand {
        slot: String,
        provider: ProviderKind,
    },
}

/// The binary each provider runs when `[providers."<name>"] command` does not say otherwise.
pub fn default_program(provider: ProviderKind) -> &'static [&'static str] {
    match provider {
        ProviderKind::LlamaCpp => &["llama-server"],
        ProviderKind::Flm => &["flm", "serve"],
        ProviderKind::Moonshine => &["moonshine-server"],
        ProviderKind::Kokoro => &["kokoro-server"],
        ProviderKind::OpenAiCompatible => &[],
    }
}

/// The path that answers 200 once the provider is ready to serve.
pub fn health_path(provider: ProviderKind) -> &'static str {
    match provider {
        ProviderKind::LlamaCpp | ProviderKind::Moonshine | ProviderKind::Kokoro => "/health",
        ProviderKind::Flm | ProviderKind::OpenAiCompatible => "/v1/models",
    }
}

/// Builds the command for a slot. File model refs must exist (a missing file is an error that
/// names the path); `models_dir` is where `hf:` refs live.
pub fn build_command(launch: &LaunchSpec, models_dir: &Path) -> Result<Command, ProviderError> {
    build_command_with(launch, "127.0.0.1", |model_ref, original| {
        model_ref.existing_path(original, models_dir)
    })
}

/// Every provider process gets its model (resolved file path, or the provider's own name for
/// it) in this variable; speech providers read it from here rather than from a flag.
pub const MODEL_ENV: &str = "HAL0_MODEL";

/// The model id clients use for the slot (what `--alias` is for llama.cpp).
pub const MODEL_ID_ENV: &str = "HAL0_MODEL_ID";

/// The one place a provider's argv is built, shared by the process runtime and the Kubernetes
/// pods. `host` is the address the provider binds (loopback on one box; `0.0.0.0` in a pod,
/// behind its Service); `resolve_model` turns a model ref into the local file to pass, or
/// `None` for a name the provider resolves itself. The pod's resolver does not touch the
/// filesystem: the file lives on the pod's model volume.
pub fn build_command_with(
    launch: &LaunchSpec,
    host: &str,
    resolve_model: impl Fn(&ModelRef, &str) -> Result<Option<PathBuf>, ModelRefError>,
) -> Result<Command, ProviderError> {
    let slot = launch.slot.to_string();
    if !launch.provider.runs_process() {
        return Err(ProviderError::NoProcess {
            slot,
            provider: launch.provider,
        });
    }
    let model = launch
        .model
        .as_deref()
        .ok_or_else(|| ProviderError::NoModel {
            slot: slot.clone(),
            provider: launch.provider,
        })?;
    let model_err = |source| ProviderError::Model {
        slot: slot.clone(),
        source,
    };
    let model_ref = ModelRef::parse(model).map_err(model_err)?;
    let path = resolve_model(&model_ref, model).map_err(model_err)?;
    let model_arg = path.map_or_else(|| named(&model_ref, model), |p| p.display().to_string());
    let model_id = model_id_of(model);
    let port = launch.port.to_string();

    let prefix: Vec<String> = match &launch.command {
        Some(c) => c.clone(),
        None => default_program(launch.provider)
            .iter()
            .map(|s| s.to_string())
            .collect(),
    };
    let Some((program, prefix_args)) = prefix.split_first() else {
        return Err(ProviderError::EmptyCommand {
            slot,
            provider: launch.provider,
        });
    };
    let mut args: Vec<String> = prefix_args.to_vec();
    let s = |v: &str| v.to_string();
    match launch.provider {
        ProviderKind::LlamaCpp => {
            args.extend([
                s("-m"),
                model_arg.clone(),
                s("--host"),
                s(host),
                s("--port"),
                port,
                s("--alias"),
                model_id,
            ]);
            match launch.role {
                Role::Embeddings => args.push(s("--embedding")),
                Role::Rerank => args.push(s("--reranking")),
                _ => {}
            }
            if launch.device == Device::Igpu {
                args.extend([s("--n-gpu-layers"), s("999")]);
            }
            if let Some(secs) = launch.sleep_after_secs {
                args.extend([s("--sleep-idle-seconds"), secs.to_string()]);
            }
        }
        ProviderKind::Flm => {
            args.extend([model_arg.clone(), s("--host"), s(host), s("--port"), port]);
        }
        ProviderKind::Moonshine | ProviderKind::Kokoro => {
            // Speech servers have no common model flag; they get the model in the
            // environment (see `MODEL_ENV`) and only --host/--port on the command line.
            args.extend([s("--host"), s(host), s("--port"), port]);
        }
        ProviderKind::OpenAiCompatible => {}
    }
    args.extend(launch.args.iter().cloned());
    let mut env = launch.env.clone();
    env.entry(MODEL_ENV.to_string()).or_insert(model_arg);
    env.entry(MODEL_ID_ENV.to_string())
        .or_insert(model_id_of(model));
    Ok(Command {
        program: program.clone(),
        args,
        env,
    })
}

/// The name a provider-specific ref passes on: `flm:llama3.2:1b` → `llama3.2:1b`.
fn named(model_ref: &ModelRef, original: &str) -> String {
    match model_ref {
        ModelRef::Named(n) => n
            .split_once(':')
            .filter(|(scheme, _)| *scheme == "flm")
            .map_or(n.clone(), |(_, rest)| rest.to_string()),
        _ => original.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DesiredState, ProviderOverride, SlotName, SlotSpec};

    fn launch(spec: SlotSpec, name: &str, desired: &DesiredState) -> LaunchSpec {
        LaunchSpec::new(desired, &SlotName::parse(name).unwrap(), &spec, 8081)
    }

    fn model_file() -> tempfile::NamedTempFile {
        tempfile::Builder::new().suffix(".gguf").tempfile().unwrap()
    }

    #[test]
    fn llama_cpp_chat_argv() {
        let f = model_file();
        let mut spec = SlotSpec::new(
            ProviderKind::LlamaCpp,
            Some(&format!("file:{}", f.path().display())),
        );
        spec.args = vec!["--ctx-size".into(), "4096".into()];
        let cmd = build_command(
            &launch(spec, "primary", &DesiredState::default()),
            Path::new("/models"),
        )
        .unwrap();
        let id = f.path().file_stem().unwrap().to_string_lossy().to_string();
        assert_eq!(cmd.program, "llama-server");
        assert_eq!(
            cmd.args,
            vec![
                "-m",
                &f.path().display().to_string(),
                "--host",
                "127.0.0.1",
                "--port",
                "8081",
                "--alias",
                &id,
                "--ctx-size",
                "4096"
            ]
        );
    }

    #[test]
    fn embedding_slots_get_embedding_and_overrides_apply() {
        let f = model_file();
        let mut d = DesiredState::default();
        d.providers.insert(
            ProviderKind::LlamaCpp,
            ProviderOverride {
                command: Some(vec![
                    "/opt/llama/llama-server".into(),
                    "-t".into(),
                    "1".into(),
                ]),
                env: [
                    ("A".to_string(), "provider".to_string()),
                    ("B".to_string(), "provider".to_string()),
                ]
                .into(),
            },
        );
        let mut spec = SlotSpec::new(
            ProviderKind::LlamaCpp,
            Some(&f.path().display().to_string()),
        );
        spec.env.insert("B".into(), "slot".into());
        let cmd = build_command(&launch(spec, "embed", &d), Path::new("/models")).unwrap();
        assert_eq!(cmd.program, "/opt/llama/llama-server");
        assert_eq!(&cmd.args[..2], ["-t", "1"]);
        assert!(cmd.args.contains(&"--embedding".to_string()));
        assert_eq!(cmd.env["A"], "provider");
        assert_eq!(cmd.env["B"], "slot");
    }

    #[test]
    fn a_missing_model_file_is_a_clear_error() {
        let spec = SlotSpec::new(ProviderKind::LlamaCpp, Some("hf:org/repo/none.gguf"));
        let err = build_command(
            &launch(spec, "primary", &DesiredState::default()),
            Path::new("/models"),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("/models/org/repo/none.gguf"),
            "{err}"
        );
    }

    #[test]
    fn flm_passes_its_model_name() {
        let spec = SlotSpec::new(ProviderKind::Flm, Some("flm:llama3.2:1b"));
        let cmd = build_command(
            &launch(spec, "npu", &DesiredState::default()),
            Path::new("/models"),
        )
        .unwrap();
        assert_eq!(cmd.program, "flm");
        assert_eq!(
            cmd.args,
            vec![
                "serve",
                "llama3.2:1b",
                "--host",
                "127.0.0.1",
                "--port",
                "8081"
            ]
        );
    }

    #[test]
    fn upstreams_have_no_command() {
        let spec = SlotSpec::new(ProviderKind::OpenAiCompatible, None);
        assert!(matches!(
            build_command(
                &launch(spec, "up", &DesiredState::default()),
                Path::new("/m")
            ),
            Err(ProviderError::NoProcess { .. })
        ));
    }
}
