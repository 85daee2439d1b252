//! The one place hal0 builds HTTP clients: the gateway's proxy, readiness and answer probes,
//! model pulls and the CLI all get theirs from [`build`], with the pooling, TLS and connect
//! timeout of their [`Settings`]. Per-request timeouts stay with each caller (a probe's 2 s, a
//! pull's header wait): they are what the caller is waiting for, not a property of the client.
//!
//! - [`build`]: hyper-util's pooled client over plain TCP (TCP_NODELAY), and TLS with the
//!   system's trusted roots when [`Settings::tls`] is set. The roots are read once per process.
//! - [`LocalPool`]: keep-alive HTTP/1 connections to one local address (a slot's provider on
//!   `127.0.0.1:<port>`), without the generic pool's per-request bookkeeping: the gateway's
//!   client for local slots.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::time::Instant;

/// Every client sends whole bodies (requests are small, or read whole first, as the gateway's).
pub type RequestBody = Full<Bytes>;

/// A pooled client for `http://` URLs, and `https://` ones when built with [`Settings::tls`].
pub type Client = legacy::Client<HttpsConnector<HttpConnector>, RequestBody>;

/// How a client connects and pools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Give up connecting after this long.
    pub connect_timeout: Duration,
    /// Idle keep-alive connections kept per host; 0: a fresh connection per request.
    pub max_idle_per_host: usize,
    /// Idle connections are closed after this long.
    pub idle_timeout: Duration,
    /// Whether `https://` URLs work (the system's roots are loaded for it).
    pub tls: bool,
}

impl Settings {
    /// The gateway to external upstreams (and Kubernetes slot Services): kept-alive
    /// connections for bursts of requests, TLS for hosted APIs.
    pub const UPSTREAM: Settings = Settings {
        connect_timeout: Duration::from_secs(10),
        max_idle_per_host: 256,
        idle_timeout: Duration::from_secs(90),
        tls: true,
    };
    /// Readiness and answer probes of a local provider: one connection, reused between probes.
    pub const PROBE: Settings = Settings {
        connect_timeout: Duration::from_secs(2),
        max_idle_per_host: 1,
        idle_timeout: Duration::from_secs(90),
        tls: false,
    };
    /// Model downloads: a fresh connection per request (a pull makes a handful, and a pooled
    /// connection the server has just closed would fail the next one).
    pub const PULL: Settings = Settings {
        connect_timeout: Duration::from_secs(20),
        max_idle_per_host: 0,
        idle_timeout: Duration::from_secs(90),
        tls: true,
    };
    /// The CLI talking to a running hal0 (on this machine or a trusted network).
    pub const CLI: Settings = Settings {
        connect_timeout: Duration::from_secs(5),
        max_idle_per_host: 4,
        idle_timeout: Duration::from_secs(90),
        tls: false,
    };
}

/// The TLS configuration with the system's trusted roots, read once; `None` when the system
/// has none (then `https://` URLs fail to verify, with a warning logged once).
fn tls_config() -> (Arc<rustls::ClientConfig>, bool) {
    static CONFIG: OnceLock<(Arc<rustls::ClientConfig>, bool)> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            use hyper_rustls::ConfigBuilderExt;
            match rustls::ClientConfig::builder().with_native_roots() {
                Ok(b) => (Arc::new(b.with_no_client_auth()), true),
                Err(e) => {
                    tracing::warn!("no system TLS roots ({e}); https URLs will fail to verify");
                    (empty_tls_config(), false)
                }
            }
        })
        .clone()
}

/// A TLS configuration that trusts nothing (plain HTTP clients, and no system roots).
fn empty_tls_config() -> Arc<rustls::ClientConfig> {
    static EMPTY: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    EMPTY
        .get_or_init(|| {
            Arc::new(
                rustls::ClientConfig::builder()
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
            )
        })
        .clone()
}

/// Whether `https://` URLs can be verified (the system has trusted roots).
pub fn has_tls_roots() -> bool {
    tls_config().1
}

