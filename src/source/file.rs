//! The file source: watches `hal0.toml` with `notify` on its directory (editors and ConfigMaps
//! replace files by rename or symlink swap, which a watch on the file itself would miss) plus a
//! poll fallback, reads the file on the first event of a burst and again when the burst ends,
//! and publishes each valid new version. A version that would stop or restart slots, or is
//! invalid, must stay in the file for [`SETTLE`] first (a file caught mid-write stops nothing).
//! An invalid edit is then logged with every error and changes nothing.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::config::{self, ConfigErrors};
use crate::model::{DesiredState, LaunchSpec};

/// The quiet time that ends a burst of file events.
const DEBOUNCE: Duration = Duration::from_millis(150);

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

/// Publishes versions of the config: both the file watcher and hal0's own writes (the API) go
/// through it, so a version hal0 wrote and applied at once is not applied again when the
/// watcher sees the file.
pub struct ConfigPublisher {
    path: PathBuf,
    /// What was last read or written. A std `Mutex`: held for a parse, never across an await.
    seen: Mutex<Seen>,
    desired: watch::Sender<Arc<DesiredState>>,
    report: watch::Sender<Arc<ConfigReport>>,
}

#[derive(Default)]
struct Seen {
    /// The text of the last version applied or rejected; `None` after a failed read.
    last_text: Option<String>,
    /// A version that would stop or restart declared slots (or is invalid), seen first at that
    /// instant: it is applied (or reported) only once the file has kept it for [`SETTLE`].
    held: Option<(String, Instant)>,
}

/// How long a version that stops or restarts declared slots must stay in the file before it is
/// applied. A file caught mid-write (truncated, or empty for a moment) would otherwise stop
/// every slot; a deliberate edit still applies, this much later.
pub const SETTLE: Duration = Duration::from_secs(1);

impl ConfigPublisher {
    /// The file's current text is `text`, already parsed into `desired`.
    pub fn new(path: &Path, text: String, desired: DesiredState) -> Published {
        let (desired_tx, desired_rx) = watch::channel(Arc::new(desired));
        let (report_tx, report_rx) = watch::channel(Arc::new(ConfigReport {
            revision: 1,
            errors: Vec::new(),
        }));
        let publisher = ConfigPublisher {
            path: path.to_path_buf(),
            seen: Mutex::new(Seen {
                last_text: Some(text),
                held: None,
            }),
            desired: desired_tx,
            report: report_tx,
        };
        (Arc::new(publisher), desired_rx, report_rx)
    }

    /// Publishes a version hal0 itself has just written and validated (`text` is the file's new
    /// content): it applies at once, with no debounce and no settle time (it cannot be torn).
    pub fn written(&self, text: String, desired: DesiredState) {
        let mut seen = self.lock();
        seen.held = None;
        seen.last_text = Some(text);
        self.apply(desired);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn apply(&self, desired: DesiredState) {
        self.desired.send_if_modified(|cur| {
            if **cur == desired {
                return false;
            }
            *cur = Arc::new(desired);
            true
        });
        let revision = self.report.borrow().revision + 1;
        let _ = self.report.send(Arc::new(ConfigReport {
            revision,
            errors: Vec::new(),
        }));
    }

    /// Reads the file; publishes a valid change, reports an invalid one. Returns when to look
    /// again for a version that is held until it settles.
    fn check(&self) -> Option<Duration> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) => {
                let mut seen = self.lock();
                if seen.last_text.is_some() {
                    tracing::warn!(
                        "{}: cannot read the config file ({e}); keeping the running slots",
                        self.path.display()
                    );
                    seen.last_text = None;
                }
                return None;
            }
        };
        let mut seen = self.lock();
        if seen.last_text.as_deref() == Some(text.as_str()) {
            seen.held = None;
            return None;
        }
        let parsed = config::parse(&self.path, &text);
        // A version that would stop or restart slots, or is invalid, may be a file caught
        // mid-write: it must stay the same for SETTLE first.
        let suspicious = match &parsed {
            Ok(desired) => stops_or_restarts(&self.desired.borrow(), desired),
            Err(_) => true,
        };
        if suspicious {
            let since = match &seen.held {
                Some((held, since)) if *held == text => *since,
                _ => Instant::now(),
            };
            let left = SETTLE.saturating_sub(since.elapsed());
            if !left.is_zero() {
                seen.held = Some((text, since));
                return Some(left);
            }
        }
        match parsed {
            Ok(desired) => {
                seen.held = None;
                seen.last_text = Some(text);
                tracing::info!("{}: reloaded", self.path.display());
                self.apply(desired);
            }
            Err(errors) => {
                seen.held = None;
                seen.last_text = Some(text);
                let lines: Vec<String> = errors.to_string().lines().map(str::to_string).collect();
                tracing::error!(
                    "{}: invalid edit ignored, the running slots keep their last good config:\n{}",
                    self.path.display(),
                    lines.join("\n")
                );
                let revision = self.report.borrow().revision + 1;
                let _ = self.report.send(Arc::new(ConfigReport {
                    revision,
                    errors: lines,
                }));
            }
        }
        None
    }
}

