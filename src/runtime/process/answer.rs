//! The answer check before ready (a slot's `probe`): once `/health` passes, one short chat
//! completion must contain the expected text, or the load fails with what the model said.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

use crate::model::AnswerProbe;

/// What to ask a slot before it is ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerCheck {
    pub probe: AnswerProbe,
    /// The model id to name in the request (providers serving several models need it).
    pub model: Option<String>,
}

/// Longest answer kept for the error message.
const SHOWN_CHARS: usize = 300;

/// Tokens the model may use to answer.
const MAX_TOKENS: u32 = 32;

impl AnswerCheck {
    /// Asks the provider on `port`; `Err` says what was asked, what was expected and what came
    /// back (or why nothing did).
    pub async fn run(&self, port: u16, timeout: Duration) -> Result<(), String> {
        let prompt = self.probe.prompt();
        let expect = self.probe.expect();
        let asked = format!("answer check failed: asked {prompt:?} expecting {expect:?}");
        let answer = match tokio::time::timeout(timeout, self.ask(port)).await {
            Ok(Ok(a)) => a,
            Ok(Err(why)) => return Err(format!("{asked}, but {why}")),
            Err(_) => return Err(format!("{asked}, but no answer came within {timeout:?}")),
        };
        if self.probe.accepts(&answer) {
            Ok(())
        } else {
            let mut shown: String = answer.chars().take(SHOWN_CHARS).collect();
            if shown.len() < answer.len() {
                shown.push('…');
            }
            Err(format!("{asked}; the model said {shown:?}"))
        }
    }

    async fn ask(&self, port: u16) -> Result<String, String> {
        let mut body = serde_json::json!({
            "messages": [{"role": "user", "content": self.probe.prompt()}],
            "max_tokens": MAX_TOKENS,
            "temperature": 0,
            "stream": false,
        });
        if let Some(m) = &self.model {
            body["model"] = serde_json::Value::String(m.clone());
        }
        let request = http::Request::post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| format!("the request could not be built ({e})"))?;
        let client = crate::http_client::build(crate::http_client::Settings::PROBE);
        let resp = client
            .request(request)
            .await
            .map_err(|e| format!("the request failed ({e})"))?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("the answer could not be read ({e})"))?
            .to_bytes();
        let text = String::from_utf8_lossy(&bytes);
        if !status.is_success() {
            return Err(format!("the provider answered {status}: {text}"));
        }
        let v: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| format!("the answer is not JSON ({e}): {text}"))?;
        let choice = &v["choices"][0];
        choice["message"]["content"]
            .as_str()
            .or_else(|| choice["text"].as_str())
            .map(str::to_string)
            .ok_or_else(|| format!("the answer has no choices[0].message.content: {text}"))
    }
}
