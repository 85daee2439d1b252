//! The /v1 gateway through the real binary: errors, limits, keys, metrics, streaming while a
//! slot loads, model rewriting, external upstreams. The fake provider stands in for models.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{FAKE, Hal0, fake_provider, fake_slot, wait_for};

const T: Duration = Duration::from_secs(20);

async fn post(h: &Hal0, path: &str, body: Value, key: Option<&str>) -> reqwest::Response {
    let mut r = h.http.post(h.url(path)).json(&body);
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    r.send().await.unwrap()
}

/// The ids `GET /v1/models` lists for `key`.
async fn model_ids(h: &Hal0, key: Option<&str>) -> Vec<String> {
    let mut r = h.http.get(h.url("/v1/models"));
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    let v: Value = r.send().await.unwrap().json().await.unwrap();
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

async fn error_of(r: reqwest::Response) -> Value {
    let v: Value = r.json().await.unwrap();
    for k in ["message", "type", "param", "code"] {
        assert!(
            v["error"].get(k).is_some(),
            "OpenAI error shape has {k}: {v}"
        );
    }
    v["error"].clone()
}

#[tokio::test]
async fn requests_are_routed_with_the_providers_model_id_and_errors_have_openai_shape() {
    let body = format!(
        "{}{}",
        fake_provider(&[]),
        fake_slot("primary", "aliases = [\"fast\"]")
    );
    let h = Hal0::start("max_body = \"1KiB\"", &body).await;

    // llama-server answers whatever model name it is sent (speech providers get their own id:
    // see e2e_openai, where tts-1 reaches Kokoro as "kokoro").
    let r = post(&h, "/v1/chat/completions", chat("fast"), None).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["model"], "fast", "llama.cpp bodies go on unchanged");

    let r = post(&h, "/v1/chat/completions", chat("primray"), None).await;
    assert_eq!(r.status(), 404);
    let e = error_of(r).await;
    assert_eq!(e["code"], "model_not_found");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("did you mean \"primary\""),
        "{e}"
    );

    let r = post(
        &h,
        "/v1/embeddings",
        json!({"model": "primary", "input": "x"}),
        None,
    )
    .await;
    assert_eq!(r.status(), 400);
    let e = error_of(r).await;
    assert_eq!(e["code"], "wrong_endpoint_for_model");

    let r = h
        .http
        .post(h.url("/v1/chat/completions"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_of(r).await["code"], "invalid_json");

    let r = post(&h, "/v1/chat/completions", json!({"messages": []}), None).await;
    assert_eq!(r.status(), 400);
    assert_eq!(error_of(r).await["param"], "model");

    let big =
        json!({"model": "primary", "messages": [{"role": "user", "content": "x".repeat(4096)}]});
    let r = post(&h, "/v1/chat/completions", big, None).await;
    assert_eq!(r.status(), 413);
    assert_eq!(error_of(r).await["code"], "body_too_large");

    // Other /v1 POSTs with a model are forwarded as they are.
    let r = post(
        &h,
        "/v1/rerank",
        json!({"model": "primary", "query": "a", "documents": ["a b", "c"]}),
        None,
    )
    .await;
    assert_eq!(r.status(), 400, "rerank is not a chat slot's job");
}

#[tokio::test]
async fn a_full_wait_queue_answers_429_with_retry_after() {
    let body = format!(
        "{}{}",
        fake_provider(&["--load-delay", "3000"]),
        fake_slot("primary", "")
    );
    let h = Hal0::start("max_queue = 1", &body).await;
    let reqs = (0..3).map(|_| post(&h, "/v1/chat/completions", chat("primary"), None));
    let statuses: Vec<(u16, bool)> = futures_util::future::join_all(reqs)
        .await
        .into_iter()
        .map(|r| (r.status().as_u16(), r.headers().contains_key("retry-after")))
        .collect();
    assert!(statuses.contains(&(200, false)), "{statuses:?}");
    assert!(statuses.contains(&(429, true)), "{statuses:?}");
}

