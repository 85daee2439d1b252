//! A slot's provider output: the last lines as JSON, or (`?follow=true`, or an
//! `Accept: text/event-stream`) the last lines and then every new one as server-sent events.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::slots::find;
use super::views::LogLine;
use super::{ApiError, ApiState};

/// As many lines as the runtime keeps per slot: a follower compares whole buffers.
const BUFFER_LINES: usize = 2000;
/// How often a follower looks for new lines.
const FOLLOW_EVERY: Duration = Duration::from_millis(250);

#[derive(Debug, Deserialize)]
pub struct LogsQuery {
    /// How many of the last lines (default 200).
    tail: Option<usize>,
    /// Keep the response open and send new lines as they come.
    follow: Option<bool>,
}

pub async fn logs(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    Query(q): Query<LogsQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (slot, _) = find(&state, &name)?;
    let tail = q.tail.unwrap_or(200).min(BUFFER_LINES);
    let wants_sse = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    if !(q.follow.unwrap_or(false) || wants_sse) {
        return Ok(Json(state.admin.logs(&slot, tail).unwrap_or_default()).into_response());
    }
    let (tx, rx) = mpsc::channel::<String>(256);
    tokio::spawn(async move {
        let mut seen = state.admin.logs(&slot, BUFFER_LINES).unwrap_or_default();
        let first = seen.len().saturating_sub(tail);
        for line in &seen[first..] {
            if tx.send(line.clone()).await.is_err() {
                return;
            }
        }
        let mut tick = tokio::time::interval(FOLLOW_EVERY);
        let mut shutdown = state.shutdown.clone();
        loop {
            tokio::select! {
                _ = tx.closed() => return,
                _ = shutdown.wait_for(|stop| *stop) => return,
                _ = tick.tick() => {}
            }
            let now = state.admin.logs(&slot, BUFFER_LINES).unwrap_or_default();
            for line in appended(&seen, &now) {
                if tx.send(line.clone()).await.is_err() {
                    return;
                }
            }
            seen = now;
        }
    });
    let stream = ReceiverStream::new(rx).map(|line| {
        let event = Event::default().event("line");
        Ok::<_, Infallible>(
            event
                .json_data(LogLine { line: line.clone() })
                .unwrap_or_else(|_| Event::default().event("line").data(line)),
        )
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// The lines of `new` that came after `old`, for a bounded buffer that drops its oldest lines:
/// the smallest shift that makes the rest of `old` a prefix of `new` tells where `old` ended.
fn appended<'a>(old: &[String], new: &'a [String]) -> &'a [String] {
    for shift in 0..=old.len() {
        let rest = &old[shift..];
        if new.len() >= rest.len() && new[..rest.len()] == *rest {
            return &new[rest.len()..];
        }
    }
    new
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn new_lines_are_found_in_a_growing_or_sliding_buffer() {
        assert_eq!(appended(&v(&[]), &v(&["a"])), v(&["a"]));
        assert_eq!(appended(&v(&["a", "b"]), &v(&["a", "b", "c"])), v(&["c"]));
        assert_eq!(
            appended(&v(&["a", "b", "c"]), &v(&["b", "c", "d"])),
            v(&["d"])
        );
        assert_eq!(appended(&v(&["a", "a"]), &v(&["a", "a", "a"])), v(&["a"]));
        assert_eq!(appended(&v(&["a", "b"]), &v(&["a", "b"])), v(&[]));
        assert_eq!(appended(&v(&["x"]), &v(&["y", "z"])), v(&["y", "z"]));
    }
}