/// Whether going from `old` to `new` removes a declared slot or changes how one is launched
/// (which restarts it).
pub fn stops_or_restarts(old: &DesiredState, new: &DesiredState) -> bool {
    old.slots
        .iter()
        .any(|(name, spec)| match new.slots.get(name) {
            None => true,
            Some(next) => {
                LaunchSpec::new(old, name, spec, 0) != LaunchSpec::new(new, name, next, 0)
            }
        })
}

/// A publisher and the two channels it publishes on.
pub type Published = (
    Arc<ConfigPublisher>,
    watch::Receiver<Arc<DesiredState>>,
    watch::Receiver<Arc<ConfigReport>>,
);

/// Watches one config file.
pub struct FileSource {
    path: PathBuf,
    publisher: Arc<ConfigPublisher>,
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
        let (publisher, desired_rx, report_rx) = ConfigPublisher::new(path, text, desired);
        let src = FileSource {
            path: path.to_path_buf(),
            publisher,
            debounce: DEBOUNCE,
            poll: Duration::from_secs(2),
        };
        Ok((src, desired_rx, report_rx))
    }

    /// What hal0's own writes publish through.
    pub fn publisher(&self) -> Arc<ConfigPublisher> {
        self.publisher.clone()
    }

    /// Sets the poll interval (the fallback when no file event arrives).
    pub fn with_poll_interval(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    /// Watches until `shutdown` resolves.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let (tx, mut events) = mpsc::unbounded_channel::<()>();
        let _watcher = self.watch_dir(tx);
        let mut poll = tokio::time::interval(self.poll);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut recheck: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                Some(()) = events.recv() => {
                    // Read at once: a rename-save is complete when its event arrives, and a
                    // version caught mid-write that would stop slots (or is invalid) is held
                    // until it settles anyway. Then debounce: wait for a quiet moment and read
                    // again, so the end of a save in several writes is not missed; but never
                    // longer than a second, however busy the directory is.
                    self.publisher.check();
                    let until = Instant::now() + MAX_DEBOUNCE;
                    while Instant::now() < until
                        && let Ok(Some(())) = tokio::time::timeout(self.debounce, events.recv()).await
                    {}
                }
                _ = poll.tick() => {}
                () = sleep_until_or_forever(recheck) => {}
            }
            recheck = self.publisher.check().map(|d| Instant::now() + d);
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
            if !changes_content(&event.kind) {
                return;
            }
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
}

/// Whether an event can mean new content. Opening or reading the file does not: hal0 reads it
/// itself (every check, every `/api` answer with a revision), and reacting to those reads kept
/// the watcher in a debounce window of its own making, so a save waited for it to go quiet.
fn changes_content(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode};
    match kind {
        notify::EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        notify::EventKind::Access(_) => false,
        _ => true,
    }
}

async fn sleep_until_or_forever(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use notify::EventKind;
    use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RenameMode};

    use super::changes_content;

    #[test]
    fn reading_the_file_is_not_a_change_but_writing_or_renaming_is() {
        assert!(!changes_content(&EventKind::Access(AccessKind::Open(
            AccessMode::Any
        ))));
        assert!(!changes_content(&EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
        assert!(changes_content(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(changes_content(&EventKind::Modify(ModifyKind::Name(
            RenameMode::To
        ))));
        assert!(changes_content(&EventKind::Create(CreateKind::File)));
        assert!(changes_content(&EventKind::Any));
    }
}
