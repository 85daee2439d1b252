//! The config file's state: its revision and whether its last edit was applied.

use axum::Json;
use axum::extract::State;

use super::ApiState;
use super::views::ConfigState;

pub async fn state(State(state): State<ApiState>) -> Json<ConfigState> {
    Json(state.config_state())
}

/// The same document; `errors` is empty when the file's last version was applied.
pub async fn errors(State(state): State<ApiState>) -> Json<ConfigState> {
    Json(state.config_state())
}
