//! The file source on its own: edits, ConfigMap-style symlink swaps, invalid edits, and a
//! directory that never stops changing.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hal0::model::DesiredState;
use hal0::source::FileSource;
use tokio::sync::watch;

const T: Duration = Duration::from_secs(10);

fn config(idle: &str) -> String {
    format!(
        "[slots.primary]\nprovider = \"llama.cpp\"\nmodel = \"file:/m/a.gguf\"\nidle_timeout = \"{idle}\"\n"
    )
}

fn idle_of(d: &DesiredState) -> String {
    d.slots
        .values()
        .next()
        .and_then(|s| s.idle_timeout)
        .map(|d| d.to_string())
        .unwrap_or_default()
}

async fn wait_idle(rx: &mut watch::Receiver<Arc<DesiredState>>, want: &str) {
    tokio::time::timeout(T, rx.wait_for(|d| idle_of(d) == want))
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for idle_timeout {want}"))
        .expect("source alive");
}

fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn an_edit_by_rename_is_published() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hal0.toml");
    std::fs::write(&path, config("10m")).unwrap();
    let (src, mut rx, _report) = FileSource::open(&path).unwrap();
    let (_stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    // A long poll interval: the notify watch must do the work.
    tokio::spawn(
        src.with_poll_interval(Duration::from_secs(3600))
            .run(async move {
                let _ = stop_rx.await;
            }),
    );
    replace(&path, &config("20m"));
    wait_idle(&mut rx, "20m").await;
}

#[tokio::test]
async fn a_configmap_style_symlink_swap_is_published() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("..v1")).unwrap();
    std::fs::write(d.join("..v1/hal0.toml"), config("10m")).unwrap();
    std::os::unix::fs::symlink("..v1", d.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/hal0.toml", d.join("hal0.toml")).unwrap();
    let (src, mut rx, _report) = FileSource::open(&d.join("hal0.toml")).unwrap();
    let (_stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(
        src.with_poll_interval(Duration::from_secs(3600))
            .run(async move {
                let _ = stop_rx.await;
            }),
    );
    std::fs::create_dir(d.join("..v2")).unwrap();
    std::fs::write(d.join("..v2/hal0.toml"), config("30m")).unwrap();
    std::os::unix::fs::symlink("..v2", d.join("..data_tmp")).unwrap();
    std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
    wait_idle(&mut rx, "30m").await;
}

#[tokio::test]
async fn an_invalid_edit_is_reported_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hal0.toml");
    std::fs::write(&path, config("10m")).unwrap();
    let (src, rx, mut report) = FileSource::open(&path).unwrap();
    let (_stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(src.run(async move {
        let _ = stop_rx.await;
    }));
    replace(&path, &config("soon"));
    let r = tokio::time::timeout(T, report.wait_for(|r| !r.errors.is_empty()))
        .await
        .unwrap()
        .unwrap()
        .clone();
    assert!(r.errors[0].contains("hal0.toml:4:"), "{:?}", r.errors);
    assert!(r.errors[0].contains("idle_timeout"), "{:?}", r.errors);
    assert_eq!(idle_of(&rx.borrow()), "10m");
}

#[tokio::test]
async fn a_busy_directory_does_not_hold_back_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hal0.toml");
    std::fs::write(&path, config("10m")).unwrap();
    let (src, mut rx, _report) = FileSource::open(&path).unwrap();
    let (_stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(
        src.with_poll_interval(Duration::from_secs(3600))
            .run(async move {
                let _ = stop_rx.await;
            }),
    );
    // Another file in the same directory is written every few milliseconds (a log, say).
    let noisy = dir.path().join("hal0.log");
    let writer = tokio::spawn(async move {
        loop {
            let _ = std::fs::write(&noisy, "x");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    replace(&path, &config("40m"));
    wait_idle(&mut rx, "40m").await;
    writer.abort();
}

fn two_slots() -> String {
    format!(
        "{}\n[slots.second]\nprovider = \"llama.cpp\"\nmodel = \"file:/m/b.gguf\"\n",
        config("10m")
    )
}

/// Records the fewest slots any published version had.
fn track_fewest(mut rx: watch::Receiver<Arc<DesiredState>>) -> Arc<std::sync::atomic::AtomicUsize> {
    let fewest = Arc::new(std::sync::atomic::AtomicUsize::new(rx.borrow().slots.len()));
    let f = fewest.clone();
    tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let n = rx.borrow_and_update().slots.len();
            f.fetch_min(n, std::sync::atomic::Ordering::SeqCst);
        }
    });
    fewest
}

#[tokio::test]
async fn a_file_caught_mid_write_stops_nothing_but_a_deliberate_removal_applies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hal0.toml");
    let full = two_slots();
    std::fs::write(&path, &full).unwrap();
    let (src, mut rx, _report) = FileSource::open(&path).unwrap();
    let (_stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(src.run(async move {
        let _ = stop_rx.await;
    }));
    let fewest = track_fewest(rx.clone());
    // An in-place writer: truncate, pause 300 ms, write half, pause, write the rest (the
    // same content as before, and then a real change of one slot's idle_timeout).
    for _ in 0..3 {
        std::fs::write(&path, "").unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        std::fs::write(&path, &full[..full.len() / 2]).unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        std::fs::write(&path, &full).unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(
        fewest.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "a torn read was applied"
    );
    // A deliberate removal (rename-save, then the file stays) still applies.
    replace(&path, &config("10m"));
    tokio::time::timeout(T, rx.wait_for(|d| d.slots.len() == 1))
        .await
        .expect("the removal was applied")
        .unwrap();
}

#[tokio::test]
async fn an_added_slot_applies_without_waiting_for_the_settle_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hal0.toml");
    std::fs::write(&path, config("10m")).unwrap();
    let (src, mut rx, _report) = FileSource::open(&path).unwrap();
    let (_stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(
        src.with_poll_interval(Duration::from_secs(3600))
            .run(async move {
                let _ = stop_rx.await;
            }),
    );
    let started = std::time::Instant::now();
    replace(&path, &two_slots());
    tokio::time::timeout(T, rx.wait_for(|d| d.slots.len() == 2))
        .await
        .unwrap()
        .unwrap();
    assert!(
        started.elapsed() < hal0::source::file::SETTLE,
        "an addition waited {:?}",
        started.elapsed()
    );
}
