//! Test support: run the real `hal0` binary on a config in a temp dir, edit the config, watch
//! slot states through `/api`, and wait on conditions with a bound (never a bare sleep).
#![allow(dead_code)]

use std::future::Future;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use serde_json::Value;

pub const FAKE: &str = env!("CARGO_BIN_EXE_hal0-fake-provider");
pub const HAL0: &str = env!("CARGO_BIN_EXE_hal0");

/// Polls `f` until it returns `Some`, or panics after `timeout` with `what`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A run of `n` free consecutive ports, spread across tests and processes.
fn free_range(n: u16) -> (u16, u16) {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let seed = (std::process::id() % 500) as u16 * 40;
    loop {
        let off = NEXT.fetch_add(n + 1, Ordering::SeqCst);
        let lo = 20000 + (seed + off) % 30000;
        let hi = lo + n - 1;
        if (lo..=hi).all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return (lo, hi);
        }
    }
}

/// The real llama-server wrapper and the SmolLM2 model, installed by scripts/setup-providers.sh.
pub fn real_llama() -> (PathBuf, PathBuf) {
    (
        cache_path("HAL0_LLAMA_SERVER", "bin/llama-server"),
        cache_path(
            "HAL0_SMOLLM2_GGUF",
            "models/SmolLM2-135M-Instruct.Q4_1.gguf",
        ),
    )
}

/// A file installed by the setup scripts: `$var` if set, else `rel` under the test cache
/// (`$HAL0_TEST_CACHE`, default `~/.cache/hal0-test`). Missing files fail the test with the fix.
pub fn cache_path(var: &str, rel: &str) -> PathBuf {
    let cache = std::env::var_os("HAL0_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/hal0-test")
        });
    let p = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| cache.join(rel));
    assert!(
        p.exists(),
        "{} is missing: run scripts/test.sh (it installs the test providers)",
        p.display()
    );
    p
}

/// A server run as a child process that says where it listens on its first stderr line
/// (`… 127.0.0.1:<port> …`); killed when dropped.
pub struct ChildServer {
    child: Child,
    pub port: u16,
    /// Kept open: the server may log to it.
    _stderr: std::io::BufReader<std::process::ChildStderr>,
}

impl ChildServer {
    /// Spawns `cmd` with stderr piped and waits for its first line.
    pub fn start(mut cmd: Command) -> ChildServer {
        use std::io::BufRead;
        let mut child = cmd
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let mut stderr = std::io::BufReader::new(child.stderr.take().expect("stderr"));
        let mut line = String::new();
        // The server prints this line once it serves, or fails and closes stderr.
        stderr
            .read_line(&mut line)
            .expect("read the server's stderr");
        let port = line
            .split("127.0.0.1:")
            .nth(1)
            .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{cmd:?} did not start: {line:?}"));
        ChildServer {
            child,
            port,
            _stderr: stderr,
        }
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `hal0 serve`.
pub struct Hal0 {
    pub child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub base: String,
    pub log: PathBuf,
    pub range: (u16, u16),
    header: String,
    pub http: reqwest::Client,
    /// Extra environment for hal0.
    env: Vec<(String, String)>,
    /// A command hal0 is started through (its argv prefix), if any.
    wrapper: Vec<String>,
}

impl Hal0 {
    /// Starts hal0 with `[server]` filled in (listen, a free port range, dirs) followed by `body`
    /// (providers and slots). `server_extra` lines go into `[server]`.
    pub async fn start(server_extra: &str, body: &str) -> Hal0 {
        Self::start_with_env(server_extra, body, &[]).await
    }

    /// As `start`, with extra environment variables for hal0.
    pub async fn start_with_env(server_extra: &str, body: &str, env: &[(&str, &str)]) -> Hal0 {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let range = free_range(8);
        let header = format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nport_range = [{}, {}]\nstate_dir = \"{}\"\nmodels_dir = \"{}\"\nstop_grace = \"3s\"\n{server_extra}\n",
            range.0,
            range.1,
            dir.path().join("state").display(),
            dir.path().join("models").display(),
        );
        let config = dir.path().join("hal0.toml");
        std::fs::write(&config, format!("{header}\n{body}")).expect("write config");
        let log = dir.path().join("hal0.log");
        let mut h = Hal0 {
            child: None,
            dir,
            config,
            base: format!("http://127.0.0.1:{port}"),
            log,
            range,
            header,
            http: reqwest::Client::new(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            wrapper: Vec::new(),
        };
        h.spawn().await;
        h
    }

    /// As `start`, with hal0 started through `wrapper` (e.g. `sh -c 'ulimit -n 256; exec "$@"' sh`).
    pub async fn start_wrapped(server_extra: &str, body: &str, wrapper: &[&str]) -> Hal0 {
        let mut h = Self::start(server_extra, body).await;
        h.stop().await;
        h.wrapper = wrapper.iter().map(|s| s.to_string()).collect();
        h.spawn().await;
        h
    }

    /// Starts hal0 again on the same config and directory (after `kill9` or `stop`).
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "hal0 is still running");
        self.spawn().await;
    }

