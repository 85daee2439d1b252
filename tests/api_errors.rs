//! Every error is JSON in the documented shape, with the documented status, through the real
//! binary; and schemathesis, driven by `/api/openapi.json`, finds no server error and no answer
//! that the document does not describe.

mod support;

use std::process::Command;

use reqwest::StatusCode;
use serde_json::Value;
use support::{Hal0, cache_path, fake_provider, fake_slot};

async fn json_of(r: reqwest::Response) -> (StatusCode, Option<String>, Value) {
    let status = r.status();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, ct, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn errors_axum_would_answer_in_plain_text_are_json() {
    let h = Hal0::start(
        "",
        &format!("{}{}", fake_provider(&[]), fake_slot("primary", "")),
    )
    .await;
    // Over the /api body limit.
    let big = format!("{{\"name\": \"big\", \"x\": \"{}\"}}", "a".repeat(3 << 20));
    // (Its own client: the answer comes before the body is read, and the connection closes.)
    let r = reqwest::Client::new()
        .post(h.url("/api/slots"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    let (status, ct, v) = json_of(r).await;
    assert_eq!(status, 413);
    assert_eq!(ct.as_deref(), Some("application/json"));
    assert_eq!(v["error"]["code"], "body_too_large", "{v}");
    // A bad query string.
    for q in ["tail=abc", "tail=-1", "follow=maybe"] {
        let r = h
            .http
            .get(h.url(&format!("/api/slots/primary/logs?{q}")))
            .send()
            .await
            .unwrap();
        let (status, ct, v) = json_of(r).await;
        assert_eq!(status, 400, "{q}");
        assert_eq!(ct.as_deref(), Some("application/json"), "{q}");
        assert_eq!(v["error"]["code"], "bad_request", "{q}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("tail") || q.starts_with("follow"),
            "{v}"
        );
    }
    // A method the path does not take, on /api and on /v1 (OpenAI's shape there).
    let r = h.http.delete(h.url("/api/slots")).send().await.unwrap();
    let allow = r.headers().get("allow").cloned();
    let (status, _, v) = json_of(r).await;
    assert_eq!(status, 405);
    assert!(allow.is_some());
    assert_eq!(v["error"]["code"], "method_not_allowed", "{v}");
    let r = h
        .http
        .get(h.url("/v1/chat/completions"))
        .send()
        .await
        .unwrap();
    let (status, ct, v) = json_of(r).await;
    assert_eq!(status, 405);
    assert_eq!(ct.as_deref(), Some("application/json"));
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    assert_eq!(v["error"]["code"], "method_not_allowed", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("POST"),
        "{v}"
    );
}

#[tokio::test]
async fn the_openapi_document_names_the_slot_name_pattern() {
    let h = Hal0::start("", &fake_provider(&[])).await;
    let doc: Value = h
        .http
        .get(h.url("/api/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let param = &doc["paths"]["/api/slots/{name}"]["parameters"][0];
    assert_eq!(param["schema"]["pattern"], "^[a-z][a-z0-9_-]*$", "{param}");
    assert_eq!(param["schema"]["maxLength"], 50);
    let load = &doc["paths"]["/api/slots/{name}/load"]["post"]["responses"];
    for code in ["202", "400", "401", "403", "404", "415"] {
        assert!(
            load.get(code).is_some(),
            "load does not list {code}: {load}"
        );
    }
}

/// schemathesis (installed by scripts/test.sh) against `/api/openapi.json`, a bounded number of
/// examples per operation: zero server errors, zero answers the document does not describe.
/// The two endpoints that stream until hal0 stops (`/api/events`, `/api/slots/{name}/logs`,
/// which can follow) are left out; their errors are tested above.
#[ignore = "needs schemathesis (scripts/setup-schemathesis.sh); scripts/test.sh runs it"]
#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_schema_mismatch() {
    let st = cache_path("HAL0_SCHEMATHESIS", "venv/schemathesis/bin/st");
    let body = format!(
        "{}{}{}",
        fake_provider(&[]),
        fake_slot("primary", ""),
        fake_slot("other", "idle_timeout = \"5m\"")
    );
    let h = Hal0::start("", &body).await;
    let report = h.dir.path().join("schemathesis");
    let out = tokio::task::spawn_blocking({
        let url = h.url("/api/openapi.json");
        let report = report.clone();
        move || {
            Command::new(&st)
                .args(["run", &url])
                .args([
                    "--checks",
                    "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
                    "--max-examples",
                    "25",
                    "--seed",
                    "1",
                    "--workers",
                    "1",
                    "--exclude-operation-id",
                    "events",
                    "--exclude-operation-id",
                    "slotLogs",
                    "--request-timeout",
                    "20",
                    "--no-color",
                    "--report-dir",
                ])
                .arg(&report)
                // Its example database and caches go to the test's directory, not the repo.
                .current_dir(report.parent().expect("a temp dir"))
                .env("SCHEMATHESIS_HOOKS", "")
                .output()
                .expect("run schemathesis")
        }
    })
    .await
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{text}\nhal0's log:\n{}",
        h.log_text()
    );
    assert!(text.contains("passed"), "{text}");
    eprintln!("{text}");
}
