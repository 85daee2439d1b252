//! Model downloads started through the API (the dashboard's Pull): `POST /api/models/pull`
//! starts one in the background and answers 202 (accepted, not done) with its progress;
//! `GET /api/models/pulls` lists every pull since hal0 started, with bytes so far, the total,
//! and how it ended. A pull of a model already being pulled joins that one.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiState};
use crate::providers::{ModelRef, expand_home};

/// Every pull since hal0 started, by model ref.
#[derive(Debug, Clone, Default)]
pub struct Pulls(Arc<Mutex<BTreeMap<String, PullView>>>);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PullState {
    Running,
    Done,
    Failed,
}

/// One pull and how far it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PullView {
    /// The `hf:org/repo/file` ref.
    pub model: String,
    pub state: PullState,
    /// Bytes on disk so far.
    pub downloaded: u64,
    /// The file's size, once the server said.
    pub total: Option<u64>,
    /// Where the file is (when done).
    pub path: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    pub started_unix_ms: u64,
}

/// `GET /api/models/pulls`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PullList {
    pub pulls: Vec<PullView>,
}

/// The body of `POST /api/models/pull`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PullRequest {
    /// An `hf:org/repo/file` model ref.
    pub model: String,
}

impl Pulls {
    fn update(&self, model: &str, f: impl FnOnce(&mut PullView)) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = map.get_mut(model) {
            f(v);
        }
    }

    pub fn list(&self) -> PullList {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        PullList {
            pulls: map.values().cloned().collect(),
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub async fn list(State(state): State<ApiState>) -> Json<PullList> {
    Json(state.pulls.list())
}

pub async fn start(
    State(state): State<ApiState>,
    body: Bytes,
) -> Result<(StatusCode, Json<PullView>), ApiError> {
    let req: PullRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            "invalid_json",
            format!("the body must be {{\"model\": \"hf:org/repo/file.gguf\"}}: {e}"),
        )
    })?;
    let model = req.model.trim().to_string();
    match ModelRef::parse(&model) {
        Ok(ModelRef::Hf { .. }) => {}
        Ok(_) => {
            return Err(ApiError::bad_request(
                "not_pullable",
                format!(
                    "{model:?} is not an hf: model ref; only hf:org/repo/file models are downloaded (file: models are already on disk)"
                ),
            ));
        }
        Err(e) => return Err(ApiError::bad_request("invalid_model", e.to_string())),
    }
    let view = {
        let mut map = state.pulls.0.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(&model) {
            Some(v) if v.state == PullState::Running => {
                return Ok((StatusCode::ACCEPTED, Json(v.clone())));
            }
            _ => {}
        }
        let v = PullView {
            model: model.clone(),
            state: PullState::Running,
            downloaded: 0,
            total: None,
            path: None,
            error: None,
            started_unix_ms: now_ms(),
        };
        map.insert(model.clone(), v.clone());
        v
    };
    let server = state.desired.borrow().server.clone();
    let models_dir = expand_home(&server.models_dir);
    let endpoint = server
        .hf_endpoint
        .clone()
        .unwrap_or_else(crate::pull::default_endpoint);
    let pulls = state.pulls.clone();
    tokio::spawn(async move {
        let progress = {
            let pulls = pulls.clone();
            let model = model.clone();
            move |p: crate::pull::Progress| {
                pulls.update(&model, |v| {
                    v.downloaded = p.downloaded;
                    v.total = p.total.or(v.total);
                });
            }
        };
        let result = crate::pull::pull(&model, &models_dir, &endpoint, &progress).await;
        match result {
            Ok(done) => {
                tracing::info!(model = %model, path = %done.path.display(), "model pulled through the API");
                pulls.update(&model, |v| {
                    v.state = PullState::Done;
                    v.downloaded = done.bytes;
                    v.total = Some(done.bytes);
                    v.path = Some(done.path.display().to_string());
                });
            }
            Err(e) => {
                tracing::warn!(model = %model, "pull failed: {e}");
                pulls.update(&model, |v| {
                    v.state = PullState::Failed;
                    v.error = Some(e.to_string());
                });
            }
        }
    });
    Ok((StatusCode::ACCEPTED, Json(view)))
}
