//! `hal0 slot …` and `hal0 model …`: the everyday commands. Slot commands talk to the running
//! hal0 over its management API; `add` and `remove` edit hal0.toml directly (through the same
//! config store) when no hal0 is running. Model commands work on `server.models_dir` directly.
//!
//! - `client`  HTTP client for the daemon: JSON calls and event streams
//! - `sse`     incremental server-sent events parser
//! - `slot`    slot list|status|load|unload|add|edit|remove|logs
//! - `fields`  `--set key=value`, `--env`, … → slot fields
//! - `model`   model pull|list

mod client;
mod fields;
mod model;
mod slot;
mod sse;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

pub use client::{ClientError, Daemon};

use crate::model::{DesiredState, Device, ProviderKind};

/// Where hal0 is and how to talk to it.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// Config file [default: $HAL0_CONFIG, else ./hal0.toml if it exists, else
    /// ~/.config/hal0/hal0.toml]; its server.listen says where hal0 is.
    #[arg(long, short, global = true)]
    pub config: Option<PathBuf>,
    /// hal0's address, like http://127.0.0.1:8080 [default: server.listen of the config].
    #[arg(long, env = "HAL0_URL", hide_env_values = true, global = true)]
    pub url: Option<String>,
    /// Admin token for writes [default: $HAL0_ADMIN_TOKEN, else the variable named by
    /// server.admin_token_env].
    #[arg(long, env = "HAL0_ADMIN_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
}

#[derive(Debug, Args)]
pub struct SlotArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(subcommand)]
    pub command: SlotCommand,
}

const NAME_HELP: &str = "The slot's name: a lowercase letter, then lowercase letters, digits, '-' or '_' \
(at most 50). primary (chat), embed (embeddings), stt (speech-to-text) and tts (text-to-speech) \
are the built-in slots; clients ask for a slot by this name in \"model\".";

const MODEL_HELP: &str = "What the slot serves: file:/abs/path/model.gguf (or an absolute path), \
hf:org/repo/file.gguf (downloaded into server.models_dir by `hal0 model pull`, or on load with \
server.pull_on_load), or a provider's own model name (flm:llama3.2:1b, a moonshine or kokoro \
model). Not for openai-compatible slots, which use --upstream.";

const PROVIDER_HELP: &str = "The model server: llama.cpp (chat, embeddings, rerank), \
flm (chat on the NPU), moonshine (speech-to-text), kokoro (text-to-speech), \
openai-compatible (an external upstream, no process)";

const SET_HELP: &str = "Any slot field as KEY=VALUE, the value as in hal0.toml (quotes optional \
for text): --set priority=80 --set pinned=true --set 'args=[\"-c\", \"8192\"]'. Fields: \
provider, model, role, idle_timeout, device, args, env, aliases, port, autoload, priority, \
pinned, memory, upstream, api_key_env, auth, models";

