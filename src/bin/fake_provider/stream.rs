//! Streamed bodies: SSE completions (with a drop guard that records cancellation) and a tiny
//! WAV of silence sent in a few chunks.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use serde_json::{Value, json};

use crate::state::Shared;

/// Which OpenAI stream shape to produce.
#[derive(Clone, Copy)]
pub enum Kind {
    Chat,
    Completion,
}

#[derive(Clone)]
struct Chunks {
    kind: Kind,
    model: String,
}

impl Chunks {
    fn content(&self, i: u64) -> Value {
        let text = format!("tok{i} ");
        match self.kind {
            Kind::Chat if i == 0 => self.chat(json!({"role": "assistant", "content": text}), None),
            Kind::Chat => self.chat(json!({"content": text}), None),
            Kind::Completion => self.completion(&text, None),
        }
    }

    fn last(&self) -> Value {
        match self.kind {
            Kind::Chat => self.chat(json!({}), Some("stop")),
            Kind::Completion => self.completion("", Some("stop")),
        }
    }

    fn chat(&self, delta: Value, finish: Option<&str>) -> Value {
        json!({
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        })
    }

    fn completion(&self, text: &str, finish: Option<&str>) -> Value {
        json!({
            "id": "cmpl-fake",
            "object": "text_completion",
            "created": 0,
            "model": self.model,
            "choices": [{"index": 0, "text": text, "finish_reason": finish}],
        })
    }
}

/// Writes `stream-cancelled` if the body is dropped before `[DONE]` was produced.
struct StreamGuard {
    state: Shared,
    done: bool,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if !self.done {
            self.state.event("stream-cancelled");
            eprintln!("fake-provider: stream cancelled by the client");
        }
    }
}

/// An SSE response: `--stream-tokens` content chunks, a finishing chunk, then `data: [DONE]`,
/// with `--stream-chunk-delay` between consecutive chunks. `stream-complete` is recorded when
/// `[DONE]` is produced; `stream-cancelled` when the body is dropped before that.
pub fn sse(state: Shared, kind: Kind, model: String) -> Response {
    let tokens = state.args.stream_tokens;
    let delay = Duration::from_millis(state.args.stream_chunk_delay_ms);
    let chunks = Chunks { kind, model };
    let guard = StreamGuard { state, done: false };
    let body = stream::unfold((0u64, guard), move |(i, mut guard)| {
        let chunks = chunks.clone();
        async move {
            if i > tokens + 1 {
                return None;
            }
            if i > 0 && !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let data = if i < tokens {
                chunks.content(i).to_string()
            } else if i == tokens {
                chunks.last().to_string()
            } else {
                guard.done = true;
                guard.state.event("stream-complete");
                "[DONE]".to_string()
            };
            let frame = Bytes::from(format!("data: {data}\n\n"));
            Some((Ok::<_, Infallible>(frame), (i + 1, guard)))
        }
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

const SAMPLE_RATE: u32 = 24_000;
const SILENCE_BYTES: u32 = SAMPLE_RATE / 10 * 2; // 0.1 s of 16-bit mono
const WAV_CHUNKS: usize = 4;

/// A valid 44-byte PCM WAV header followed by 0.1 s of silence (24 kHz, mono, 16-bit).
pub fn wav_bytes() -> Vec<u8> {
    let mut wav = Vec::with_capacity(44 + SILENCE_BYTES as usize);
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + SILENCE_BYTES).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes()); // fmt chunk size
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&SAMPLE_RATE.to_le_bytes());
    wav.extend_from_slice(&(SAMPLE_RATE * 2).to_le_bytes()); // byte rate
    wav.extend_from_slice(&2u16.to_le_bytes()); // block align
    wav.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&SILENCE_BYTES.to_le_bytes());
    wav.resize(44 + SILENCE_BYTES as usize, 0);
    wav
}

/// The WAV streamed in a few chunks, `--stream-chunk-delay` apart.
pub fn wav_response(state: &Shared) -> Response {
    let delay = Duration::from_millis(state.args.stream_chunk_delay_ms);
    let wav = wav_bytes();
    let size = wav.len().div_ceil(WAV_CHUNKS);
    let parts: Vec<Bytes> = wav.chunks(size).map(Bytes::copy_from_slice).collect();
    let body = stream::unfold((0usize, parts), move |(i, parts)| async move {
        let part = parts.get(i)?.clone();
        if i > 0 && !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Some((Ok::<_, Infallible>(part), (i + 1, parts)))
    });
    (
        [(header::CONTENT_TYPE, "audio/wav")],
        Body::from_stream(body),
    )
        .into_response()
}
