//! From a `LaunchSpec` to what a supervisor starts: the provider's command, when it counts as
//! ready, and a download to finish first. Model refs are resolved here, against the files on
//! this machine.

use crate::model::ProviderKind;
use crate::providers::{self, Command, ModelRef, ProviderError};
use crate::runtime::{LaunchSpec, ModelStore};

use super::{AnswerCheck, PullJob, Readiness};

/// What a supervisor needs for one start.
pub struct Prepared {
    pub command: Command,
    pub ready: Readiness,
    /// A missing model to download before starting.
    pub pull: Option<PullJob>,
}

/// Resolves the model and builds the command. A missing `hf:` model is downloaded first when
/// `pull_on_load` is on (the command is then built for the file that will be there);
/// otherwise a missing model file is an error naming it.
pub fn prepare(launch: &LaunchSpec) -> Result<Prepared, ProviderError> {
    let spec = &launch.process;
    let store = &launch.models;
    let missing_hf = spec
        .model
        .as_deref()
        .filter(|m| is_missing_hf(m, store) && store.pull_on_load);
    let (command, pull) = match missing_hf {
        Some(model) => {
            let command = providers::build_command_with(spec, "127.0.0.1", |r, _| {
                Ok(r.local_path(&store.dir))
            })?;
            let job = PullJob {
                model: model.to_string(),
                models_dir: store.dir.clone(),
                endpoint: store
                    .hub
                    .clone()
                    .unwrap_or_else(crate::pull::default_endpoint),
            };
            (command, Some(job))
        }
        None => (providers::build_command(spec, &store.dir)?, None),
    };
    let ready = Readiness {
        health_path: providers::health_path(spec.provider).to_string(),
        answer: launch
            .probe
            .clone()
            .map(|(probe, model)| AnswerCheck { probe, model }),
        sleeps: spec.provider == ProviderKind::LlamaCpp && spec.sleep_after_secs.is_some(),
    };
    Ok(Prepared {
        command,
        ready,
        pull,
    })
}

/// An `hf:` ref whose file is not in the models dir yet.
fn is_missing_hf(model: &str, store: &ModelStore) -> bool {
    matches!(ModelRef::parse(model), Ok(r @ ModelRef::Hf { .. })
        if r.local_path(&store.dir).is_some_and(|p| !p.is_file()))
}

/// The size of the local file `model` names, if there is one.
pub fn model_size(model: &str, store: &ModelStore) -> Option<u64> {
    let path = ModelRef::parse(model).ok()?.local_path(&store.dir)?;
    std::fs::metadata(path).ok().map(|m| m.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DesiredState, SlotName, SlotSpec};

    fn launch(model: &str, dir: &std::path::Path, pull_on_load: bool) -> LaunchSpec {
        let slot = SlotName::parse("chat").unwrap();
        let spec = SlotSpec::new(ProviderKind::LlamaCpp, Some(model));
        LaunchSpec {
            generation: 1,
            process: crate::model::LaunchSpec::new(&DesiredState::default(), &slot, &spec, 9001),
            models: ModelStore {
                dir: dir.to_path_buf(),
                pull_on_load,
                hub: Some("http://127.0.0.1:9/".into()),
            },
            probe: None,
            memory: 0,
        }
    }

    #[test]
    fn a_missing_hf_model_is_pulled_first_only_with_pull_on_load() {
        let dir = tempfile::tempdir().unwrap();
        let model = "hf:org/repo/m.gguf";
        let p = prepare(&launch(model, dir.path(), true)).unwrap();
        let job = p.pull.expect("a pull before the start");
        assert_eq!(job.model, model);
        assert_eq!(job.endpoint, "http://127.0.0.1:9/");
        let argv = p.command.argv();
        let file = dir.path().join("org/repo/m.gguf").display().to_string();
        assert!(argv.contains(&file), "{argv:?}");
        assert_eq!(p.ready.health_path, "/health");

        let err = prepare(&launch(model, dir.path(), false))
            .err()
            .expect("without pull_on_load a missing model is an error");
        assert!(err.to_string().contains("m.gguf"), "{err}");
    }

    #[test]
    fn a_present_hf_model_is_not_pulled_and_its_size_is_known() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("org/repo")).unwrap();
        std::fs::write(dir.path().join("org/repo/m.gguf"), [0u8; 10]).unwrap();
        let l = launch("hf:org/repo/m.gguf", dir.path(), true);
        assert!(prepare(&l).unwrap().pull.is_none());
        assert_eq!(model_size("hf:org/repo/m.gguf", &l.models), Some(10));
        assert_eq!(model_size("hf:org/repo/other.gguf", &l.models), None);
    }
}
