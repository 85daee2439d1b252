//! HTTP readiness probes: `GET http://127.0.0.1:<port><path>` answering 200.

use std::time::Duration;

use crate::http_client::{self, Client, Settings};

/// Probes one endpoint.
pub struct Probe {
    uri: http::Uri,
    client: Client,
}

const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

impl Probe {
    pub fn new(port: u16, path: &str) -> Self {
        let uri = format!("http://127.0.0.1:{port}{path}")
            .parse()
            .unwrap_or_else(|_| http::Uri::from_static("http://127.0.0.1/"));
        let client = http_client::build(Settings::PROBE);
        Probe { uri, client }
    }

    /// Whether the endpoint answered 200 within the probe timeout.
    pub async fn check(&self) -> bool {
        let res = tokio::time::timeout(PROBE_TIMEOUT, self.client.get(self.uri.clone())).await;
        matches!(res, Ok(Ok(resp)) if resp.status() == http::StatusCode::OK)
    }
}

/// Asks a llama-server whether it sleeps: `GET /props` → `is_sleeping`
/// (`--sleep-idle-seconds`). Reading it does not wake the server.
pub struct SleepProbe {
    uri: http::Uri,
    client: Client,
}

impl SleepProbe {
    pub fn new(port: u16) -> Self {
        let uri = format!("http://127.0.0.1:{port}/props")
            .parse()
            .unwrap_or_else(|_| http::Uri::from_static("http://127.0.0.1/props"));
        let client = http_client::build(Settings::PROBE);
        SleepProbe { uri, client }
    }

    /// `Some(asleep)`, or `None` when the server did not say.
    pub async fn asleep(&self) -> Option<bool> {
        use http_body_util::BodyExt;
        let resp = tokio::time::timeout(PROBE_TIMEOUT, self.client.get(self.uri.clone()))
            .await
            .ok()?
            .ok()?;
        if resp.status() != http::StatusCode::OK {
            return None;
        }
        let body = tokio::time::timeout(PROBE_TIMEOUT, resp.into_body().collect())
            .await
            .ok()?
            .ok()?
            .to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
        v.get("is_sleeping")?.as_bool()
    }
}