#[tokio::test]
async fn a_streaming_request_gets_keepalives_while_its_slot_loads() {
    let body = format!(
        "{}{}",
        fake_provider(&["--load-delay", "1500"]),
        fake_slot("primary", "")
    );
    let h = Hal0::start("", &body).await;
    let mut r = post(
        &h,
        "/v1/chat/completions",
        json!({"model": "primary", "stream": true, "messages": []}),
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let first = r.chunk().await.unwrap().unwrap();
    assert!(
        first.starts_with(b": hal0: waiting for slot primary"),
        "{:?}",
        String::from_utf8_lossy(&first)
    );
    let mut rest = String::new();
    while let Some(c) = r.chunk().await.unwrap() {
        rest.push_str(&String::from_utf8_lossy(&c));
    }
    assert!(rest.contains("\"delta\""), "{rest}");
    assert!(rest.trim_end().ends_with("data: [DONE]"), "{rest}");
}

#[tokio::test]
async fn a_streaming_request_for_a_slot_that_fails_to_load_ends_with_an_error_event() {
    let body = format!(
        "{}{}",
        fake_provider(&["--exit-on-start", "2"]),
        fake_slot("primary", "")
    );
    let h = Hal0::start("", &body).await;
    let r = post(
        &h,
        "/v1/chat/completions",
        json!({"model": "primary", "stream": true, "messages": []}),
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.contains("data: {\"error\""), "{text}");
    assert!(text.contains("exited with code 2"), "{text}");
}

#[tokio::test]
async fn api_keys_guard_v1_and_limit_models_per_key() {
    let keys = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(keys.path(), "# keys\nsk-file-all\nsk-file-small small\n").unwrap();
    let body = format!(
        "{}{}{}",
        fake_provider(&[]),
        fake_slot("primary", ""),
        fake_slot("small", "")
    );
    let server = format!(
        "api_keys = [\"HAL0_TEST_KEY\"]\napi_keys_file = \"{}\"",
        keys.path().display()
    );
    let h = Hal0::start_with_env(&server, &body, &[("HAL0_TEST_KEY", "sk-env")]).await;

    let r = post(&h, "/v1/chat/completions", chat("primary"), None).await;
    assert_eq!(r.status(), 401);
    assert_eq!(error_of(r).await["code"], "missing_api_key");
    let r = post(
        &h,
        "/v1/chat/completions",
        chat("primary"),
        Some("sk-wrong"),
    )
    .await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        post(&h, "/v1/chat/completions", chat("primary"), Some("sk-env"))
            .await
            .status(),
        200
    );
    assert_eq!(
        post(
            &h,
            "/v1/chat/completions",
            chat("primary"),
            Some("sk-file-all")
        )
        .await
        .status(),
        200
    );
    assert_eq!(
        post(
            &h,
            "/v1/chat/completions",
            chat("small"),
            Some("sk-file-small")
        )
        .await
        .status(),
        200
    );
    let r = post(
        &h,
        "/v1/chat/completions",
        chat("primary"),
        Some("sk-file-small"),
    )
    .await;
    assert_eq!(r.status(), 403);
    assert_eq!(error_of(r).await["code"], "model_not_allowed");

    let ids = model_ids(&h, Some("sk-file-small")).await;
    assert_eq!(ids, vec!["small"]);
    assert_eq!(
        h.http
            .get(h.url("/v1/models"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert!(
        !h.log_text().contains("sk-env") && !h.log_text().contains("sk-file"),
        "keys never reach the log"
    );
}

#[tokio::test]
async fn metrics_count_requests_loads_and_states() {
    let body = format!("{}{}", fake_provider(&[]), fake_slot("primary", ""));
    let h = Hal0::start("", &body).await;
    assert_eq!(
        post(&h, "/v1/chat/completions", chat("primary"), None)
            .await
            .status(),
        200
    );
    assert_eq!(
        post(&h, "/v1/chat/completions", chat("nope"), None)
            .await
            .status(),
        404
    );
    let text = wait_for("metrics to show the load", T, || async {
        let t = h
            .http
            .get(h.url("/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        t.contains("hal0_slot_load_duration_seconds_count{slot=\"primary\"} 1")
            .then_some(t)
    })
    .await;
    for want in [
        "hal0_requests_total{slot=\"primary\",endpoint=\"chat/completions\",status=\"200\"} 1",
        "hal0_requests_total{slot=\"-\",endpoint=\"chat/completions\",status=\"404\"} 1",
        "hal0_slot_loads_total{slot=\"primary\"} 1",
        "hal0_slot_state{slot=\"primary\",state=\"ready\"} 1",
        "hal0_time_to_first_byte_seconds_count{slot=\"primary\"} 1",
        "hal0_queue_wait_seconds_count{slot=\"primary\"} 1",
    ] {
        assert!(text.contains(want), "missing {want}:\n{text}");
    }
}

/// A fake provider started directly, as an external upstream.
fn external() -> support::ChildServer {
    let mut cmd = std::process::Command::new(FAKE);
    cmd.args(["--port", "0", "--alias", "vendor-model"]);
    support::ChildServer::start(cmd)
}

#[tokio::test]
async fn an_openai_compatible_upstream_is_listed_and_routed_with_its_own_model_names() {
    let up = external();
    let body = format!(
        "[slots.cloud]\nprovider = \"openai-compatible\"\nupstream = \"http://127.0.0.1:{}/v1\"\napi_key_env = \"HAL0_TEST_UPSTREAM_KEY\"\nmodels = [\"vendor/big\", \"vendor/small\"]\n",
        up.port
    );
    let h = Hal0::start_with_env(
        "",
        &body,
        &[("HAL0_TEST_UPSTREAM_KEY", "sk-upstream-secret")],
    )
    .await;
    let ids = model_ids(&h, None).await;
    assert_eq!(ids, vec!["cloud", "vendor/big", "vendor/small"]);

    let v: Value = post(&h, "/v1/chat/completions", chat("vendor/small"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["model"], "vendor/small",
        "an upstream model name goes on unchanged"
    );
    let v: Value = post(&h, "/v1/chat/completions", chat("cloud"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["model"], "vendor/big",
        "the slot name becomes the upstream's first model"
    );
    let show = std::process::Command::new(support::HAL0)
        .args(["config", "show", "--config"])
        .arg(&h.config)
        .env("HAL0_TEST_UPSTREAM_KEY", "sk-upstream-secret")
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&show.stdout).contains("sk-upstream-secret"));
    assert!(!h.log_text().contains("sk-upstream-secret"));
}
