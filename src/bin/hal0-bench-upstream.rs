//! hal0-bench-upstream: the fast local upstream and the streaming clients of the gateway
//! benchmark (`e2e/bench/run.sh`, results in BENCHMARKS.md). Not used by the test suite.
//!
//! ```text
//! hal0-bench-upstream serve [--host H] [--port P] [--threads N] [...]   an OpenAI-ish upstream
//! hal0-bench-upstream sse   --url URL [--model M] [--concurrency C] [--requests R] [--chunks N] [--interval-ms I]
//! hal0-bench-upstream hold  --url URL [--model M] [--streams N] [--interval-ms I]
//! ```
//!
//! Every subcommand runs on `--threads` worker threads (default: one per CPU, whatever
//! TOKIO_WORKER_THREADS says). `serve` accepts (and ignores) any other llama-server flag, so hal0 can run it as a slot's
//! provider command. It answers `GET /health`, `GET /v1/models` and `POST /v1/*` with a small
//! static chat completion; a body with `"stream":true` gets an SSE stream instead: `bench_chunks`
//! events (default 20), one every `bench_interval_ms` (default 10) on an absolute schedule, each
//! carrying `"t":<unix ns when it was written>`, then `data: [DONE]`.
//!
//! `sse` runs C connections, each doing R streamed requests in sequence, and prints one JSON
//! line: per-chunk transit time (client receive time − upstream send time, same machine clock)
//! and inter-arrival delay percentiles, in microseconds.
//!
//! `hold` opens N streams (one connection each), prints `ready <n>` once every stream has
//! received its first chunk, keeps them open until stdin is closed, then prints `closed`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

type Body = BoxBody<Bytes, Infallible>;

const COMPLETION: &[u8] = br#"{"id":"chatcmpl-bench","object":"chat.completion","created":0,"model":"bench","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#;

fn main() -> anyhow::Result<()> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, rest) = match argv.split_first() {
        Some((c, r)) if !c.starts_with('-') => (c.as_str(), r.to_vec()),
        _ => ("serve", argv.clone()),
    };
    // An explicit thread count: TOKIO_WORKER_THREADS, which the harness may set for hal0, is
    // inherited by the slot and must not change the upstream.
    let threads = match Flags(rest.clone()).get("--threads") {
        Some(n) => n.parse().context("--threads")?,
        None => std::thread::available_parallelism().map_or(2, |n| n.get()),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    match cmd {
        "serve" => rt.block_on(serve(Flags(rest))),
        "sse" => rt.block_on(sse(Flags(rest))),
        "hold" => rt.block_on(hold(Flags(rest))),
        other => bail!("unknown subcommand {other:?} (serve, sse, hold)"),
    }
}

/// `--name value` flags; unknown ones are ignored (llama-server's, when run as a slot).
struct Flags(Vec<String>);

impl Flags {
    fn get(&self, name: &str) -> Option<&str> {
        let i = self.0.iter().position(|a| a == name)?;
        self.0.get(i + 1).map(String::as_str)
    }

    fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> anyhow::Result<T> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| anyhow::anyhow!("{name}: not a number: {v:?}")),
        }
    }
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
}

// ---------------------------------------------------------------------------------------------
// serve

async fn serve(flags: Flags) -> anyhow::Result<()> {
    let host = flags.get("--host").unwrap_or("127.0.0.1").to_string();
    let port: u16 = flags.num("--port", 8099)?;
    let listener = TcpListener::bind((host.as_str(), port))
        .await
        .with_context(|| format!("binding {host}:{port}"))?;
    eprintln!(
        "hal0-bench-upstream listening on http://{} pid={}",
        listener.local_addr()?,
        std::process::id()
    );
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), hyper::service::service_fn(handle))
                .await;
        });
    }
}

fn full(status: StatusCode, ctype: &'static str, body: Bytes) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", ctype)
        .body(Full::new(body).boxed())
        .unwrap_or_default()
}

/// Whether a JSON body asks for a stream, without parsing it (the hot path stays cheap).
fn wants_stream(body: &[u8]) -> bool {
    let key = b"\"stream\"";
    let Some(i) = body.windows(key.len()).position(|w| w == key) else {
        return false;
    };
    let rest = &body[i + key.len()..];
    let rest: Vec<u8> = rest
        .iter()
        .copied()
        .skip_while(|c| c.is_ascii_whitespace() || *c == b':')
        .take(4)
        .collect();
    rest == b"true"
}

