//! Command line of the fake provider: the llama-server flags hal0's argv builder emits, plus the
//! fault knobs. Every fault knob can also be set by a `FAKE_*` environment variable, because
//! hal0 passes environment per slot.

use clap::builder::FalseyValueParser;
use clap::{ArgAction, Parser};

/// A fake OpenAI-compatible model server that behaves like llama-server towards hal0 and
/// produces fault cases on demand (slow loads, failing health, crashes, slow streams).
#[derive(Parser, Debug, Clone)]
#[command(name = "hal0-fake-provider", version)]
pub struct Args {
    /// Address to listen on (llama-server: --host).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,

    /// Port to listen on; 0 picks a free one (llama-server: --port).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,

    /// Model file; only used as the model id when --alias is absent (llama-server: -m).
    #[arg(short = 'm', long = "model", value_name = "PATH")]
    pub model: Option<String>,

    /// Model id served in /v1/models and echoed when a request names no model.
    #[arg(short = 'a', long = "alias", value_name = "ID")]
    pub alias: Option<String>,

    /// Accepted for llama-server compatibility; embeddings are always served.
    #[arg(long = "embedding", visible_alias = "embeddings")]
    pub embedding: bool,

    /// Accepted for llama-server compatibility; ignored.
    #[arg(long = "reranking", visible_alias = "rerank")]
    pub reranking: bool,

    /// Accepted for llama-server compatibility; ignored.
    #[arg(
        short = 't',
        long = "threads",
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub threads: Option<i64>,

    /// Accepted for llama-server compatibility; ignored.
    #[arg(long = "pooling", value_name = "TYPE")]
    pub pooling: Option<String>,

    /// Accepted for llama-server compatibility; ignored.
    #[arg(short = 'c', long = "ctx-size", value_name = "N")]
    pub ctx_size: Option<u64>,

    /// Accepted for llama-server compatibility; ignored.
    #[arg(long = "n-gpu-layers", visible_alias = "gpu-layers", value_name = "N")]
    pub n_gpu_layers: Option<String>,

    /// /health answers 503 "Loading model" (and /v1 endpoints 503 too) until MS after start.
    #[arg(
        long = "load-delay",
        env = "FAKE_LOAD_DELAY_MS",
        value_name = "MS",
        default_value_t = 0
    )]
    pub load_delay_ms: u64,

    /// /health always answers 503.
    #[arg(long = "fail-health", env = "FAKE_FAIL_HEALTH", action = ArgAction::SetTrue,
          value_parser = FalseyValueParser::new())]
    pub fail_health: bool,

    /// /health answers 503 forever once MS have passed since start.
    #[arg(
        long = "health-flap-after",
        env = "FAKE_HEALTH_FLAP_AFTER_MS",
        value_name = "MS"
    )]
    pub health_flap_after_ms: Option<u64>,

    /// Exit(1) shortly (50 ms) after the body of the Nth counted response has been handed to
    /// the connection. Counted: every request except /health that was not refused as loading.
    /// Requests beyond the Nth are never answered.
    #[arg(
        long = "crash-after-requests",
        env = "FAKE_CRASH_AFTER_REQUESTS",
        value_name = "N"
    )]
    pub crash_after_requests: Option<u64>,

    /// Exit(1) MS after start.
    #[arg(
        long = "crash-after-ms",
        env = "FAKE_CRASH_AFTER_MS",
        value_name = "MS"
    )]
    pub crash_after_ms: Option<u64>,

    /// Exit immediately with CODE, before listening (for crash loops).
    #[arg(
        long = "exit-on-start",
        env = "FAKE_EXIT_ON_START",
        value_name = "CODE"
    )]
    pub exit_on_start: Option<i32>,

    /// Delay between streamed chunks (SSE tokens and speech audio chunks).
    #[arg(
        long = "stream-chunk-delay",
        env = "FAKE_STREAM_CHUNK_DELAY_MS",
        value_name = "MS",
        default_value_t = 0
    )]
    pub stream_chunk_delay_ms: u64,

    /// Number of content chunks in a streamed completion.
    #[arg(
        long = "stream-tokens",
        env = "FAKE_STREAM_TOKENS",
        value_name = "N",
        default_value_t = 5
    )]
    pub stream_tokens: u64,

    /// Length of each embedding vector.
    #[arg(
        long = "embedding-dim",
        env = "FAKE_EMBEDDING_DIM",
        value_name = "N",
        default_value_t = 8
    )]
    pub embedding_dim: usize,

    /// Append one line per notable event to this file.
    #[arg(long = "events-file", env = "FAKE_EVENTS_FILE", value_name = "PATH")]
    pub events_file: Option<std::path::PathBuf>,

    /// On SIGTERM write `sigterm-ignored` and keep running (to test SIGKILL escalation).
    #[arg(long = "ignore-sigterm", env = "FAKE_IGNORE_SIGTERM", action = ArgAction::SetTrue,
          value_parser = FalseyValueParser::new())]
    pub ignore_sigterm: bool,
}

impl Args {
    /// The id this server answers to: the alias, else the model path, else `fake-model`.
    pub fn model_id(&self) -> String {
        self.alias
            .clone()
            .or_else(|| self.model.clone())
            .unwrap_or_else(|| "fake-model".to_string())
    }
}
