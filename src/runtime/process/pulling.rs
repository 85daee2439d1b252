//! Downloading a slot's model before its process starts (`server.pull_on_load`). The pull runs
//! as its own task so the supervisor stays responsive: a stop or a new start aborts it, and the
//! partial file stays so the next attempt resumes.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::core::Event;
use crate::model::SlotName;
use crate::providers::Command;
use crate::runtime::RuntimeEvent;

/// What to download before starting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullJob {
    /// The `hf:` model ref.
    pub model: String,
    pub models_dir: PathBuf,
    /// Base URL of the model hub.
    pub endpoint: String,
}

/// A download in progress, and what to start when it is done.
pub struct Pulling {
    pub generation: u64,
    pub task: JoinHandle<Result<(), String>>,
    pub command: Command,
    pub port: u16,
    pub ready: super::Readiness,
}

/// Progress events go out at most this often.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// Starts the download; progress is reported as `Event::Pulling`.
pub fn begin(
    slot: SlotName,
    generation: u64,
    job: PullJob,
    events: mpsc::UnboundedSender<RuntimeEvent>,
) -> JoinHandle<Result<(), String>> {
    let report = move |downloaded: u64, total: Option<u64>| {
        let _ = events.send(RuntimeEvent {
            slot: slot.clone(),
            event: Event::Pulling {
                generation,
                downloaded,
                total,
            },
        });
    };
    tokio::spawn(async move {
        tracing::info!(model = %job.model, endpoint = %job.endpoint, "pulling model");
        report(0, None);
        let last = std::sync::Mutex::new(Instant::now());
        let progress = |p: crate::pull::Progress| {
            let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
            if last.elapsed() >= PROGRESS_EVERY || p.total == Some(p.downloaded) {
                *last = Instant::now();
                report(p.downloaded, p.total);
            }
        };
        crate::pull::pull(&job.model, &job.models_dir, &job.endpoint, &progress)
            .await
            .map(|_| ())
            .map_err(|e| format!("could not pull {}: {e}", job.model))
    })
}

/// Waits for the download in progress, if any.
pub async fn wait(pulling: &mut Option<Pulling>) -> Result<(), String> {
    match pulling.as_mut() {
        Some(p) => match (&mut p.task).await {
            Ok(r) => r,
            Err(e) => Err(format!("the model download stopped: {e}")),
        },
        None => std::future::pending().await,
    }
}
