//! The dashboard through the real binary: its page and assets are served by hal0 itself, and
//! (where Debian's chromium and e2e/dashboard/node_modules are installed, by
//! scripts/setup-browser.sh) a real headless browser adds, loads, inspects, edits (with a
//! conflicting hand edit), pulls a model from a slow local hub, and deletes a slot, on a
//! desktop and a phone-sized screen.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::{Hal0, fake_model, fake_provider, fake_slot};

fn body() -> String {
    format!(
        "# my dashboard comment: keep me\n{}\n# the chat slot I edit by hand\n{}",
        fake_provider(&[]),
        fake_slot("primary", "idle_timeout = \"10m\"  # ten minutes")
    )
}

#[tokio::test]
async fn the_dashboard_is_served_by_the_binary() {
    let h = Hal0::start("", &body()).await;
    for (path, content_type, marker) in [
        ("/", "text/html", "Add slot"),
        (
            "/assets/app.js",
            "text/javascript",
            "EventSource(\"/api/events\")",
        ),
        ("/assets/style.css", "text/css", ".badge.ready"),
    ] {
        let r = h.http.get(h.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let ct = r.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with(content_type), "{path}: {ct}");
        assert!(r.text().await.unwrap().contains(marker), "{path}");
    }
}

/// The browser; a missing one fails the test with the fix (the test is opt-in, see its
/// `#[ignore]`).
fn browser(root: &Path) -> PathBuf {
    let chromium = std::env::var_os("HAL0_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    let ready = chromium.exists()
        && root
            .join("e2e/dashboard/node_modules/playwright-core")
            .is_dir()
        && std::process::Command::new("node")
            .arg("--version")
            .output()
            .is_ok();
    assert!(
        ready,
        "the browser test needs Debian's chromium, node and e2e/dashboard/node_modules: run scripts/setup-browser.sh"
    );
    chromium
}

/// The model the slow hub serves, and its size.
const PULL_REF: &str = "hf:org/repo/dash-model.gguf";
const PULL_SIZE: usize = 3 << 20;

/// A hub-like server (`/{org}/{repo}/resolve/main/{file}`) that sends its file in 64 KiB chunks
/// over about three seconds, so a browser can watch the progress.
async fn start_slow_hub() -> String {
    use axum::response::IntoResponse;
    async fn file() -> axum::response::Response {
        let chunks = futures_util::stream::unfold(0usize, |sent| async move {
            if sent >= PULL_SIZE {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(60)).await;
            let n = (PULL_SIZE - sent).min(64 << 10);
            Some((
                Ok::<_, std::io::Error>(bytes::Bytes::from(vec![7u8; n])),
                sent + n,
            ))
        });
        (
            [(axum::http::header::CONTENT_LENGTH, PULL_SIZE.to_string())],
            axum::body::Body::from_stream(chunks),
        )
            .into_response()
    }
    let app = axum::Router::new().route(
        "/org/repo/resolve/main/dash-model.gguf",
        axum::routing::get(file),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

#[ignore = "needs Debian's chromium and playwright-core (scripts/setup-browser.sh); scripts/test.sh runs it"]
#[tokio::test]
async fn in_a_real_browser_a_slot_is_added_validated_loaded_edited_pulled_and_deleted() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let chromium = browser(&root);
    let hub = start_slow_hub().await;
    let h = Hal0::start(
        &format!("memory_budget = \"1GiB\"\nhf_endpoint = \"{hub}\""),
        &body(),
    )
    .await;
    let shots = root.join("e2e/artifacts/dashboard");
    let _ = std::fs::remove_dir_all(&shots);
    let run = tokio::process::Command::new("node")
        .arg(root.join("e2e/dashboard/dashboard.test.mjs"))
        .current_dir(root.join("e2e/dashboard"))
        .env("HAL0_URL", &h.base)
        .env("HAL0_CONFIG", &h.config)
        .env("HAL0_FAKE_MODEL", fake_model())
        .env("HAL0_SCREENSHOTS", &shots)
        .env("HAL0_PULL_MODEL", PULL_REF)
        .env("HAL0_CHROMIUM", &chromium)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("the browser test finished in time")
        .expect("run node");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{text}\nhal0's log:\n{}",
        h.log_text()
    );
    assert!(text.contains("dashboard test: passed"), "{text}");
    for shot in [
        "1-invalid-name.png",
        "2-slot-added.png",
        "3-slot-ready.png",
        "6-edit-form.png",
        "7-edit-conflict.png",
        "8-pull-running.png",
        "9-pull-done.png",
        "10-phone.png",
        "11-phone-edit.png",
    ] {
        assert!(shots.join(shot).is_file(), "screenshot {shot} saved");
    }
    let pulled = h.dir.path().join("models/org/repo/dash-model.gguf");
    assert_eq!(
        std::fs::metadata(&pulled).map(|m| m.len() as usize).ok(),
        Some(PULL_SIZE),
        "the pulled model is in models_dir"
    );
    // The user's comments survived the dashboard's edits.
    let file = std::fs::read_to_string(&h.config).unwrap();
    assert!(file.contains("# my dashboard comment: keep me"), "{file}");
    assert!(
        file.contains("idle_timeout = \"10m\"  # ten minutes"),
        "{file}"
    );
}
