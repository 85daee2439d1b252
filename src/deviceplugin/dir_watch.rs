//! Watching the plugin directory, where a kubelet restart shows: it deletes every socket there
//! (ours included) and creates a new `kubelet.sock`.
//!
//! inotify (through `notify`) wakes us at once; a poll at a fixed period covers filesystems and
//! containers where inotify events do not arrive. Either way the caller re-checks a condition
//! on the directory's current state, so a missed or merged event costs at most one period.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// The condition holds.
    Met,
    /// The deadline passed first.
    TimedOut,
    /// The plugin is shutting down.
    Stopped,
}

/// Wakes waiters when the plugin directory changes, or every `poll`.
pub struct DirWatch {
    /// Set by the inotify callback; a stored permit means "look again", so an event that
    /// lands between two checks is not lost.
    wake: Arc<Notify>,
    /// Kept alive for as long as we want events; `None` when inotify was unavailable.
    _watcher: Option<RecommendedWatcher>,
    /// Re-check period when no event arrives.
    poll: Duration,
}

impl DirWatch {
    pub fn new(dir: &Path, poll: Duration) -> Self {
        let wake = Arc::new(Notify::new());
        let callback_wake = Arc::clone(&wake);
        let watcher = notify::recommended_watcher(move |_event: notify::Result<notify::Event>| {
            callback_wake.notify_one();
        })
        .and_then(|mut w| w.watch(dir, RecursiveMode::NonRecursive).map(|()| w));
        let watcher = match watcher {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(
                    dir = %dir.display(),
                    error = %e,
                    "cannot watch the plugin directory; polling every {poll:?} instead"
                );
                None
            }
        };
        DirWatch {
            wake,
            _watcher: watcher,
            poll,
        }
    }

    /// Waits until `condition` holds, `deadline` passes, or `stop` fires. The condition is
    /// checked first, then after every directory event or poll period.
    pub async fn wait_until(
        &self,
        stop: &CancellationToken,
        deadline: Option<Instant>,
        mut condition: impl FnMut() -> bool,
    ) -> Wait {
        loop {
            if stop.is_cancelled() {
                return Wait::Stopped;
            }
            if condition() {
                return Wait::Met;
            }
            let now = Instant::now();
            let tick = match deadline {
                Some(d) if d <= now => return Wait::TimedOut,
                Some(d) => self.poll.min(d - now),
                None => self.poll,
            };
            tokio::select! {
                () = stop.cancelled() => return Wait::Stopped,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(tick) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_file_created_in_the_directory_wakes_the_waiter_before_the_poll() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A poll period far beyond the test's bound: only the inotify event can end the wait.
        let watch = DirWatch::new(dir.path(), Duration::from_secs(3600));
        let target = dir.path().join("kubelet.sock");
        let stop = CancellationToken::new();
        let writer_target = target.clone();
        let writer = tokio::spawn(async move {
            tokio::task::yield_now().await;
            std::fs::write(writer_target, b"").expect("write");
        });
        let wait = tokio::time::timeout(
            Duration::from_secs(10),
            watch.wait_until(&stop, None, || target.exists()),
        )
        .await;
        writer.await.expect("writer");
        assert_eq!(wait.ok(), Some(Wait::Met));
    }

    #[tokio::test]
    async fn a_wait_ends_on_stop_and_on_its_deadline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let watch = DirWatch::new(dir.path(), Duration::from_millis(10));
        let stop = CancellationToken::new();
        let deadline = Some(Instant::now() + Duration::from_millis(30));
        assert_eq!(
            watch.wait_until(&stop, deadline, || false).await,
            Wait::TimedOut
        );
        stop.cancel();
        assert_eq!(watch.wait_until(&stop, None, || false).await, Wait::Stopped);
    }
}
