//! An `openai-compatible` slot whose upstream is `https://`: hal0's TLS client against a real
//! TLS server (Python's `ssl`, i.e. OpenSSL) with a certificate made by the `openssl` tool, as
//! a user with a private CA would make one. The CA is trusted through `SSL_CERT_FILE`, as for
//! any program using the system's roots; without it the upstream is refused, not trusted.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use support::{ChildServer, Hal0};

const KEY: &str = "sk-tls-upstream-secret";

/// Runs `openssl` with `args` in `dir`; panics with its output if it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (the test needs the openssl tool)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`ca.pem`) and a server certificate it signed for `localhost` and 127.0.0.1
/// (`server.pem`, `server.key`), in `dir`.
fn make_certificates(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=hal0 test CA"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(dir, &ca);
    let mut csr = vec!["req", "-subj", "/CN=localhost"];
    csr.extend(ec);
    csr.extend(["-keyout", "server.key", "-out", "server.csr"]);
    openssl(dir, &csr);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write server.ext");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ],
    );
}

/// The HTTPS upstream (tests/fixtures/tls/upstream.py), killed on drop.
fn start_upstream(certs: &Path) -> ChildServer {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls/upstream.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script)
        .arg(certs.join("server.pem"))
        .arg(certs.join("server.key"))
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    ChildServer::start(cmd)
}

fn slot(port: u16) -> String {
    format!(
        "[slots.cloud]\nprovider = \"openai-compatible\"\nupstream = \"https://localhost:{port}/v1\"\n\
         api_key_env = \"HAL0_TEST_TLS_KEY\"\nmodels = [\"tls-model\"]\n"
    )
}

async fn chat(h: &Hal0, stream: bool) -> reqwest::Response {
    h.http
        .post(h.url("/v1/chat/completions"))
        .json(&json!({
            "model": "tls-model",
            "stream": stream,
            "messages": [{"role": "user", "content": "hi"}],
        }))
        .send()
        .await
        .expect("hal0 answers")
}

#[tokio::test]
async fn an_https_upstream_signed_by_a_trusted_ca_is_proxied_on_one_kept_connection() {
    let certs = tempfile::tempdir().expect("tempdir");
    make_certificates(certs.path());
    let up = start_upstream(certs.path());
    let ca = certs.path().join("ca.pem");
    let ca = ca.to_str().expect("utf-8 path");
    let h = Hal0::start_with_env(
        "",
        &slot(up.port),
        &[("SSL_CERT_FILE", ca), ("HAL0_TEST_TLS_KEY", KEY)],
    )
    .await;

    let mut connections = Vec::new();
    for _ in 0..3 {
        let r = chat(&h, false).await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
        let v: Value = r.json().await.expect("json");
        assert_eq!(v["choices"][0]["message"]["content"], "over tls");
        let seen = &v["seen"];
        assert_eq!(seen["path"], "/v1/chat/completions");
        assert_eq!(seen["host"], format!("localhost:{}", up.port));
        assert_eq!(seen["authorization"], format!("Bearer {KEY}"));
        connections.push(seen["connection"].clone());
    }
    assert!(
        connections.windows(2).all(|w| w[0] == w[1]),
        "one TLS connection kept for requests one after another: {connections:?}"
    );

    let r = chat(&h, true).await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream")),
        "{:?}",
        r.headers()
    );
    let text = r.text().await.expect("the stream");
    let words: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| {
            let v: Value = serde_json::from_str(d).expect("a JSON event");
            v["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(words.concat(), "over tls", "{text}");
    assert!(text.contains("data: [DONE]"), "{text}");
    assert!(!h.log_text().contains(KEY), "the key is never logged");
}

#[tokio::test]
async fn an_https_upstream_whose_certificate_is_not_trusted_is_refused_with_a_clear_error() {
    let certs = tempfile::tempdir().expect("tempdir");
    make_certificates(certs.path());
    let up = start_upstream(certs.path());
    // The system's roots only (whatever SSL_CERT_FILE the test runs with): the test CA is not
    // among them.
    let h = Hal0::start_with_env("", &slot(up.port), &[("HAL0_TEST_TLS_KEY", KEY)]).await;
    let r = chat(&h, false).await;
    assert_eq!(r.status(), 502);
    let v: Value = r.json().await.expect("an OpenAI-shaped error");
    let message = v["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    eprintln!("hal0 answered: {v}");
    assert!(
        message.contains(&format!("the certificate of https://localhost:{}", up.port))
            && message.contains("not trusted")
            && message.contains("UnknownIssuer")
            && message.contains("SSL_CERT_FILE"),
        "the error says it is the certificate, and how to trust a private CA: {v}"
    );
    assert!(!message.contains(KEY), "{message}");
    assert!(!h.log_text().contains(KEY), "the key is never logged");
}
