//! Tests of the `hal0-fake-provider` binary: spawned for real on a free port, driven over HTTP.
//! Every wait polls a condition against a deadline; nothing sleeps for state.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(20);

/// A running fake provider; killed (SIGKILL) and reaped on drop.
struct Fake {
    child: Child,
    port: u16,
    events: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hal0-fake-provider"));
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::null());
    for (key, _) in std::env::vars() {
        if key.starts_with("FAKE_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Polls `check` until it yields a value or the deadline passes.
async fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(POLL).await;
    }
}

impl Fake {
    async fn start(args: &[&str]) -> Fake {
        Self::start_with_env(args, &[]).await
    }

    /// Spawns on port 0 and learns the port from the startup line on stderr.
    async fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Fake {
        let dir = tempfile::tempdir().unwrap();
        let events = dir.path().join("events.log");
        let mut cmd = command(args);
        cmd.args(["--host", "127.0.0.1", "--port", "0", "--events-file"])
            .arg(&events)
            .envs(env.iter().copied())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn hal0-fake-provider");
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let port = wait_for("the startup line", || {
            let lines = lines.lock().unwrap();
            let line = lines
                .iter()
                .find(|l| l.starts_with("fake-provider listening on "))?;
            let addr = line.split_whitespace().nth(3)?;
            addr.rsplit(':').next()?.parse::<u16>().ok()
        })
        .await;
        Fake {
            child,
            port,
            events,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn events(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.events).unwrap_or_default();
        text.lines().map(str::to_string).collect()
    }

    async fn wait_event(&self, line: &str) {
        wait_for(&format!("event {line:?}"), || {
            self.events().iter().any(|l| l == line).then_some(())
        })
        .await;
    }

    async fn wait_exit(&mut self) -> ExitStatus {
        let child = &mut self.child;
        wait_for("the process to exit", || child.try_wait().unwrap()).await
    }

    async fn health(&self, client: &reqwest::Client) -> u16 {
        let resp = client.get(self.url("/health")).send().await;
        resp.unwrap().status().as_u16()
    }

    /// Polls /health until it answers `status`.
    async fn wait_health(&self, client: &reqwest::Client, status: u16) {
        let start = Instant::now();
        while self.health(client).await != status {
            assert!(start.elapsed() < DEADLINE, "timed out waiting for {status}");
            tokio::time::sleep(POLL).await;
        }
    }

    fn has_event(&self, line: &str) -> bool {
        self.events().iter().any(|l| l == line)
    }

    fn sigterm(&self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    }

    async fn post_json(&self, client: &reqwest::Client, path: &str, body: Value) -> Value {
        let resp = client.post(self.url(path)).json(&body).send().await;
        resp.unwrap().json().await.unwrap()
    }

    async fn chat(&self, client: &reqwest::Client, body: Value) -> reqwest::Response {
        client
            .post(self.url("/v1/chat/completions"))
            .json(&body)
            .send()
            .await
            .expect("chat request")
    }
}

fn hello(model: &str) -> Value {
    json!({"model": model, "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello there"},
    ]})
}

fn hello_streamed() -> Value {
    let mut req = hello("m");
    req["stream"] = json!(true);
    req
}

#[tokio::test]
async fn health_is_loading_until_the_load_delay_passes() {
    let client = reqwest::Client::new();
    let spawned = Instant::now();
    let fake = Fake::start(&["--load-delay", "2000"]).await;
    let resp = client.get(fake.url("/health")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["message"], "Loading model");
    let resp = fake.chat(&client, hello("m")).await;
    assert_eq!(resp.status(), 503, "llama-server refuses /v1 while loading");

    fake.wait_health(&client, 200).await;
    assert!(spawned.elapsed() >= Duration::from_millis(2000));
    let resp = client.get(fake.url("/health")).send().await.unwrap();
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({"status": "ok"}));
    assert!(fake.has_event("request /v1/chat/completions model=m"));
}

#[tokio::test]
async fn env_vars_set_the_fault_knobs() {
    let client = reqwest::Client::new();
    let fake = Fake::start_with_env(
        &[],
        &[("FAKE_FAIL_HEALTH", "1"), ("FAKE_STREAM_TOKENS", "2")],
    )
    .await;
    for _ in 0..5 {
        assert_eq!(fake.health(&client).await, 503);
    }
    let text = fake
        .chat(&client, hello_streamed())
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(text.matches("tok").count(), 2, "{text}");
}

