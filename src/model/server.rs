//! `[server]`: where hal0 listens and the limits its slots share.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ByteSize, HumanDuration};

/// Server-wide settings. Every field has a default, so `[server]` may be omitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Address of the `/v1` gateway, `/api`, the dashboard and `/metrics`.
    pub listen: String,
    /// Inclusive range slot ports are taken from; it caps how many slots can exist.
    pub port_range: [u16; 2],
    /// Where `hf:` model refs live.
    pub models_dir: String,
    /// Memory all loaded slots may use together; unset means no limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_budget: Option<ByteSize>,
    /// Names of environment variables that each hold one accepted `/v1` API key.
    pub api_keys: Vec<String>,
    /// A file with one accepted `/v1` API key per line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_keys_file: Option<String>,
    /// Name of the environment variable holding the admin token for `/api` writes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_token_env: Option<String>,
    /// How long a load may take before it fails (and waiting requests get a 504).
    pub load_timeout: HumanDuration,
    /// How long a provider gets to exit after SIGTERM before its process group is killed.
    pub stop_grace: HumanDuration,
    /// Unload a slot as soon as it becomes idle, instead of only when its memory is needed.
    pub unload_idle: bool,
    /// Requests that may wait for one slot to load; more get a 429.
    pub max_queue: u32,
    /// The longest a request waits for its slot's turn when slots cannot be loaded together:
    /// past it, the slot in the way is swapped out even within its `min_residency`.
    pub max_wait: HumanDuration,
    /// Largest `/v1` request body accepted (larger ones get a 413).
    pub max_body: ByteSize,
    /// Download a slot's missing `hf:` model when it is loaded (state `pulling`).
    pub pull_on_load: bool,
    /// Base URL `hf:` models are downloaded from; unset: `$HF_ENDPOINT`, else the public hub.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hf_endpoint: Option<String>,
    /// Where hal0 keeps runtime state (pid files used to clean up after a crash).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<String>,
    /// Host names (besides loopback names and addresses, IP addresses and the listen address)
    /// `/api` is served under; other `Host` headers are refused (DNS rebinding). `*.example`
    /// matches every name under `example`.
    pub allowed_hosts: Vec<String>,
    /// How long a client may take to send a request's headers (counted from its first byte).
    pub header_timeout: HumanDuration,
    /// How long a client may take to send a request's whole body.
    pub body_timeout: HumanDuration,
    /// A connection on which nothing moves for this long is closed: between requests, or while
    /// hal0 waits for the client to take the response (a stream that is flowing is not idle).
    pub client_idle_timeout: HumanDuration,
    /// Most client connections open at once (lowered to what the open-file limit allows);
    /// more wait to be accepted.
    pub max_connections: u32,
    /// Threads serving client connections, each with its own event loop; unset (or `"auto"`):
    /// one per core.
    pub workers: Option<u32>,
    /// After SIGTERM, how long requests in flight may take to finish before hal0 ends them
    /// (streams get an error event) and stops the slots.
    pub drain_timeout: HumanDuration,
    /// Before a slot restarts for a changed launch setting, how long requests in flight may
    /// take to finish (new ones wait for the restarted slot).
    pub restart_drain: HumanDuration,
}

/// Default `server.max_wait`.
pub const DEFAULT_MAX_WAIT_SECS: u64 = 60;

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            listen: "127.0.0.1:8080".to_string(),
            port_range: [8081, 8099],
            models_dir: "~/.local/share/hal0/models".to_string(),
            memory_budget: None,
            api_keys: Vec::new(),
            api_keys_file: None,
            admin_token_env: None,
            load_timeout: HumanDuration::from_secs(300),
            stop_grace: HumanDuration::from_secs(10),
            unload_idle: false,
            max_queue: 64,
            max_wait: HumanDuration::from_secs(DEFAULT_MAX_WAIT_SECS),
            pull_on_load: false,
            hf_endpoint: None,
            max_body: ByteSize::mib(64),
            state_dir: None,
            allowed_hosts: Vec::new(),
            header_timeout: HumanDuration::from_secs(10),
            body_timeout: HumanDuration::from_secs(60),
            client_idle_timeout: HumanDuration::from_secs(60),
            max_connections: 1024,
            workers: None,
            drain_timeout: HumanDuration::from_secs(10),
            restart_drain: HumanDuration::from_secs(10),
        }
    }
}

impl ServerSettings {
    /// Number of ports in `port_range` (0 when the range is reversed).
    pub fn port_capacity(&self) -> usize {
        let [lo, hi] = self.port_range;
        if hi < lo { 0 } else { (hi - lo) as usize + 1 }
    }
}
