//! The management API through the real `hal0` binary: slot writes go through hal0.toml (comments
//! kept, revisions checked), errors are JSON with a code, and the OpenAPI document lists every
//! endpoint the server answers.

mod support;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Hal0, fake_model, fake_provider, fake_slot, wait_for};

const T: Duration = Duration::from_secs(20);

/// A body with the user's own comments, which every write must keep.
fn commented_body() -> String {
    format!(
        "# my providers\n{}\n# the chat model I use every day\n{}# end of my slots\n",
        fake_provider(&[]),
        fake_slot(
            "primary",
            "idle_timeout = \"10m\"   # ten minutes is plenty"
        )
    )
}

async fn json_of(r: reqwest::Response) -> (StatusCode, Value) {
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn revision(h: &Hal0) -> String {
    let (_, list) = json_of(h.http.get(h.url("/api/slots")).send().await.unwrap()).await;
    list["revision"].as_str().expect("a revision").to_string()
}

fn file(h: &Hal0) -> String {
    std::fs::read_to_string(&h.config).unwrap()
}

#[tokio::test]
async fn slots_are_created_updated_and_deleted_through_the_file_keeping_comments() {
    let h = Hal0::start("", &commented_body()).await;
    let (status, list) = json_of(h.http.get(h.url("/api/slots")).send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(list["slots"][0]["name"], "primary");
    assert_eq!(list["slots"][0]["phase"], "stopped");
    assert_eq!(list["slots"][0]["spec"]["idle_timeout"], "10m");
    assert_eq!(list["config_errors"], json!([]));

    let model = format!("file:{}", fake_model().display());
    let rev = revision(&h).await;
    let (status, created) = json_of(
        h.http
            .post(h.url("/api/slots"))
            .json(
                &json!({"name": "fast", "provider": "llama.cpp", "model": model,
                          "idle_timeout": "30m", "device": "cpu", "revision": rev}),
            )
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["spec"]["idle_timeout"], "30m");
    let text = file(&h);
    for comment in [
        "# my providers",
        "# the chat model I use every day",
        "# ten minutes is plenty",
        "# end of my slots",
    ] {
        assert!(text.contains(comment), "{comment:?} lost:\n{text}");
    }
    assert!(
        text.contains("[slots.fast]\nprovider = \"llama.cpp\""),
        "{text}"
    );
    assert_eq!(created["revision"], revision(&h).await);
    // The watcher applies the file: the slot appears with its spec.
    let fast = wait_for("fast to appear", T, || async { h.status("fast").await }).await;
    assert_eq!(fast["phase"], "stopped");
    assert_eq!(fast["spec"]["device"], "cpu");

    // PATCH changes one field; the If-Match header carries the revision.
    let (status, patched) = json_of(
        h.http
            .patch(h.url("/api/slots/fast"))
            .header("If-Match", format!("\"{}\"", revision(&h).await))
            .json(&json!({"idle_timeout": "5m", "device": null}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["spec"]["idle_timeout"], "5m");
    assert!(patched["spec"].get("device").is_none(), "{patched}");

    // PUT replaces every field; the kept key keeps its comment.
    let (status, put) = json_of(
        h.http
            .put(h.url("/api/slots/primary"))
            .json(&json!({"provider": "llama.cpp", "model": model, "idle_timeout": "20m"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{put}");
    assert!(file(&h).contains("idle_timeout = \"20m\"   # ten minutes is plenty"));
    wait_for("primary's new idle timeout", T, || async {
        h.status("primary")
            .await
            .filter(|s| s["spec"]["idle_timeout"] == "20m")
    })
    .await;

    let (status, deleted) = json_of(
        h.http
            .delete(h.url(&format!("/api/slots/fast?revision={}", revision(&h).await)))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{deleted}");
    h.wait_gone("fast", T).await;
    let text = file(&h);
    assert!(!text.contains("[slots.fast]"), "{text}");
    assert!(text.contains("# end of my slots"), "{text}");
}

#[tokio::test]
async fn a_write_against_a_stale_revision_is_a_conflict_and_the_hand_edit_survives() {
    let h = Hal0::start("", &commented_body()).await;
    let seen = revision(&h).await;
    // Someone edits the file by hand meanwhile.
    let hand = file(&h).replace("# end of my slots", "# edited by hand");
    h.write_raw(&hand);
    let model = format!("file:{}", fake_model().display());
    let slot = json!({"name": "fast", "provider": "llama.cpp", "model": model});
    let (status, err) = json_of(
        h.http
            .post(h.url("/api/slots"))
            .header("If-Match", &seen)
            .json(&slot)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["error"]["code"], "stale_revision");
    assert_eq!(file(&h), hand, "nothing written");
    let current = err["error"]["details"]["revision"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(current, seen);
    // Retried against the current revision, both changes are in the file.
    let r = h
        .http
        .post(h.url("/api/slots"))
        .header("If-Match", &current)
        .json(&slot)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let text = file(&h);
    assert!(
        text.contains("# edited by hand") && text.contains("[slots.fast]"),
        "{text}"
    );
}

#[tokio::test]
async fn bad_requests_get_json_errors_with_codes() {
    let h = Hal0::start("", &commented_body()).await;
    let before = file(&h);
    let post = |body: Value| h.http.post(h.url("/api/slots")).json(&body).send();
    let cases = [
        (
            json!({"name": "Bad Name", "provider": "llama.cpp", "model": "x"}),
            400,
            "invalid_slot_name",
        ),
        (json!({"provider": "llama.cpp"}), 400, "missing_name"),
        (
            json!({"name": "primary", "provider": "llama.cpp", "model": "file:/m.gguf"}),
            409,
            "slot_exists",
        ),
        (
            json!({"name": "x", "provider": "lama.cpp", "model": "file:/m.gguf"}),
            422,
            "invalid_config",
        ),
        (
            json!({"name": "x", "provider": "llama.cpp"}),
            422,
            "invalid_config",
        ),
    ];
    for (body, status, code) in cases {
        let (s, err) = json_of(post(body.clone()).await.unwrap()).await;
        assert_eq!(
            (s.as_u16(), err["error"]["code"].as_str()),
            (status, Some(code)),
            "{body} → {err}"
        );
        assert!(!err["error"]["message"].as_str().unwrap().is_empty());
    }
    let (_, err) = json_of(
        post(json!({"name": "x", "provider": "lama.cpp", "model": "file:/m.gguf"}))
            .await
            .unwrap(),
    )
    .await;
    let d = &err["error"]["details"]["diagnostics"][0];
    assert_eq!(d["field"], "slots.x.provider", "{err}");
    assert!(
        d["message"]
            .as_str()
            .unwrap()
            .contains("did you mean \"llama.cpp\""),
        "{err}"
    );
    assert_eq!(file(&h), before, "no failed write touched the file");

    let (s, err) = json_of(
        h.http
            .post(h.url("/api/slots"))
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s.as_u16(), err["error"]["code"].as_str()),
        (400, Some("invalid_json"))
    );
    for (method, path, status, code) in [
        ("GET", "/api/slots/nope", 404, "slot_not_found"),
        ("POST", "/api/slots/nope/load", 404, "slot_not_found"),
        ("DELETE", "/api/slots/nope", 404, "slot_not_found"),
        ("GET", "/api/nothing-here", 404, "unknown_endpoint"),
    ] {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let (s, err) = json_of(h.http.request(m, h.url(path)).send().await.unwrap()).await;
        assert_eq!(
            (s.as_u16(), err["error"]["code"].as_str()),
            (status, Some(code)),
            "{method} {path}"
        );
    }
    // A page from another origin may not drive hal0.
    let (s, err) = json_of(
        h.http
            .post(h.url("/api/slots/primary/load"))
            .header("Origin", "https://elsewhere.example")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s.as_u16(), err["error"]["code"].as_str()),
        (403, Some("cross_origin"))
    );
}

#[tokio::test]
async fn writes_need_the_admin_token_when_one_is_configured() {
    // The token lives in an environment variable hal0 inherits; HOME is always set.
    let token = std::env::var("HOME").expect("HOME is set");
    let h = Hal0::start("admin_token_env = \"HOME\"", &commented_body()).await;
    let load = || h.http.post(h.url("/api/slots/primary/unload"));
    let (s, err) = json_of(load().send().await.unwrap()).await;
    assert_eq!(
        (s.as_u16(), err["error"]["code"].as_str()),
        (401, Some("admin_token_missing"))
    );
    let (s, err) = json_of(load().bearer_auth("wrong").send().await.unwrap()).await;
    assert_eq!(
        (s.as_u16(), err["error"]["code"].as_str()),
        (401, Some("bad_admin_token"))
    );
    assert_eq!(
        load().bearer_auth(&token).send().await.unwrap().status(),
        202
    );
    // Reads stay open.
    assert_eq!(
        h.http
            .get(h.url("/api/slots"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn the_openapi_document_describes_every_endpoint_and_each_one_answers() {
    let h = Hal0::start("", &commented_body()).await;
    let (s, doc) = json_of(h.http.get(h.url("/api/openapi.json")).send().await.unwrap()).await;
    assert_eq!(s, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    let expected = [
        "/api/slots",
        "/api/slots/{name}",
        "/api/slots/{name}/load",
        "/api/slots/{name}/unload",
        "/api/slots/{name}/logs",
        "/api/events",
        "/api/config",
        "/api/config/errors",
        "/api/slots/{name}/file",
        "/api/rules",
        "/api/models/pull",
        "/api/models/pulls",
        "/api/openapi.json",
    ];
    let mut listed: Vec<&str> = paths.keys().map(String::as_str).collect();
    listed.sort();
    let mut want = expected.to_vec();
    want.sort();
    assert_eq!(listed, want);
    for (path, ops) in paths {
        for (method, _) in ops
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| *k != "parameters")
        {
            // Writes target a slot that does not exist, so they change nothing.
            let url = h.url(&path.replace("{name}", "not-declared"));
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let mut req = h.http.request(m, &url);
            if method != "get" && method != "delete" {
                req = req.json(&json!({"provider": "llama.cpp"}));
            }
            let resp = tokio::time::timeout(T, req.send()).await.unwrap().unwrap();
            let status = resp.status();
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            if resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json")
            {
                let body: Value = resp.json().await.unwrap();
                assert_ne!(body["error"]["code"], "unknown_endpoint", "{method} {path}");
                if !status.is_success() {
                    assert!(body["error"]["code"].is_string(), "{method} {path}: {body}");
                }
            }
        }
    }
}
