//! `hal0 model pull|list` through the real binary against a local hub-like HTTP server: a
//! redirect carrying the checksum (like a hub's CDN redirect), range requests, a connection that
//! breaks mid-download, and a wrong checksum.

mod support;

use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};
use support::HAL0;

const REF: &str = "hf:org/repo/model.gguf";

#[derive(Clone)]
struct Hub {
    content: Arc<Vec<u8>>,
    /// The SHA-256 the hub announces (wrong on purpose in one test).
    announced_sha: String,
    /// Break the connection after this many bytes of the next download.
    break_after: Arc<Mutex<Option<usize>>>,
    /// Range headers received by the file server.
    ranges: Arc<Mutex<Vec<String>>>,
}

fn content() -> Vec<u8> {
    (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

fn sha_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

async fn resolve(State(hub): State<Hub>) -> Response {
    (
        StatusCode::FOUND,
        [
            (header::LOCATION.as_str(), "/cdn/blob".to_string()),
            ("x-linked-etag", format!("\"{}\"", hub.announced_sha)),
            ("x-linked-size", hub.content.len().to_string()),
        ],
    )
        .into_response()
}

async fn blob(State(hub): State<Hub>, headers: HeaderMap) -> Response {
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    hub.ranges
        .lock()
        .unwrap()
        .push(range.clone().unwrap_or_default());
    let total = hub.content.len();
    let start = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.trim_end_matches('-').parse::<usize>().ok())
        .unwrap_or(0);
    if start >= total && start > 0 {
        return StatusCode::RANGE_NOT_SATISFIABLE.into_response();
    }
    let body_bytes = hub.content[start..].to_vec();
    let cut = hub.break_after.lock().unwrap().take();
    let body = match cut {
        Some(n) => {
            // Send part of the file, let it reach the client, then drop the connection.
            let first = bytes::Bytes::from(body_bytes[..n].to_vec());
            let chunks = futures_util::stream::unfold(0u8, move |step| {
                let first = first.clone();
                async move {
                    match step {
                        0 => Some((Ok(first), 1)),
                        1 => {
                            tokio::time::sleep(Duration::from_millis(300)).await;
                            Some((Err(std::io::Error::other("connection dropped")), 2))
                        }
                        _ => None,
                    }
                }
            });
            Body::from_stream(chunks)
        }
        None => Body::from(body_bytes.clone()),
    };
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(header::CONTENT_LENGTH, body_bytes.len().into());
    if start > 0 {
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
        resp.headers_mut().insert(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{total}", total - 1)
                .parse()
                .unwrap(),
        );
    }
    resp
}

async fn start_hub(announced_sha: Option<String>) -> (String, Hub) {
    let content = content();
    let hub = Hub {
        announced_sha: announced_sha.unwrap_or_else(|| sha_hex(&content)),
        content: Arc::new(content),
        break_after: Arc::new(Mutex::new(None)),
        ranges: Arc::new(Mutex::new(Vec::new())),
    };
    let app = Router::new()
        .route("/org/repo/resolve/main/model.gguf", get(resolve))
        .route("/cdn/blob", get(blob))
        .with_state(hub.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, hub)
}

async fn hal0(args: &[&str], env: &[(&str, &str)]) -> (Output, String, String) {
    let mut cmd = tokio::process::Command::new(HAL0);
    cmd.args(args)
        .env("HAL0_LOG", "warn")
        .env_remove("HF_ENDPOINT")
        .env_remove("HF_TOKEN");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("the CLI finished in time")
        .expect("run hal0");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    (o, out, err)
}

#[tokio::test]
async fn an_interrupted_pull_resumes_where_it_stopped_and_is_verified() {
    let (url, hub) = start_hub(None).await;
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    let models_s = models.to_str().unwrap();
    *hub.break_after.lock().unwrap() = Some(120_000);

    let (o, out, err) = hal0(
        &[
            "model",
            "pull",
            REF,
            "--models-dir",
            models_s,
            "--endpoint",
            &url,
        ],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(err.contains("run the pull again to resume"), "{err}");
    let dest = models.join("org/repo/model.gguf");
    let part = models.join("org/repo/model.gguf.part");
    assert!(!dest.exists(), "an incomplete download is never in place");
    let partial = std::fs::metadata(&part).expect("a .part file").len();
    assert!((120_000..300_000).contains(&partial), "{partial}");

    let (o, out, _) = hal0(&["model", "list", "--models-dir", models_s], &[]).await;
    assert!(o.status.success());
    assert!(out.contains(REF) && out.contains("partial"), "{out}");

    // The endpoint can come from HF_ENDPOINT, like the hub's own tools.
    let (o, out, err) = hal0(
        &["model", "pull", REF, "--models-dir", models_s],
        &[("HF_ENDPOINT", &url)],
    )
    .await;
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("resumed at"), "{out}");
    assert!(
        out.contains(&format!("sha256 {} verified", hub.announced_sha)),
        "{out}"
    );
    assert_eq!(std::fs::read(&dest).unwrap(), *hub.content);
    assert!(!part.exists());
    assert_eq!(
        hub.ranges.lock().unwrap().clone(),
        vec![String::new(), format!("bytes={partial}-")],
        "the second download asked only for the rest"
    );

    let (o, out, _) = hal0(
        &[
            "model",
            "pull",
            REF,
            "--models-dir",
            models_s,
            "--endpoint",
            &url,
        ],
        &[],
    )
    .await;
    assert!(o.status.success());
    assert!(out.contains("already in"), "{out}");
    assert_eq!(
        hub.ranges.lock().unwrap().len(),
        2,
        "nothing downloaded again"
    );
}

#[tokio::test]
async fn a_wrong_checksum_is_refused_and_nothing_is_left_behind() {
    let (url, _hub) = start_hub(Some("0".repeat(64))).await;
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    let (o, out, err) = hal0(
        &[
            "model",
            "pull",
            REF,
            "--models-dir",
            models.to_str().unwrap(),
            "--endpoint",
            &url,
        ],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(err.contains("checksum mismatch"), "{err}");
    assert!(!models.join("org/repo/model.gguf").exists());
    assert!(!models.join("org/repo/model.gguf.part").exists());
}

#[tokio::test]
async fn a_missing_model_and_a_non_hf_ref_get_clear_errors() {
    let (url, _hub) = start_hub(None).await;
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    let m = models.to_str().unwrap();
    let (o, _, err) = hal0(
        &[
            "model",
            "pull",
            "hf:org/repo/nope.gguf",
            "--models-dir",
            m,
            "--endpoint",
            &url,
        ],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err.contains("404") && err.contains("check the org, repo and file name"),
        "{err}"
    );
    let (o, _, err) = hal0(&["model", "pull", "file:/m/x.gguf", "--models-dir", m], &[]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err.contains("only hf:org/repo/file refs are downloaded"),
        "{err}"
    );
}

#[tokio::test]
async fn model_list_reads_models_dir_from_the_config_and_names_the_slots_using_each() {
    let (url, _hub) = start_hub(None).await;
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    let cfg = dir.path().join("hal0.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nmodels_dir = \"{}\"\n\n[slots.primary]\nprovider = \"llama.cpp\"\nmodel = \"{REF}\"\n",
            models.display()
        ),
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    let (o, out, err) = hal0(
        &["model", "pull", REF, "--config", c, "--endpoint", &url],
        &[],
    )
    .await;
    assert!(o.status.success(), "{out}{err}");
    let (o, out, _) = hal0(&["model", "list", "--config", c, "--json"], &[]).await;
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["models"][0]["model"], REF);
    assert_eq!(v["models"][0]["bytes"], 300_000);
    assert_eq!(v["models"][0]["slots"][0], "primary");
    let (_, out, _) = hal0(&["model", "list", "--config", c], &[]).await;
    assert!(out.contains(REF) && out.contains("primary"), "{out}");
}