    async fn spawn(&mut self) {
        let (program, pre): (&str, &[String]) = match self.wrapper.split_first() {
            Some((p, rest)) => (p.as_str(), rest),
            None => (HAL0, &[]),
        };
        let mut cmd = Command::new(program);
        cmd.args(pre);
        if !self.wrapper.is_empty() {
            cmd.arg(HAL0);
        }
        let child = cmd
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("HAL0_LOG", "info")
            .env("NO_COLOR", "1")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.log)
                    .expect("log file"),
            )
            .spawn()
            .expect("spawn hal0");
        self.child = Some(child);
        let h = &*self;
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = h.http.get(h.url("/health")).send().await
                && r.status().is_success()
            {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "hal0 did not start listening; its log:\n{}",
                h.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Replaces the config body (the `[server]` header stays) the way editors do: write a
    /// temp file, then rename it over the old one.
    pub fn write_body(&self, body: &str) {
        self.write_raw(&format!("{}\n{body}", self.header));
    }

    pub fn write_raw(&self, text: &str) {
        let tmp = self.dir.path().join(".hal0.toml.tmp");
        std::fs::write(&tmp, text).expect("write temp config");
        std::fs::rename(&tmp, &self.config).expect("rename config");
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn status(&self, slot: &str) -> Option<Value> {
        let r = self
            .http
            .get(self.url(&format!("/api/slots/{slot}")))
            .send()
            .await
            .ok()?;
        if !r.status().is_success() {
            return None;
        }
        r.json().await.ok()
    }

    /// Waits until the slot's phase is `phase`; returns its status.
    pub async fn wait_phase(&self, slot: &str, phase: &str, timeout: Duration) -> Value {
        wait_for(&format!("slot {slot} to be {phase}"), timeout, || async {
            self.status(slot).await.filter(|s| s["phase"] == phase)
        })
        .await
    }

    /// Waits until `slot` is no longer declared.
    pub async fn wait_gone(&self, slot: &str, timeout: Duration) {
        wait_for(&format!("slot {slot} to disappear"), timeout, || async {
            let r = self
                .http
                .get(self.url(&format!("/api/slots/{slot}")))
                .send()
                .await
                .ok()?;
            (r.status() == reqwest::StatusCode::NOT_FOUND).then_some(())
        })
        .await
    }

    pub async fn pid(&self, slot: &str) -> Option<u32> {
        self.status(slot).await?["pid"].as_u64().map(|p| p as u32)
    }

    pub async fn chat(&self, model: &str, prompt: &str) -> reqwest::Response {
        self.http
            .post(self.url("/v1/chat/completions"))
            .json(&serde_json::json!({
                "model": model,
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": 8,
            }))
            .send()
            .await
            .expect("chat request")
    }

    /// SIGKILL hal0 itself.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM hal0 and wait for it (bounded).
    pub async fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let pid = nix::unistd::Pid::from_raw(c.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let status = wait_for(
            "hal0 to exit after SIGTERM",
            Duration::from_secs(20),
            || {
                let r = c.try_wait().ok().flatten();
                async move { r }
            },
        )
        .await;
        Some(status)
    }
}

impl Drop for Hal0 {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(c.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            for _ in 0..200 {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Whether a process runs (exists and is not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// A `[providers."llama.cpp"]` table running the fake provider with `flags`.
pub fn fake_provider(flags: &[&str]) -> String {
    let mut argv = vec![format!("\"{FAKE}\"")];
    argv.extend(flags.iter().map(|f| format!("\"{f}\"")));
    format!(
        "[providers.\"llama.cpp\"]\ncommand = [{}]\n",
        argv.join(", ")
    )
}

/// A model file for the fake provider (it only needs to exist).
pub fn fake_model() -> PathBuf {
    let p = std::env::temp_dir().join("hal0-test-fake-model.gguf");
    if !p.exists() {
        std::fs::write(&p, b"GGUF").expect("write fake model");
    }
    p
}

/// A `[slots.<name>]` table for the fake provider; `extra` lines are appended.
pub fn fake_slot(name: &str, extra: &str) -> String {
    format!(
        "[slots.{name}]\nprovider = \"llama.cpp\"\nmodel = \"file:{}\"\n{extra}\n",
        fake_model().display()
    )
}