#[tokio::test]
async fn health_flaps_to_503_after_the_configured_time() {
    let client = reqwest::Client::new();
    let fake = Fake::start(&["--health-flap-after", "3000"]).await;
    assert_eq!(fake.health(&client).await, 200);
    fake.wait_health(&client, 503).await;
    assert_eq!(fake.health(&client).await, 503, "stays unhealthy");
}

#[tokio::test]
async fn chat_echoes_the_last_user_message_model_and_port() {
    let client = reqwest::Client::new();
    let fake = Fake::start(&[]).await;
    let resp = fake.chat(&client, hello("smol")).await;
    assert_eq!(resp.status(), 200);
    let port = resp.headers()["x-fake-provider-port"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(port, fake.port.to_string());
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "fake reply to: hello there"
    );
    assert_eq!(body["model"], "smol");
    fake.wait_event("request /v1/chat/completions model=smol")
        .await;
    let start = format!("start pid={} port={}", fake.child.id(), fake.port);
    assert_eq!(fake.events()[0], start);
}

#[tokio::test]
async fn bad_json_is_an_openai_style_400() {
    let client = reqwest::Client::new();
    let fake = Fake::start(&[]).await;
    let resp = client
        .post(fake.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.headers().contains_key("x-fake-provider-port"));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(body["error"]["message"].as_str().unwrap().contains("JSON"));
}

