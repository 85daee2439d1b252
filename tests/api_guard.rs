//! What `/api` shows and who may write, probed with curl against the real binary: secrets are
//! never shown (API, event stream, CLI), URL credentials are refused with a clear error, writes
//! are JSON only, a `Host` hal0 is not served under is refused (DNS rebinding), and so is a
//! write from another origin.

mod support;

use std::process::Command;

use serde_json::{Value, json};
use support::{HAL0, Hal0, fake_model, fake_provider, fake_slot};

const SECRET: &str = "s3cr3t-value-never-shown";

/// curl with `args`; returns (status, body).
fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl is installed (scripts/test.sh needs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn code_of(body: &str) -> String {
    serde_json::from_str::<Value>(body).unwrap_or(Value::Null)["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn secret_hal0() -> Hal0 {
    let body = format!(
        "{}{}",
        fake_provider(&[]),
        fake_slot(
            "primary",
            &format!("env = {{ HF_TOKEN = \"{SECRET}\", PLAIN = \"{SECRET}-2\" }}")
        )
    );
    Hal0::start_with_env(
        "admin_token_env = \"TEST_ADMIN\"\napi_keys = [\"TEST_KEY\"]",
        &body,
        &[("TEST_ADMIN", "admin-tok"), ("TEST_KEY", "key-1")],
    )
    .await
}

#[tokio::test]
async fn env_values_are_never_shown_by_the_api_the_event_stream_or_the_cli() {
    let h = secret_hal0().await;
    let (status, list) = curl(&[&h.url("/api/slots")]);
    assert_eq!(status, 200, "{list}");
    assert!(
        !list.contains(SECRET),
        "GET /api/slots shows a secret: {list}"
    );
    let v: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(
        v["slots"][0]["spec"]["env"]["HF_TOKEN"], "<redacted>",
        "{v}"
    );
    assert_eq!(v["slots"][0]["spec"]["env"]["PLAIN"], "<redacted>", "{v}");
    let (_, one) = curl(&[&h.url("/api/slots/primary")]);
    assert!(!one.contains(SECRET), "{one}");
    let (status, file) = curl(&[&h.url("/api/slots/primary/file")]);
    assert_eq!(status, 200, "{file}");
    assert!(
        file.contains("HF_TOKEN") && !file.contains(SECRET),
        "{file}"
    );
    // The event stream's snapshot (curl stops after a second of it).
    let out = Command::new("curl")
        .args(["-sS", "-N", "--max-time", "1", &h.url("/api/events")])
        .output()
        .unwrap();
    let events = String::from_utf8_lossy(&out.stdout);
    assert!(events.contains("event: snapshot"), "{events}");
    assert!(!events.contains(SECRET), "{events}");
    // The CLI.
    let out = tokio::process::Command::new(HAL0)
        .args(["slot", "list", "--json", "--url", &h.base])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("HF_TOKEN") && !text.contains(SECRET),
        "{text}"
    );
    // A write answers with the spec, redacted too; sending "<redacted>" back keeps the value.
    let (status, body) = curl(&[
        "-X",
        "PATCH",
        "-H",
        "Authorization: Bearer admin-tok",
        "-H",
        "Content-Type: application/json",
        "--data",
        r#"{"env": {"HF_TOKEN": "<redacted>", "PLAIN": "<redacted>", "NEW": "x"}, "idle_timeout": "20m"}"#,
        &h.url("/api/slots/primary"),
    ]);
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains(SECRET), "{body}");
    let file = std::fs::read_to_string(&h.config).unwrap();
    assert!(file.contains(&format!("HF_TOKEN = \"{SECRET}\"")), "{file}");
    assert!(file.contains(&format!("PLAIN = \"{SECRET}-2\"")), "{file}");
    assert!(!h.log_text().contains(SECRET), "the log shows a secret");
}

#[tokio::test]
async fn credentials_in_an_upstream_url_are_refused_without_showing_them() {
    let h = Hal0::start("", &fake_provider(&[])).await;
    let (status, body) = curl(&[
        "-H",
        "Content-Type: application/json",
        "--data",
        &json!({"name": "cloud", "provider": "openai-compatible",
                "upstream": format!("https://user:{SECRET}@api.example.com/v1"), "models": ["m"]})
        .to_string(),
        &h.url("/api/slots"),
    ]);
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("api_key_env"), "{body}");
    assert!(!body.contains(SECRET), "{body}");
    // The same by hand: `hal0 config validate` names the line and never the password.
    let path = h.dir.path().join("bad.toml");
    std::fs::write(
        &path,
        format!(
            "[slots.cloud]\nprovider = \"openai-compatible\"\nupstream = \"https://user:{SECRET}@api.example.com/v1\"\nmodels = [\"m\"]\n"
        ),
    )
    .unwrap();
    let out = Command::new(HAL0)
        .args(["config", "validate", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let err =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        err.contains("bad.toml:3:") && err.contains("credentials"),
        "{err}"
    );
    assert!(!err.contains(SECRET), "{err}");
}

