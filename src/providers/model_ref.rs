//! Model refs: `file:/abs/path.gguf` and `/abs/path.gguf` resolve directly; `hf:org/repo/file`
//! resolves to `<models_dir>/org/repo/file`; anything else (`flm:llama3.2:1b`, `kokoro-82m`) is a
//! name the provider understands itself.

use std::path::{Path, PathBuf};

/// A parsed model ref.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelRef {
    /// A local file.
    File(PathBuf),
    /// A file from a Hugging Face-style repository, stored under `models_dir`.
    Hf { repo: String, file: String },
    /// A name passed to the provider as is.
    Named(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelRefError {
    #[error("model ref {0:?}: file paths must be absolute (file:/abs/path.gguf)")]
    RelativePath(String),
    #[error(
        "model ref {0:?}: hf refs are hf:org/repo/file (e.g. hf:bartowski/Qwen2.5-7B-Instruct-GGUF/Qwen2.5-7B-Instruct-Q4_K_M.gguf)"
    )]
    BadHf(String),
    #[error("model file {path} for {model:?} does not exist{hint}")]
    Missing {
        model: String,
        path: PathBuf,
        hint: String,
    },
}

impl ModelRef {
    pub fn parse(s: &str) -> Result<Self, ModelRefError> {
        if let Some(rest) = s.strip_prefix("file:") {
            let p = expand_home(rest);
            return if p.is_absolute() {
                Ok(ModelRef::File(p))
            } else {
                Err(ModelRefError::RelativePath(s.into()))
            };
        }
        if s.starts_with('/') || s.starts_with("~/") {
            return Ok(ModelRef::File(expand_home(s)));
        }
        if let Some(rest) = s.strip_prefix("hf:") {
            let parts: Vec<&str> = rest.splitn(3, '/').collect();
            return match parts.as_slice() {
                [org, repo, file]
                    if !org.is_empty()
                        && !repo.is_empty()
                        && !file.is_empty()
                        && !file.contains("..") =>
                {
                    Ok(ModelRef::Hf {
                        repo: format!("{org}/{repo}"),
                        file: (*file).to_string(),
                    })
                }
                _ => Err(ModelRefError::BadHf(s.into())),
            };
        }
        Ok(ModelRef::Named(s.to_string()))
    }

    /// The local file this ref names, if it names one.
    pub fn local_path(&self, models_dir: &Path) -> Option<PathBuf> {
        match self {
            ModelRef::File(p) => Some(p.clone()),
            ModelRef::Hf { repo, file } => Some(models_dir.join(repo).join(file)),
            ModelRef::Named(_) => None,
        }
    }

    /// The local file, which must exist.
    pub fn existing_path(
        &self,
        original: &str,
        models_dir: &Path,
    ) -> Result<Option<PathBuf>, ModelRefError> {
        let Some(path) = self.local_path(models_dir) else {
            return Ok(None);
        };
        if path.is_file() {
            return Ok(Some(path));
        }
        let hint = match self {
            ModelRef::Hf { .. } => format!(
                " (hf: refs live under server.models_dir = {})",
                models_dir.display()
            ),
            _ => String::new(),
        };
        Err(ModelRefError::Missing {
            model: original.to_string(),
            path,
            hint,
        })
    }
}

/// Expands a leading `~/` with `$HOME`.
pub fn expand_home(p: &str) -> PathBuf {
    match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_parse() {
        assert_eq!(
            ModelRef::parse("file:/m/a.gguf").unwrap(),
            ModelRef::File("/m/a.gguf".into())
        );
        assert_eq!(
            ModelRef::parse("/m/a.gguf").unwrap(),
            ModelRef::File("/m/a.gguf".into())
        );
        assert_eq!(
            ModelRef::parse("hf:org/repo/sub/a.gguf").unwrap(),
            ModelRef::Hf {
                repo: "org/repo".into(),
                file: "sub/a.gguf".into()
            }
        );
        assert_eq!(
            ModelRef::parse("flm:llama3.2:1b").unwrap(),
            ModelRef::Named("flm:llama3.2:1b".into())
        );
        assert!(matches!(
            ModelRef::parse("file:rel.gguf"),
            Err(ModelRefError::RelativePath(_))
        ));
        assert!(matches!(
            ModelRef::parse("hf:org/repo"),
            Err(ModelRefError::BadHf(_))
        ));
        assert!(matches!(
            ModelRef::parse("hf:org/repo/../x"),
            Err(ModelRefError::BadHf(_))
        ));
    }

    #[test]
    fn hf_refs_resolve_under_models_dir_and_missing_files_are_named() {
        let r = ModelRef::parse("hf:org/repo/a.gguf").unwrap();
        assert_eq!(
            r.local_path(Path::new("/models")),
            Some(PathBuf::from("/models/org/repo/a.gguf"))
        );
        let err = r
            .existing_path("hf:org/repo/a.gguf", Path::new("/nonexistent"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/org/repo/a.gguf"), "{err}");
        assert!(err.contains("models_dir"), "{err}");
    }
}