/// A client with `settings`: the one construction every hal0 HTTP client goes through.
pub fn build(settings: Settings) -> Client {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.enforce_http(false);
    http.set_connect_timeout(Some(settings.connect_timeout));
    // Plain HTTP clients load no roots: an https URL fails to verify.
    let tls = if settings.tls {
        tls_config().0
    } else {
        empty_tls_config()
    };
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config((*tls).clone())
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    legacy::Client::builder(TokioExecutor::new())
        .pool_idle_timeout(settings.idle_timeout)
        .pool_max_idle_per_host(settings.max_idle_per_host)
        .build(connector)
}

/// Why a request through a [`LocalPool`] failed.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("connecting to {addr} timed out")]
    ConnectTimeout { addr: SocketAddr },
    #[error("HTTP handshake with {addr} failed: {source}")]
    Handshake {
        addr: SocketAddr,
        source: hyper::Error,
    },
    #[error("{0}")]
    Request(#[from] hyper::Error),
}

/// An idle connection and since when it is idle.
struct Idle {
    sender: SendRequest<RequestBody>,
    since: Instant,
}

/// Keep-alive HTTP/1 connections to one address. A connection goes back to the pool when its
/// response body has been read to the end; a body dropped before that closes its connection
/// (the provider sees a cancelled request at once).
pub struct LocalPool {
    addr: SocketAddr,
    settings: Settings,
    idle: Mutex<VecDeque<Idle>>,
}

impl std::fmt::Debug for LocalPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalPool")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl LocalPool {
    pub fn new(addr: SocketAddr, settings: Settings) -> Arc<Self> {
        Arc::new(LocalPool {
            addr,
            settings,
            idle: Mutex::new(VecDeque::new()),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Idle>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The most recently used live connection, or a new one.
    async fn checkout(&self) -> Result<SendRequest<RequestBody>, LocalError> {
        loop {
            let Some(mut idle) = self.lock().pop_back() else {
                break;
            };
            if idle.sender.is_closed() || idle.since.elapsed() >= self.settings.idle_timeout {
                continue;
            }
            // Its last response was read to the end; the connection may not have said it is
            // ready for the next one yet.
            if idle.sender.is_ready() || idle.sender.ready().await.is_ok() {
                return Ok(idle.sender);
            }
        }
        self.connect().await
    }

    async fn connect(&self) -> Result<SendRequest<RequestBody>, LocalError> {
        let addr = self.addr;
        let tcp = tokio::time::timeout(
            self.settings.connect_timeout,
            tokio::net::TcpStream::connect(addr),
        )
        .await
        .map_err(|_| LocalError::ConnectTimeout { addr })?
        .map_err(|source| LocalError::Connect { addr, source })?;
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            .handshake(TokioIo::new(tcp))
            .await
            .map_err(|source| LocalError::Handshake { addr, source })?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("upstream connection to {addr}: {e}");
            }
        });
        Ok(sender)
    }

    fn checkin(&self, sender: SendRequest<RequestBody>) {
        if sender.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut idle = self.lock();
        // The oldest first: drop the ones idle too long, and make room.
        while let Some(front) = idle.front() {
            if idle.len() >= self.settings.max_idle_per_host
                || now.duration_since(front.since) >= self.settings.idle_timeout
            {
                idle.pop_front();
            } else {
                break;
            }
        }
        if self.settings.max_idle_per_host > 0 {
            idle.push_back(Idle { sender, since: now });
        }
    }

    /// Sends `req` (its URI: the path and query only) and returns the response, whose body
    /// gives the connection back when read to the end.
    pub async fn send(
        self: &Arc<Self>,
        req: http::Request<RequestBody>,
    ) -> Result<http::Response<PooledBody>, LocalError> {
        let mut sender = self.checkout().await?;
        let resp = sender.send_request(req).await?;
        let pool = self.clone();
        Ok(resp.map(|inner| PooledBody {
            inner,
            back: Some((pool, sender)),
        }))
    }
}

/// A response body from a [`LocalPool`]: at its end the connection goes back to the pool.
pub struct PooledBody {
    inner: Incoming,
    back: Option<(Arc<LocalPool>, SendRequest<RequestBody>)>,
}

impl PooledBody {
    fn give_back(&mut self) {
        if let Some((pool, sender)) = self.back.take() {
            pool.checkin(sender);
        }
    }
}

impl hyper::body::Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        match &r {
            Poll::Ready(None) => self.give_back(),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.give_back(),
            Poll::Ready(Some(Err(_))) => self.back = None,
            _ => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
