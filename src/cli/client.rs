//! The CLI's HTTP client for a running hal0: JSON requests and event streams over plain HTTP
//! (the daemon is on this machine or a trusted network), with errors that say what to do.

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::Value;

use super::sse::{SseEvent, SseParser};
use crate::http_client::{self, Settings};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("hal0 is not running at {url} (or not reachable): {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{message}")]
    Api {
        status: StatusCode,
        code: String,
        message: String,
        details: Value,
    },
    #[error("unexpected answer from hal0 at {url}: {reason}")]
    BadResponse { url: String, reason: String },
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// A connection to one hal0.
#[derive(Clone)]
pub struct Daemon {
    /// `http://host:port`, no trailing slash.
    pub base: String,
    /// Sent as `Authorization: Bearer` on every request.
    pub token: Option<String>,
    client: http_client::Client,
}

impl Daemon {
    pub fn new(base: &str, token: Option<String>) -> Self {
        Daemon {
            base: base.trim_end_matches('/').to_string(),
            token,
            client: http_client::build(Settings::CLI),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<hyper::Response<Incoming>> {
        let url = self.url(path);
        let mut req = Request::builder().method(method).uri(&url);
        if let Some(t) = &self.token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let bytes = match body {
            Some(b) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(b.to_string())
            }
            None => Bytes::new(),
        };
        let req = req
            .body(Full::new(bytes))
            .map_err(|e| ClientError::BadResponse {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        self.client
            .request(req)
            .await
            .map_err(|e| ClientError::Unreachable {
                url: self.base.clone(),
                reason: std::error::Error::source(&e)
                    .map_or_else(|| e.to_string(), |s| s.to_string()),
            })
    }

    /// A JSON request; a JSON error answer becomes `ClientError::Api`.
    pub async fn json(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value> {
        let resp = self.send(method, path, body).await?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::BadResponse {
                url: self.url(path),
                reason: e.to_string(),
            })?
            .to_bytes();
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(value);
        }
        let err = &value["error"];
        Err(ClientError::Api {
            status,
            code: err["code"].as_str().unwrap_or("http_error").to_string(),
            message: err["message"]
                .as_str()
                .map_or_else(|| format!("hal0 answered {status}"), str::to_string),
            details: err["details"].clone(),
        })
    }

    pub async fn get(&self, path: &str) -> Result<Value> {
        self.json(Method::GET, path, None).await
    }

    /// Opens an event stream.
    pub async fn events(&self, path: &str) -> Result<EventStream> {
        let resp = self.send(Method::GET, path, None).await?;
        if !resp.status().is_success() {
            return Err(ClientError::BadResponse {
                url: self.url(path),
                reason: format!("status {}", resp.status()),
            });
        }
        Ok(EventStream {
            body: resp.into_body(),
            parser: SseParser::default(),
            pending: Vec::new(),
        })
    }
}

/// Events as they arrive.
pub struct EventStream {
    body: Incoming,
    parser: SseParser,
    /// Parsed but not yet handed out, oldest last.
    pending: Vec<SseEvent>,
}

impl EventStream {
    /// The next event; `None` when the server closed the stream.
    pub async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(e) = self.pending.pop() {
                return Some(e);
            }
            let frame = self.body.frame().await?.ok()?;
            if let Ok(data) = frame.into_data() {
                let mut evs = self.parser.push(&data);
                evs.reverse();
                self.pending = evs;
            }
        }
    }
}