#[tokio::test]
async fn llama_server_flags_are_accepted_and_alias_is_the_model_id() {
    let client = reqwest::Client::new();
    let args = [
        "-m",
        "/models/x.gguf",
        "--alias",
        "smol",
        "--embedding",
        "-t",
        "2",
    ];
    let fake = Fake::start(&[&args[..], &["--pooling", "mean"]].concat()).await;
    let body: Value = client
        .get(fake.url("/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["data"][0]["id"], "smol");
    let body: Value = fake
        .chat(&client, json!({"messages": []}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        body["model"], "smol",
        "a request without a model gets the alias"
    );
}

#[test]
fn unknown_flags_are_an_error() {
    let out = command(&["--no-such-flag"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-such-flag"));
}

#[test]
fn exit_on_start_exits_with_the_given_code() {
    let mut cmd = command(&["--exit-on-start", "3", "--port", "0"]);
    assert_eq!(cmd.output().unwrap().status.code(), Some(3));
    let mut cmd = command(&["--port", "0"]);
    let status = cmd.env("FAKE_EXIT_ON_START", "4").output().unwrap().status;
    assert_eq!(status.code(), Some(4));
}

#[tokio::test]
async fn streaming_chat_sends_tokens_then_done() {
    let client = reqwest::Client::new();
    let fake = Fake::start(&["--stream-tokens", "3", "--stream-chunk-delay", "5"]).await;
    let resp = fake.chat(&client, hello_streamed()).await;
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let text = resp.text().await.unwrap();
    let data: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(data.len(), 5, "3 tokens, a finishing chunk, [DONE]: {text}");
    assert_eq!(data[4], "[DONE]");
    let content: String = data[..4]
        .iter()
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(content, "tok0 tok1 tok2 ");
    fake.wait_event("stream-complete").await;
    assert!(!fake.has_event("stream-cancelled"));
}

#[tokio::test]
async fn a_client_disconnect_mid_stream_is_recorded_as_cancelled() {
    let client = reqwest::Client::new();
    let fake = Fake::start(&["--stream-tokens", "1000", "--stream-chunk-delay", "20"]).await;
    let resp = fake.chat(&client, hello_streamed()).await;
    let mut body = resp.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));
    drop(body);
    fake.wait_event("stream-cancelled").await;
    assert!(!fake.has_event("stream-complete"));
}

#[tokio::test]
async fn crash_after_requests_exits_1_after_the_nth_response() {
    let client = reqwest::Client::new();
    let mut fake = Fake::start(&["--crash-after-requests", "2"]).await;
    for _ in 0..2 {
        let resp = fake.chat(&client, hello("m")).await;
        assert_eq!(resp.status(), 200);
        assert!(
            resp.json::<Value>().await.is_ok(),
            "the response arrives whole"
        );
    }
    assert_eq!(fake.wait_exit().await.code(), Some(1));
    assert!(fake.has_event("crash after-requests=2"));
    assert!(client.get(fake.url("/health")).send().await.is_err());
}

#[tokio::test]
async fn crash_after_ms_exits_1() {
    let mut fake = Fake::start(&["--crash-after-ms", "1000"]).await;
    assert_eq!(fake.wait_exit().await.code(), Some(1));
    assert!(fake.has_event("crash after-ms=1000"));
}

#[tokio::test]
async fn sigterm_is_recorded_and_exits_0() {
    let mut fake = Fake::start(&[]).await;
    fake.sigterm();
    assert_eq!(fake.wait_exit().await.code(), Some(0));
    assert!(fake.has_event("sigterm"));
}

#[tokio::test]
async fn ignored_sigterm_keeps_serving_until_sigkill() {
    use std::os::unix::process::ExitStatusExt;
    let client = reqwest::Client::new();
    let mut fake = Fake::start(&["--ignore-sigterm"]).await;
    fake.sigterm();
    fake.wait_event("sigterm-ignored").await;
    assert_eq!(fake.health(&client).await, 200);
    assert!(fake.child.try_wait().unwrap().is_none());
    fake.child.kill().unwrap();
    assert_eq!(fake.wait_exit().await.signal(), Some(9));
}

#[tokio::test]
async fn completions_embeddings_and_rerank_answer_in_openai_shape() {
    let client = reqwest::Client::new();
    let fake = Fake::start(&["--embedding-dim", "4"]).await;
    let req = json!({"model": "c", "prompt": "once"});
    let body = fake.post_json(&client, "/v1/completions", req).await;
    assert_eq!(body["choices"][0]["text"], "fake completion of: once");
    assert_eq!(body["model"], "c");

    let req = json!({"model": "e", "input": ["a", "b", "a"]});
    let body = fake.post_json(&client, "/v1/embeddings", req).await;
    let vectors: Vec<&Value> = (0..3).map(|i| &body["data"][i]["embedding"]).collect();
    assert_eq!(vectors[0].as_array().unwrap().len(), 4);
    assert_eq!(vectors[0], vectors[2], "deterministic");
    assert_ne!(vectors[0], vectors[1]);
    assert_eq!(body["model"], "e");

    let req =
        json!({"model": "r", "query": "red fox", "documents": ["blue sky", "red fox", "a fox"]});
    let body = fake.post_json(&client, "/v1/rerank", req).await;
    let order: Vec<u64> = (0..3)
        .map(|i| body["results"][i]["index"].as_u64().unwrap())
        .collect();
    assert_eq!(order, [1, 2, 0]);
    assert_eq!(body["model"], "r");
}

#[tokio::test]
async fn audio_endpoints_transcribe_and_speak() {
    let client = reqwest::Client::new();
    let fake = Fake::start(&[]).await;
    let boundary = "XyZ";
    let form = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\
         Content-Type: audio/wav\r\n\r\nRIFFdata\r\n--{boundary}--\r\n"
    );
    let resp = client
        .post(fake.url("/v1/audio/transcriptions"))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(form.clone())
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["text"],
        format!("fake transcript of {} bytes", form.len())
    );
    assert_eq!(body["model"], "whisper");
    fake.wait_event("request /v1/audio/transcriptions model=whisper")
        .await;

    let req = json!({"model": "kokoro", "input": "hi", "voice": "af"});
    let resp = client
        .post(fake.url("/v1/audio/speech"))
        .json(&req)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "audio/wav");
    let wav = resp.bytes().await.unwrap();
    assert_eq!(&wav[..4], b"RIFF");
    assert_eq!(&wav[8..16], b"WAVEfmt ");
    let riff_len = u32::from_le_bytes(wav[4..8].try_into().unwrap()) as usize;
    let data_len = u32::from_le_bytes(wav[40..44].try_into().unwrap()) as usize;
    assert_eq!(riff_len + 8, wav.len());
    assert_eq!(data_len + 44, wav.len());
}
