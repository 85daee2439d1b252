//! The file source: watches `hal0.toml` with `notify` on its directory (editors and ConfigMaps
//! replace files by rename or symlink swap, which a watch on the file itself would miss) plus a
//! poll fallback, debounces bursts of events, and publishes each valid new version. An invalid
//! edit is logged with every error and changes nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};

use crate::config::{self, ConfigErrors};
use crate::model::DesiredState;

/// Longest time a change waits for its burst of events to end.
const MAX_DEBOUNCE: Duration = Duration::from_secs(1);

/// The outcome of the last read of the file, for status pages and the API.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigReport {
    /// Bumped on every read whose content differed from the previous one.
    pub revision: u64,
    /// Errors of the last read; empty when it was applied.
    pub errors: Vec<String>,
}

/// Watches one config file.
pub struct FileSource {
    path: PathBuf,
    last_text: Option<String>,
    desired: watch::Sender<Arc<DesiredState>>,
    report: watch::Sender<Arc<ConfigReport>>,
    debounce: Duration,
    poll: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{}: cannot read the config file: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(#[from] ConfigErrors),
}

/// A freshly opened source and its two outputs.
pub type Opened = (
    FileSource,
    watch::Receiver<Arc<DesiredState>>,
    watch::Receiver<Arc<ConfigReport>>,
);

impl FileSource {
    /// Reads and validates the file once; hal0 does not start on an invalid config.
    pub fn open(path: &Path) -> Result<Opened, SourceError> {
        let text = std::fs::read_to_string(path).map_err(|source| SourceError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let desired = config::parse(path, &text)?;
        let (desired_tx, desired_rx) = watch::channel(Arc::new(desired));
        let (report_tx, report_rx) = watch::channel(Arc::new(ConfigReport {
            revision: 1,
            errors: Vec::new(),
        }));
        let src = FileSource {
            path: path.to_path_buf(),
            last_text: Some(text),
            desired: desired_tx,
            report: report_tx,
            debounce: Duration::from_millis(150),
            poll: Duration::from_secs(2),
        };
        Ok((src, desired_rx, report_rx))
    }

    /// Sets the poll interval (the fallback when no file event arrives).
    pub fn with_poll_interval(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    /// Watches until `shutdown` resolves.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let (tx, mut events) = mpsc::unbounded_channel::<()>();
        let _watcher = self.watch_dir(tx);
        let mut poll = tokio::time::interval(self.poll);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                Some(()) = events.recv() => {
                    // Debounce: wait for a quiet moment, so a save in several writes is read
                    // once; but never longer than a second, however busy the directory is.
                    let until = tokio::time::Instant::now() + MAX_DEBOUNCE;
                    while tokio::time::Instant::now() < until
                        && let Ok(Some(())) = tokio::time::timeout(self.debounce, events.recv()).await
                    {}
                    self.check();
                }
                _ = poll.tick() => self.check(),
            }
        }
    }

    fn watch_dir(&self, tx: mpsc::UnboundedSender<()>) -> Option<notify::RecommendedWatcher> {
        let dir = match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = self.path.file_name().map(|n| n.to_os_string());
        // Other files in the directory (logs, say) change all the time; only the config file
        // and Kubernetes ConfigMap swaps (`..data`, `..2024_...`) matter.
        let handler = move |res: notify::Result<notify::Event>| {
            let Ok(event) = res else { return };
            let relevant = event.paths.is_empty()
                || event.paths.iter().any(|p| match p.file_name() {
                    Some(f) => Some(f) == name.as_deref() || f.to_string_lossy().starts_with(".."),
                    None => true,
                });
            if relevant {
                let _ = tx.send(());
            }
        };
        let watcher = notify::recommended_watcher(handler).and_then(|mut w| {
            w.watch(&dir, RecursiveMode::NonRecursive)?;
            Ok(w)
        });
        match watcher {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(
                    "cannot watch {} ({e}); polling every {:?} instead",
                    dir.display(),
                    self.poll
                );
                None
            }
        }
    }

    /// Reads the file; publishes a valid change, reports an invalid one.
    fn check(&mut self) {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) => {
                if self.last_text.is_some() {
                    tracing::warn!(
                        "{}: cannot read the config file ({e}); keeping the running slots",
                        self.path.display()
                    );
                    self.last_text = None;
                }
                return;
            }
        };
        if self.last_text.as_deref() == Some(text.as_str()) {
            return;
        }
        self.last_text = Some(text.clone());
        let revision = self.report.borrow().revision + 1;
        match config::parse(&self.path, &text) {
            Ok(desired) => {
                tracing::info!("{}: reloaded", self.path.display());
                self.desired.send_if_modified(|cur| {
                    if **cur == desired {
                        return false;
                    }
                    *cur = Arc::new(desired);
                    true
                });
                let _ = self.report.send(Arc::new(ConfigReport {
                    revision,
                    errors: Vec::new(),
                }));
            }
            Err(errors) => {
                let lines: Vec<String> = errors.to_string().lines().map(str::to_string).collect();
                tracing::error!(
                    "{}: invalid edit ignored, the running slots keep their last good config:\n{}",
                    self.path.display(),
                    lines.join("\n")
                );
                let _ = self.report.send(Arc::new(ConfigReport {
                    revision,
                    errors: lines,
                }));
            }
        }
    }
}
