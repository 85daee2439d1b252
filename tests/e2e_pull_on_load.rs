//! `server.pull_on_load`: a slot whose `hf:` model is missing shows `pulling` with progress,
//! then loads and answers; the waiting request is served once it is there.

mod support;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use bytes::Bytes;
use support::{Hal0, fake_provider, wait_for};

const SIZE: usize = 64 * 1024;

/// A tiny model hub that serves `org/repo/model.gguf` slowly (16 chunks, 100 ms apart).
async fn slow_hub() -> String {
    let app = Router::new().route(
        "/org/repo/resolve/main/model.gguf",
        get(|| async {
            let chunks =
                (0..16).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![7u8; SIZE / 16])));
            let stream =
                futures_util::StreamExt::then(futures_util::stream::iter(chunks), |c| async move {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    c
                });
            axum::response::Response::builder()
                .header("content-length", SIZE.to_string())
                .body(Body::from_stream(stream))
                .unwrap()
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_missing_model_is_pulled_on_load_with_progress_then_served() {
    let hub = slow_hub().await;
    let body = format!(
        "{}[slots.primary]\nprovider = \"llama.cpp\"\nmodel = \"hf:org/repo/model.gguf\"\n",
        fake_provider(&[])
    );
    let h = Hal0::start(
        &format!("pull_on_load = true\nhf_endpoint = \"{hub}\""),
        &body,
    )
    .await;
    let chat = h.chat("primary", "hello");
    let watch = async {
        let st = h
            .wait_phase("primary", "pulling", Duration::from_secs(20))
            .await;
        assert!(st["pull"]["downloaded"].as_u64().is_some(), "{st}");
        wait_for("progress with a total", Duration::from_secs(20), || async {
            h.status("primary")
                .await
                .filter(|s| s["pull"]["total"] == SIZE as u64 || s["phase"] != "pulling")
        })
        .await;
    };
    let (resp, ()) = tokio::join!(chat, watch);
    assert_eq!(resp.status(), 200);
    let file = h.dir.path().join("models/org/repo/model.gguf");
    assert_eq!(std::fs::metadata(&file).unwrap().len(), SIZE as u64);
    assert_eq!(h.status("primary").await.unwrap()["phase"], "ready");
}

#[tokio::test]
async fn without_pull_on_load_a_missing_model_fails_naming_the_file() {
    let body = format!(
        "{}[slots.primary]\nprovider = \"llama.cpp\"\nmodel = \"hf:org/repo/model.gguf\"\n",
        fake_provider(&[])
    );
    let h = Hal0::start("", &body).await;
    let r = h.chat("primary", "hello").await;
    assert_eq!(r.status(), 502);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("org/repo/model.gguf") && text.contains("does not exist"),
        "{text}"
    );
}
