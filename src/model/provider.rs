//! Which providers exist and which roles (OpenAI endpoint families) each can serve.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A provider: the kind of model server a slot runs.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub enum ProviderKind {
    /// llama.cpp's `llama-server`: chat, completions, embeddings, rerank (CPU, Vulkan, ROCm).
    #[serde(rename = "llama.cpp")]
    LlamaCpp,
    /// FastFlowLM on the AMD XDNA NPU: chat.
    #[serde(rename = "flm")]
    Flm,
    /// Moonshine / Whisper-style speech-to-text server.
    #[serde(rename = "moonshine")]
    Moonshine,
    /// Kokoro text-to-speech server.
    #[serde(rename = "kokoro")]
    Kokoro,
    /// An external OpenAI-compatible upstream: no process, only a route.
    #[serde(rename = "openai-compatible")]
    OpenAiCompatible,
}

impl ProviderKind {
    pub const ALL: [ProviderKind; 5] = [
        ProviderKind::LlamaCpp,
        ProviderKind::Flm,
        ProviderKind::Moonshine,
        ProviderKind::Kokoro,
        ProviderKind::OpenAiCompatible,
    ];

    /// The name used in `hal0.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::LlamaCpp => "llama.cpp",
            ProviderKind::Flm => "flm",
            ProviderKind::Moonshine => "moonshine",
            ProviderKind::Kokoro => "kokoro",
            ProviderKind::OpenAiCompatible => "openai-compatible",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// Roles this provider can serve; the first is its default.
    pub fn roles(self) -> &'static [Role] {
        match self {
            ProviderKind::LlamaCpp => &[Role::Chat, Role::Embeddings, Role::Rerank],
            ProviderKind::Flm => &[Role::Chat],
            ProviderKind::Moonshine => &[Role::SpeechToText],
            ProviderKind::Kokoro => &[Role::TextToSpeech],
            ProviderKind::OpenAiCompatible => &[
                Role::Chat,
                Role::Embeddings,
                Role::Rerank,
                Role::SpeechToText,
                Role::TextToSpeech,
            ],
        }
    }

    /// Whether this provider runs a local process (everything but external upstreams).
    pub fn runs_process(self) -> bool {
        self != ProviderKind::OpenAiCompatible
    }

    /// Whether a slot with this provider must name a `model`.
    pub fn needs_model(self) -> bool {
        self.runs_process()
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a slot serves: the family of `/v1` endpoints it answers.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// `/v1/chat/completions`, `/v1/completions`.
    Chat,
    /// `/v1/embeddings`.
    Embeddings,
    /// `/v1/rerank`.
    Rerank,
    /// `/v1/audio/transcriptions`.
    SpeechToText,
    /// `/v1/audio/speech`.
    TextToSpeech,
}

impl Role {
    /// The endpoint family a `/v1` path belongs to, if it is one hal0 knows.
    pub fn of_path(path: &str) -> Option<Role> {
        match path.trim_end_matches('/') {
            "/v1/chat/completions" | "/v1/completions" => Some(Role::Chat),
            "/v1/embeddings" => Some(Role::Embeddings),
            "/v1/rerank" | "/v1/reranking" => Some(Role::Rerank),
            "/v1/audio/transcriptions" | "/v1/audio/translations" => Some(Role::SpeechToText),
            "/v1/audio/speech" => Some(Role::TextToSpeech),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Chat => "chat",
            Role::Embeddings => "embeddings",
            Role::Rerank => "rerank",
            Role::SpeechToText => "speech-to-text",
            Role::TextToSpeech => "text-to-speech",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an external upstream expects its API key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamAuth {
    /// `Authorization: Bearer <key>` (OpenAI, OpenRouter).
    #[default]
    Bearer,
    /// `x-api-key: <key>` (Anthropic-style endpoints).
    XApiKey,
}
