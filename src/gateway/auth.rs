//! `/v1` API keys. `server.api_keys` names environment variables that each hold one accepted
//! key; `server.api_keys_file` holds one key per line, optionally followed by the models that
//! key may use (`sk-abc  fast,embed`). With no key configured, `/v1` is open. Keys are kept
//! only as SHA-256 digests and never logged.

use std::path::Path;

use axum::http::{HeaderMap, StatusCode, header};
use sha2::{Digest, Sha256};

use super::OpenAiError;
use crate::model::Route;

/// One accepted key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEntry {
    digest: [u8; 32],
    /// Where it came from, for messages: `env HAL0_API_KEY` or `keys.txt:3`.
    pub source: String,
    /// The slots or model names this key may use; `None`: all.
    pub models: Option<Vec<String>>,
}

/// Every accepted key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    keys: Vec<KeyEntry>,
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

impl KeySet {
    /// Reads the keys. Problems (an unset variable, an unreadable file) are returned as
    /// warnings; the keys that could be read still apply, so a typo never opens `/v1`.
    pub fn load(api_keys: &[String], api_keys_file: Option<&Path>) -> (KeySet, Vec<String>) {
        let mut keys = Vec::new();
        let mut warnings = Vec::new();
        for name in api_keys {
            match std::env::var(name) {
                Ok(v) if !v.trim().is_empty() => keys.push(KeyEntry {
                    digest: digest(v.trim()),
                    source: format!("env {name}"),
                    models: None,
                }),
                _ => warnings.push(format!(
                    "server.api_keys: environment variable {name} is not set or empty"
                )),
            }
        }
        if let Some(path) = api_keys_file {
            match std::fs::read_to_string(path) {
                Ok(text) => keys.extend(parse_file(&path.display().to_string(), &text)),
                Err(e) => warnings.push(format!(
                    "server.api_keys_file: cannot read {}: {e}",
                    path.display()
                )),
            }
        }
        // A configured source that yields nothing must not leave /v1 open.
        let configured = !api_keys.is_empty() || api_keys_file.is_some();
        if configured && keys.is_empty() {
            keys.push(KeyEntry {
                digest: [0; 32],
                source: "no usable key".into(),
                models: Some(Vec::new()),
            });
        }
        (KeySet { keys }, warnings)
    }

    pub fn is_open(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key presented in `Authorization: Bearer <key>` (or `x-api-key`), if accepted.
    pub fn check(&self, headers: &HeaderMap) -> Result<Option<&KeyEntry>, OpenAiError> {
        if self.is_open() {
            return Ok(None);
        }
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
            .map(str::trim);
        let Some(presented) = presented else {
            return Err(OpenAiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                "this hal0 needs an API key: send `Authorization: Bearer <key>`",
            )
            .code("missing_api_key"));
        };
        let d = digest(presented);
        self.keys
            .iter()
            .find(|k| k.digest == d && k.digest != [0; 32])
            .map(Some)
            .ok_or_else(|| {
                OpenAiError::new(
                    StatusCode::UNAUTHORIZED,
                    "invalid_request_error",
                    "the API key is not valid",
                )
                .code("invalid_api_key")
            })
    }
}

impl KeyEntry {
    /// Whether this key may use `route` when asked for `requested`.
    pub fn allows(&self, requested: &str, route: &Route) -> bool {
        self.models
            .as_ref()
            .is_none_or(|m| m.iter().any(|x| x == requested || x == route.slot.as_str()))
    }

    pub fn forbidden(&self, requested: &str) -> OpenAiError {
        OpenAiError::new(
            StatusCode::FORBIDDEN,
            "invalid_request_error",
            format!("this API key may not use model {requested:?}"),
        )
        .param("model")
        .code("model_not_allowed")
    }
}

fn parse_file(name: &str, text: &str) -> Vec<KeyEntry> {
    text.lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                return None;
            }
            let mut parts = line.split_whitespace();
            let key = parts.next()?;
            let models = parts.next().map(|m| {
                m.split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            });
            Some(KeyEntry {
                digest: digest(key),
                source: format!("{name}:{}", i + 1),
                models,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, auth.parse().unwrap());
        h
    }

    #[test]
    fn the_file_gives_keys_with_optional_model_lists() {
        let keys = parse_file("k", "# comment\nsk-one\n\nsk-two fast,embed\n");
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].models, None);
        assert_eq!(
            keys[1].models,
            Some(vec!["fast".to_string(), "embed".to_string()])
        );
        assert_eq!(keys[1].source, "k:4");
    }

    #[test]
    fn keys_are_checked() {
        let set = KeySet {
            keys: parse_file("k", "sk-one\n"),
        };
        assert!(
            set.check(&HeaderMap::new())
                .is_err_and(|e| e.status == StatusCode::UNAUTHORIZED)
        );
        assert!(
            set.check(&headers("Bearer sk-two"))
                .is_err_and(|e| e.code == Some("invalid_api_key"))
        );
        assert!(set.check(&headers("Bearer sk-one")).unwrap().is_some());
        assert!(
            KeySet::default()
                .check(&HeaderMap::new())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_configured_but_unset_key_keeps_v1_closed() {
        let (set, warnings) = KeySet::load(&["HAL0_TEST_SURELY_UNSET_VAR".into()], None);
        assert!(!set.is_open());
        assert_eq!(warnings.len(), 1);
        assert!(set.check(&headers("Bearer ")).is_err());
    }
}
