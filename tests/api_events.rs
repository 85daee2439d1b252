//! The live side of the management API through the real binary: `/api/events` (state changes,
//! config reloads, rejected edits), `/api/config/errors`, and provider logs (tail and follow).

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use support::{Hal0, fake_provider, fake_slot};

const T: Duration = Duration::from_secs(20);

/// A server-sent event stream read from a real response.
struct Events {
    stream:
        std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: String,
}

impl Events {
    async fn open(h: &Hal0, path: &str) -> Events {
        let r = h
            .http
            .get(h.url(path))
            .send()
            .await
            .expect("open event stream");
        assert_eq!(r.status(), 200);
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream"),
            "{:?}",
            r.headers()
        );
        Events {
            stream: Box::pin(r.bytes_stream()),
            buf: String::new(),
        }
    }

    /// The next (event, data) pair; panics after `T`.
    async fn next(&mut self) -> (String, Value) {
        tokio::time::timeout(T, async {
            loop {
                if let Some(end) = self.buf.find("\n\n") {
                    let block: String = self.buf.drain(..end + 2).collect();
                    let mut name = String::new();
                    let mut data = String::new();
                    for line in block.lines() {
                        if let Some(v) = line.strip_prefix("event:") {
                            name = v.trim().to_string();
                        } else if let Some(v) = line.strip_prefix("data:") {
                            data.push_str(v.trim_start());
                        }
                    }
                    if !data.is_empty() {
                        return (name, serde_json::from_str(&data).expect("JSON data"));
                    }
                    continue;
                }
                let chunk = self
                    .stream
                    .next()
                    .await
                    .expect("stream open")
                    .expect("chunk");
                self.buf.push_str(&String::from_utf8_lossy(&chunk));
            }
        })
        .await
        .expect("an event in time")
    }

    /// Skips events until `f` accepts one.
    async fn until(&mut self, what: &str, mut f: impl FnMut(&str, &Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + T;
        loop {
            assert!(tokio::time::Instant::now() < deadline, "no event: {what}");
            let (name, data) = self.next().await;
            if f(&name, &data) {
                return data;
            }
        }
    }
}

#[tokio::test]
async fn events_show_every_state_change_and_every_reload_including_rejected_ones() {
    let body = format!(
        "{}{}",
        fake_provider(&["--load-delay", "300"]),
        fake_slot("primary", "")
    );
    let h = Hal0::start("", &body).await;
    let mut ev = Events::open(&h, "/api/events").await;
    let (name, snapshot) = ev.next().await;
    assert_eq!(name, "snapshot");
    assert_eq!(snapshot["slots"][0]["name"], "primary");
    assert_eq!(snapshot["slots"][0]["phase"], "stopped");
    assert!(snapshot["revision"].is_string());

    let r = h
        .http
        .post(h.url("/api/slots/primary/load"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let mut phases = Vec::new();
    ev.until("primary ready", |name, d| {
        if name == "slot" && d["name"] == "primary" && phases.last() != Some(&d["phase"]) {
            phases.push(d["phase"].clone());
        }
        d["phase"] == "ready"
    })
    .await;
    assert_eq!(phases, vec!["loading", "ready"]);

    // A broken edit is reported as a rejected reload, and the slot keeps running.
    let good = std::fs::read_to_string(&h.config).unwrap();
    h.write_raw(&good.replace(
        "provider = \"llama.cpp\"\nmodel",
        "provider = \"llama.cp\"\nmodel",
    ));
    let rejected = ev
        .until("a rejected reload", |name, _| name == "config")
        .await;
    assert_eq!(rejected["ok"], false);
    let errors = rejected["errors"].as_array().unwrap();
    assert!(
        errors
            .iter()
            .any(|e| e.as_str().unwrap().contains("slots.primary.provider")),
        "{rejected}"
    );
    let (_, now) = (
        0,
        h.http
            .get(h.url("/api/config/errors"))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap(),
    );
    assert_eq!(now["errors"], rejected["errors"]);
    assert_eq!(now["ok"], false);
    let list: Value = h
        .http
        .get(h.url("/api/slots"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["config_errors"], rejected["errors"]);
    assert_eq!(h.status("primary").await.unwrap()["phase"], "ready");

    // Fixed: an accepted reload clears the errors.
    h.write_raw(&good);
    let accepted = ev
        .until("an accepted reload", |name, _| name == "config")
        .await;
    assert_eq!(accepted["ok"], true);
    assert_eq!(accepted["errors"], Value::Array(vec![]));

    // A slot removed from the file is announced.
    let body = format!("{}{}", fake_provider(&[]), fake_slot("other", ""));
    h.write_body(&body);
    let (mut removed, mut added) = (false, false);
    ev.until("primary removed and other added", |name, d| {
        removed |= name == "slot-removed" && d["name"] == "primary";
        added |= name == "slot" && d["name"] == "other";
        removed && added
    })
    .await;
}

#[tokio::test]
async fn logs_are_tailed_as_json_and_followed_as_events() {
    let body = format!(
        "{}{}",
        fake_provider(&[]),
        fake_slot("primary", "autoload = true")
    );
    let h = Hal0::start("", &body).await;
    h.wait_phase("primary", "ready", T).await;
    let lines: Vec<String> = h
        .http
        .get(h.url("/api/slots/primary/logs?tail=50"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        lines.iter().any(|l| l.contains("fake-provider listening")),
        "{lines:?}"
    );
    assert!(lines.len() <= 50);
    let one: Vec<String> = h
        .http
        .get(h.url("/api/slots/primary/logs?tail=1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one.len(), 1);

    let mut follow = Events::open(&h, "/api/slots/primary/logs?follow=true&tail=5").await;
    let (name, first) = follow.next().await;
    assert_eq!(name, "line");
    assert!(first["line"].is_string());
    // A request makes the provider print a new line, which the follower receives.
    assert_eq!(h.chat("primary", "hello").await.status(), 200);
    follow
        .until("the chat request's log line", |_, d| {
            d["line"]
                .as_str()
                .is_some_and(|l| l.contains("POST /v1/chat/completions"))
        })
        .await;
}

#[tokio::test]
async fn open_event_and_log_streams_do_not_hold_up_shutdown() {
    let body = format!(
        "{}{}",
        fake_provider(&[]),
        fake_slot("primary", "autoload = true")
    );
    let mut h = Hal0::start("", &body).await;
    h.wait_phase("primary", "ready", T).await;
    let mut events = Events::open(&h, "/api/events").await;
    events.next().await;
    let mut logs = Events::open(&h, "/api/slots/primary/logs?follow=true").await;
    logs.next().await;
    let started = std::time::Instant::now();
    let status = h.stop().await.expect("hal0 was running");
    assert!(status.success(), "{status:?}\n{}", h.log_text());
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
}