async fn handle(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(full(StatusCode::BAD_REQUEST, "text/plain", Bytes::new())),
    };
    Ok(match (method.as_str(), path.as_str()) {
        ("GET", "/health") => full(
            StatusCode::OK,
            "application/json",
            Bytes::from_static(br#"{"status":"ok"}"#),
        ),
        ("GET", "/v1/models") => full(
            StatusCode::OK,
            "application/json",
            Bytes::from_static(br#"{"object":"list","data":[{"id":"bench","object":"model"}]}"#),
        ),
        ("POST", p) if p.starts_with("/v1/") => {
            if wants_stream(&body) {
                stream_response(&body)
            } else {
                full(
                    StatusCode::OK,
                    "application/json",
                    Bytes::from_static(COMPLETION),
                )
            }
        }
        _ => full(StatusCode::NOT_FOUND, "text/plain", Bytes::new()),
    })
}

fn stream_response(body: &[u8]) -> Response<Body> {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let chunks = v["bench_chunks"].as_u64().unwrap_or(20);
    let interval = Duration::from_millis(v["bench_interval_ms"].as_u64().unwrap_or(10));
    let start = tokio::time::Instant::now();
    // Event i is written at start + i*interval (absolute: no drift); then [DONE].
    let events = futures_util::stream::unfold(0u64, move |i| async move {
        if i > chunks {
            return None;
        }
        if i == chunks {
            let done = Frame::data(Bytes::from_static(b"data: [DONE]\n\n"));
            return Some((Ok::<_, Infallible>(done), i + 1));
        }
        tokio::time::sleep_until(start + interval * i as u32).await;
        let line = format!(
            "data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"model\":\"bench\",\"i\":{i},\"t\":{},\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"x\"}}}}]}}\n\n",
            now_ns()
        );
        Some((Ok(Frame::data(Bytes::from(line))), i + 1))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(StreamBody::new(events).boxed())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// clients

struct Target {
    addr: SocketAddr,
    host: String,
    path: String,
    /// The `model` the streamed requests name (`--model`, default `bench`).
    model: String,
}

fn parse_url(url: &str, model: Option<&str>) -> anyhow::Result<Target> {
    let rest = url
        .strip_prefix("http://")
        .context("only http:// URLs are supported")?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr: SocketAddr = hostport
        .parse()
        .with_context(|| format!("{hostport:?}: want IP:PORT"))?;
    Ok(Target {
        addr,
        host: hostport.to_string(),
        path: path.to_string(),
        model: model.unwrap_or("bench").to_string(),
    })
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(t: &Target) -> anyhow::Result<Sender> {
    let stream = TcpStream::connect(t.addr)
        .await
        .with_context(|| format!("connecting to {}", t.addr))?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

fn stream_request(
    t: &Target,
    chunks: u64,
    interval_ms: u64,
) -> anyhow::Result<Request<Full<Bytes>>> {
    let body = format!(
        r#"{{"model":"{}","stream":true,"messages":[{{"role":"user","content":"hi"}}],"bench_chunks":{chunks},"bench_interval_ms":{interval_ms}}}"#,
        t.model
    );
    Ok(Request::post(t.path.as_str())
        .header("host", t.host.as_str())
        .header("content-type", "application/json")
        .header("accept", "text/event-stream")
        .body(Full::new(Bytes::from(body)))?)
}

/// Scans SSE bytes for `"t":<ns>` stamps; calls `f` with each. Keeps a partial tail in `buf`.
fn scan_events(buf: &mut Vec<u8>, mut f: impl FnMut(u128)) -> bool {
    let mut done = false;
    while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
        let event: Vec<u8> = buf.drain(..end + 2).collect();
        if event.starts_with(b"data: [DONE]") {
            done = true;
            continue;
        }
        let key = b"\"t\":";
        if let Some(i) = event.windows(key.len()).position(|w| w == key) {
            let digits: String = event[i + key.len()..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .map(|&c| c as char)
                .collect();
            if let Ok(t) = digits.parse() {
                f(t);
            }
        }
    }
    done
}

#[derive(Default)]
struct Samples {
    transit_us: Vec<f64>,
    gaps_us: Vec<f64>,
    streams: u64,
    errors: u64,
}

/// One streamed request on `sender`: transit time of every chunk, gaps between arrivals.
async fn one_stream(
    sender: &mut Sender,
    t: &Target,
    chunks: u64,
    interval_ms: u64,
    out: &mut Samples,
) -> anyhow::Result<()> {
    sender.ready().await?;
    let resp = sender
        .send_request(stream_request(t, chunks, interval_ms)?)
        .await?;
    if resp.status() != StatusCode::OK {
        bail!("status {}", resp.status());
    }
    let mut body = resp.into_body();
    let mut buf = Vec::new();
    let mut last: Option<u128> = None;
    let mut seen = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        let recv = now_ns();
        buf.extend_from_slice(data);
        scan_events(&mut buf, |sent| {
            out.transit_us
                .push(recv.saturating_sub(sent) as f64 / 1000.0);
            // Chunks that arrive in one read are counted once: a gap of zero would say
            // nothing about the proxy.
            if let Some(prev) = last
                && recv != prev
            {
                out.gaps_us.push((recv - prev) as f64 / 1000.0);
            }
            last = Some(recv);
            seen += 1;
        });
    }
    if seen != chunks {
        bail!("got {seen} of {chunks} chunks");
    }
    out.streams += 1;
    Ok(())
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn summary(v: &mut [f64]) -> serde_json::Value {
    v.sort_by(|a, b| a.total_cmp(b));
    let mean = if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    };
    serde_json::json!({
        "n": v.len(),
        "mean": (mean * 10.0).round() / 10.0,
        "p50": pct(v, 50.0),
        "p90": pct(v, 90.0),
        "p99": pct(v, 99.0),
        "max": pct(v, 100.0),
    })
}

async fn sse(flags: Flags) -> anyhow::Result<()> {
    let url = flags.get("--url").context("--url is required")?.to_string();
    let t = Arc::new(parse_url(&url, flags.get("--model"))?);
    let conc: usize = flags.num("--concurrency", 1)?;
    let requests: u64 = flags.num("--requests", 5)?;
    let chunks: u64 = flags.num("--chunks", 50)?;
    let interval_ms: u64 = flags.num("--interval-ms", 10)?;
    let mut tasks = Vec::new();
    for k in 0..conc {
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            // Spread the streams over one interval so they do not all tick together.
            tokio::time::sleep(Duration::from_micros(
                (k as u64 * interval_ms * 1000) / conc.max(1) as u64,
            ))
            .await;
            let mut s = Samples::default();
            let mut sender = match connect(&t).await {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("connect: {e:#}");
                    s.errors += requests;
                    return s;
                }
            };
            for _ in 0..requests {
                if let Err(e) = one_stream(&mut sender, &t, chunks, interval_ms, &mut s).await {
                    eprintln!("stream: {e:#}");
                    s.errors += 1;
                    match connect(&t).await {
                        Ok(c) => sender = c,
                        Err(_) => break,
                    }
                }
            }
            s
        }));
    }
    let mut all = Samples::default();
    for task in tasks {
        let s = task.await?;
        all.transit_us.extend(s.transit_us);
        all.gaps_us.extend(s.gaps_us);
        all.streams += s.streams;
        all.errors += s.errors;
    }
    let out = serde_json::json!({
        "url": url,
        "concurrency": conc,
        "streams": all.streams,
        "errors": all.errors,
        "chunks_per_stream": chunks,
        "interval_ms": interval_ms,
        "transit_us": summary(&mut all.transit_us),
        "gap_us": summary(&mut all.gaps_us),
    });
    println!("{out}");
    Ok(())
}

async fn hold(flags: Flags) -> anyhow::Result<()> {
    let url = flags.get("--url").context("--url is required")?.to_string();
    let t = Arc::new(parse_url(&url, flags.get("--model"))?);
    let n: usize = flags.num("--streams", 1000)?;
    let interval_ms: u64 = flags.num("--interval-ms", 1000)?;
    let ready = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for i in 0..n {
        let (t, ready, failed, mut stop) =
            (t.clone(), ready.clone(), failed.clone(), stop_rx.clone());
        if i % 50 == 49 {
            // Ramp up instead of flooding the accept queue.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tasks.push(tokio::spawn(async move {
            let run = async {
                let mut sender = connect(&t).await?;
                sender.ready().await?;
                // Long enough for any measurement; the client leaves first.
                let resp = sender
                    .send_request(stream_request(&t, 100_000, interval_ms)?)
                    .await?;
                if resp.status() != StatusCode::OK {
                    bail!("status {}", resp.status());
                }
                let mut body = resp.into_body();
                let mut first = true;
                while let Some(frame) = body.frame().await {
                    frame?;
                    if first {
                        ready.fetch_add(1, Ordering::SeqCst);
                        first = false;
                    }
                }
                Ok::<_, anyhow::Error>(())
            };
            tokio::select! {
                r = run => if let Err(e) = r {
                    failed.fetch_add(1, Ordering::SeqCst);
                    eprintln!("hold stream: {e:#}");
                },
                _ = stop.wait_for(|v| *v) => {}
            }
        }));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (r, f) = (ready.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
        if r + f >= n || tokio::time::Instant::now() > deadline {
            println!("ready {r} failed {f}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Hold until stdin closes (the harness reads RSS meanwhile).
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
    let _ = stop_tx.send(true);
    for task in tasks {
        let _ = task.await;
    }
    println!("closed");
    Ok(())
}
