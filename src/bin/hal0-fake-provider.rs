//! hal0-fake-provider: a small OpenAI-compatible model server that looks like llama-server to
//! hal0 (same flags, same /health shape) and produces fault cases on demand: slow loads,
//! failing or flapping health, crashes, slow and cancelled streams, ignored SIGTERM.
//!
//! Every fault knob is a flag and a `FAKE_*` environment variable (see `--help`). With
//! `--events-file PATH` it appends one line per notable event:
//!
//! ```text
//! start pid=<pid> port=<port>
//! request <path> model=<model or ->      (every request except /health)
//! stream-complete | stream-cancelled
//! sigterm | sigterm-ignored
//! crash after-requests=<N> | crash after-ms=<MS> | exit-on-start code=<CODE> pid=<pid>
//! ```
#![forbid(unsafe_code)]

#[path = "fake_provider/cli.rs"]
mod cli;
#[path = "fake_provider/routes.rs"]
mod routes;
#[path = "fake_provider/state.rs"]
mod state;
#[path = "fake_provider/stream.rs"]
mod stream;

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

use crate::state::{AppState, Shared};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let started = Instant::now();
    let args = cli::Args::parse();
    let pid = std::process::id();

    if let Some(code) = args.exit_on_start {
        if let Some(path) = &args.events_file {
            let line = format!("exit-on-start code={code} pid={pid}\n");
            let _ = state::open_events(path).and_then(|mut f| f.write_all(line.as_bytes()));
        }
        eprintln!("fake-provider: --exit-on-start, exiting with code {code} pid={pid}");
        std::process::exit(code);
    }

    let listener = TcpListener::bind((args.host.as_str(), args.port))
        .await
        .with_context(|| format!("binding {}:{}", args.host, args.port))?;
    let addr = listener.local_addr()?;
    let state: Shared = Arc::new(AppState::new(args, addr.port(), started).context("events file")?);

    // Installed before the startup line so a SIGTERM sent after it is always seen.
    let sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    tokio::spawn(on_sigterm(state.clone(), sigterm));
    if let Some(ms) = state.args.crash_after_ms {
        tokio::spawn(crash_after(state.clone(), started, ms));
    }

    state.event(&format!("start pid={pid} port={}", addr.port()));
    eprintln!("fake-provider listening on {addr} pid={pid}");
    axum::serve(listener, routes::router(state)).await?;
    Ok(())
}

async fn on_sigterm(state: Shared, mut sigterm: tokio::signal::unix::Signal) {
    while sigterm.recv().await.is_some() {
        if state.args.ignore_sigterm {
            state.event("sigterm-ignored");
            eprintln!("fake-provider: SIGTERM ignored (--ignore-sigterm)");
            continue;
        }
        state.event("sigterm");
        eprintln!("fake-provider: SIGTERM, exiting");
        std::process::exit(0);
    }
}

async fn crash_after(state: Shared, started: Instant, ms: u64) {
    tokio::time::sleep_until((started + Duration::from_millis(ms)).into()).await;
    state.event(&format!("crash after-ms={ms}"));
    eprintln!("fake-provider: crashing after {ms} ms");
    std::process::exit(1);
}