#[tokio::test]
async fn writes_are_json_only() {
    let h = Hal0::start(
        "",
        &format!("{}{}", fake_provider(&[]), fake_slot("primary", "")),
    )
    .await;
    let model = format!("file:{}", fake_model().display());
    let body = json!({"name": "x", "provider": "llama.cpp", "model": model, "env": {"LD_PRELOAD": "/tmp/x.so"}}).to_string();
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let (status, resp) = curl(&[
            "-H",
            &format!("Content-Type: {ct}"),
            "--data",
            &body,
            &h.url("/api/slots"),
        ]);
        assert_eq!(status, 415, "{ct}: {resp}");
        assert_eq!(code_of(&resp), "unsupported_media_type", "{resp}");
    }
    // A body without any Content-Type (a browser's Blob) is refused too.
    let (status, resp) = curl(&[
        "-H",
        "Content-Type:",
        "--data-binary",
        &body,
        &h.url("/api/slots"),
    ]);
    assert_eq!(status, 415, "{resp}");
    assert!(
        !std::fs::read_to_string(&h.config)
            .unwrap()
            .contains("[slots.x]")
    );
    let (status, resp) = curl(&[
        "-H",
        "Content-Type: application/json",
        "--data",
        &body,
        &h.url("/api/slots"),
    ]);
    assert_eq!(status, 201, "{resp}");
}

#[tokio::test]
async fn a_host_hal0_is_not_served_under_is_refused_and_so_is_another_origin() {
    let h = Hal0::start(
        "allowed_hosts = [\"hal0.test\", \"*.lan.test\"]",
        &format!("{}{}", fake_provider(&[]), fake_slot("primary", "")),
    )
    .await;
    let port = h.base.rsplit(':').next().unwrap().to_string();
    let model = format!("file:{}", fake_model().display());
    let body = json!({"name": "evil", "provider": "llama.cpp", "model": model, "env": {"LD_PRELOAD": "/tmp/x.so"}}).to_string();
    // The DNS-rebinding probe: the page's own name as Host, and its origin.
    let (status, resp) = curl(&[
        "-H",
        &format!("Host: rebind.example:{port}"),
        "-H",
        &format!("Origin: http://rebind.example:{port}"),
        "-H",
        "Content-Type: application/json",
        "--data",
        &body,
        &h.url("/api/slots"),
    ]);
    assert_eq!(status, 403, "{resp}");
    assert_eq!(code_of(&resp), "host_not_allowed", "{resp}");
    // Reads under a foreign name are refused as well (they would leak to the page).
    let (status, resp) = curl(&["-H", "Host: rebind.example", &h.url("/api/slots")]);
    assert_eq!(status, 403, "{resp}");
    assert!(!std::fs::read_to_string(&h.config).unwrap().contains("evil"));
    // Names hal0 is served under: loopback names, IP addresses, and the configured list.
    for host in [
        "localhost".to_string(),
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        "[::1]".to_string(),
        format!("hal0.test:{port}"),
        "box.lan.test".to_string(),
    ] {
        let (status, resp) = curl(&["-H", &format!("Host: {host}"), &h.url("/api/slots")]);
        assert_eq!(status, 200, "{host}: {resp}");
    }
    // A write whose Origin is not the page it was sent to.
    for origin in [
        format!("http://127.0.0.1:{}", port.parse::<u16>().unwrap() + 1),
        "http://evil.example".to_string(),
        "null".to_string(),
    ] {
        let (status, resp) = curl(&[
            "-H",
            &format!("Origin: {origin}"),
            "-H",
            "Content-Type: application/json",
            "--data",
            &body,
            &h.url("/api/slots"),
        ]);
        assert_eq!(status, 403, "{origin}: {resp}");
        assert_eq!(code_of(&resp), "cross_origin", "{resp}");
    }
    // The dashboard's own writes: same origin.
    let (status, resp) = curl(&[
        "-H",
        &format!("Origin: http://127.0.0.1:{port}"),
        "-H",
        "Content-Type: application/json",
        "--data",
        &body,
        &h.url("/api/slots"),
    ]);
    assert_eq!(status, 201, "{resp}");
}