#[derive(Debug, Subcommand)]
pub enum SlotCommand {
    /// Every slot: state, provider, model, port, pid, memory, last request; and the config file
    /// the running hal0 reads.
    List {
        /// Print JSON (the API's slot list).
        #[arg(long)]
        json: bool,
    },
    /// One slot in detail.
    Status {
        #[arg(help = "The slot's name (see `hal0 slot list`)")]
        name: String,
        /// Print JSON (the API's view of the slot).
        #[arg(long)]
        json: bool,
    },
    /// Load a slot and show its state changes until it is ready or failed.
    Load {
        #[arg(help = "The slot's name (see `hal0 slot list`)")]
        name: String,
        /// Give up waiting after this many seconds (the load goes on).
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
    /// Unload a slot and wait until it is stopped.
    Unload {
        #[arg(help = "The slot's name (see `hal0 slot list`)")]
        name: String,
        /// Give up waiting after this many seconds.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// Add a slot to the config (through the running hal0, else by editing the file).
    #[command(after_help = "Examples:
  hal0 slot add fast --provider llama.cpp --model hf:bartowski/Qwen2.5-0.5B-Instruct-GGUF/Qwen2.5-0.5B-Instruct-Q4_K_M.gguf --alias autocomplete --idle-timeout 30m
  hal0 slot add big --provider llama.cpp --model file:/srv/models/big.gguf --arg=-c --arg=16384 --env HIP_VISIBLE_DEVICES=0 --device igpu
  hal0 slot add router --provider openai-compatible --upstream https://openrouter.ai/api/v1 --set api_key_env=OPENROUTER_API_KEY --set 'models=[\"anthropic/claude-3.5-sonnet\"]'

docs/slots.md is the slot authoring guide.")]
    Add {
        #[arg(help = NAME_HELP)]
        name: String,
        #[arg(long, help = PROVIDER_HELP, value_parser = clap::builder::PossibleValuesParser::new(ProviderKind::ALL.map(ProviderKind::as_str)))]
        provider: String,
        #[arg(long, help = MODEL_HELP)]
        model: Option<String>,
        /// openai-compatible only: the upstream's base URL, like https://api.example.com/v1.
        #[arg(long)]
        upstream: Option<String>,
        /// After this long without requests the slot becomes idle (unloaded when memory is
        /// needed): like 30s, 10m, 1h; 0s keeps it ready [default: 10m].
        #[arg(long)]
        idle_timeout: Option<String>,
        /// Where the provider runs [default: cpu].
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(Device::ALL.map(Device::as_str)))]
        device: Option<String>,
        /// An extra argument for the provider's command line (repeat it; use --arg=-c for
        /// values that start with '-').
        #[arg(long = "arg", value_name = "ARG", allow_hyphen_values = true)]
        args: Vec<String>,
        /// An environment variable for the provider (repeat it).
        #[arg(long = "env", value_name = "NAME=VALUE")]
        env: Vec<String>,
        /// Another model name that routes to this slot (repeat it).
        #[arg(long = "alias", value_name = "NAME")]
        aliases: Vec<String>,
        #[arg(long = "set", value_name = "KEY=VALUE", help = SET_HELP)]
        set: Vec<String>,
    },
    /// Change fields of a slot in place, based on the config's current revision (a concurrent
    /// edit makes it fail instead of being overwritten).
    #[command(after_help = "Examples:
  hal0 slot edit primary --set idle_timeout=30m --set priority=80
  hal0 slot edit primary --set 'aliases=[\"chat\", \"gpt-4o-mini\"]' --unset device
  hal0 slot edit fast --revision 3f2a9c1d0b7e4a55 --set pinned=true   # fail if the file changed since that revision")]
    Edit {
        #[arg(help = "The slot's name (see `hal0 slot list`)")]
        name: String,
        #[arg(long = "set", value_name = "KEY=VALUE", help = SET_HELP)]
        set: Vec<String>,
        /// Remove a field, so its default applies (repeat it).
        #[arg(long = "unset", value_name = "KEY")]
        unset: Vec<String>,
        /// Only change the file if it is still at this revision (from `hal0 slot list` or
        /// /api/slots) [default: the revision read just before the edit].
        #[arg(long)]
        revision: Option<String>,
    },
    /// Remove a slot from the config (through the running hal0, else by editing the file).
    Remove {
        #[arg(help = "The slot's name (see `hal0 slot list`)")]
        name: String,
    },
    /// A slot's provider output.
    Logs {
        #[arg(help = "The slot's name (see `hal0 slot list`)")]
        name: String,
        /// Keep printing new lines.
        #[arg(long, short)]
        follow: bool,
        /// How many of the last lines.
        #[arg(long, default_value_t = 200)]
        tail: usize,
    },
}

#[derive(Debug, Args)]
pub struct ModelArgs {
    /// Config file [default: $HAL0_CONFIG, else ./hal0.toml if it exists, else
    /// ~/.config/hal0/hal0.toml]; its server.models_dir says where models go.
    #[arg(long, short, global = true)]
    pub config: Option<PathBuf>,
    /// Where models live [default: server.models_dir of the config].
    #[arg(long, global = true)]
    pub models_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: ModelCommand,
}

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Download an hf:org/repo/file model into models_dir (resumes an interrupted download).
    Pull {
        /// The model, as hf:org/repo/file.gguf.
        model: String,
        /// Base URL of the model hub (default: $HF_ENDPOINT, else the public Hugging Face hub).
        #[arg(long)]
        endpoint: Option<String>,
    },
    /// The models in models_dir, with their size and the slots that use them.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `hal0 slot …`
pub fn slot(args: SlotArgs) -> ExitCode {
    run(slot::run(args))
}

/// `hal0 model …`
pub fn model(args: ModelArgs) -> ExitCode {
    run(model::run(args))
}

fn run(f: impl Future<Output = anyhow::Result<ExitCode>>) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hal0: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(f) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hal0: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The config file, if it can be read and is valid (the CLI works without one).
fn load_config(path: &std::path::Path) -> Option<DesiredState> {
    crate::config::load(path).ok()
}

/// `http://` + `server.listen`, with a wildcard address turned into loopback.
pub fn url_of_listen(listen: &str) -> String {
    let addr = listen
        .replace("0.0.0.0:", "127.0.0.1:")
        .replace("[::]:", "[::1]:");
    format!("http://{addr}")
}
