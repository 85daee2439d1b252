//! `hal0 slot …` and `hal0 model …`: the everyday commands. Slot commands talk to the running
//! hal0 over its management API; `add` and `remove` edit hal0.toml directly (through the same
//! config store) when no hal0 is running. Model commands work on `server.models_dir` directly.
//!
//! - `client`  HTTP client for the daemon: JSON calls and event streams
//! - `sse`     incremental server-sent events parser
//! - `slot`    slot list|status|load|unload|add|remove|logs
//! - `model`   model pull|list

mod client;
mod model;
mod slot;
mod sse;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

pub use client::{ClientError, Daemon};

use crate::model::DesiredState;

/// Where hal0 is and how to talk to it.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// Config file (default: $HAL0_CONFIG, else ./hal0.toml); tells where hal0 listens.
    #[arg(long, short, global = true)]
    pub config: Option<PathBuf>,
    /// hal0's address, like http://127.0.0.1:8080 (default: server.listen of the config).
    #[arg(long, env = "HAL0_URL", global = true)]
    pub url: Option<String>,
    /// Admin token for writes (default: $HAL0_ADMIN_TOKEN, else the variable named by
    /// server.admin_token_env).
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

#[derive(Debug, Subcommand)]
pub enum SlotCommand {
    /// Every slot: state, provider, model, port, pid, memory, last request.
    List {
        /// Print JSON (the API's slot list).
        #[arg(long)]
        json: bool,
    },
    /// One slot in detail.
    Status {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Load a slot and show its state changes until it is ready or failed.
    Load {
        name: String,
        /// Give up waiting after this many seconds (the load goes on).
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
    /// Unload a slot and wait until it is stopped.
    Unload {
        name: String,
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// Add a slot to hal0.toml (through hal0 when it runs, else directly).
    Add {
        name: String,
        #[arg(long)]
        provider: String,
        #[arg(long)]
        model: String,
        /// Like 10m, 30s, 1h.
        #[arg(long)]
        idle_timeout: Option<String>,
        /// cpu, igpu or npu.
        #[arg(long)]
        device: Option<String>,
    },
    /// Remove a slot from hal0.toml (through hal0 when it runs, else directly).
    Remove { name: String },
    /// A slot's provider output.
    Logs {
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
    /// Config file (default: $HAL0_CONFIG, else ./hal0.toml); tells server.models_dir.
    #[arg(long, short, global = true)]
    pub config: Option<PathBuf>,
    /// Where models live (default: server.models_dir of the config).
    #[arg(long, global = true)]
    pub models_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: ModelCommand,
}

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Download an hf:org/repo/file model into models_dir (resumes an interrupted download).
    Pull {
        model: String,
        /// Base URL of the model hub (default: $HF_ENDPOINT, else the public Hugging Face hub).
        #[arg(long)]
        endpoint: Option<String>,
    },
    /// The models in models_dir, with their size and the slots that use them.
    List {
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
