//! The one place hal0 builds HTTP clients: the gateway's proxy, readiness and answer probes,
//! model pulls and the CLI all get theirs from [`build`], with the pooling, TLS and connect
//! timeout of their [`Settings`]. Per-request timeouts stay with each caller (a probe's 2 s, a
//! pull's header wait): they are what the caller is waiting for, not a property of the client.
//!
//! - [`build`]: hyper-util's pooled client over plain TCP (TCP_NODELAY), and TLS with the
//!   system's trusted roots when [`Settings::tls`] is set. The roots are read once per process.
//! - [`Pool`]: keep-alive HTTP/1 connections to one origin, without the generic pool's
//!   per-request keying and boxing: the gateway's client, one per slot — plain TCP to a local
//!   provider, the shared connector (TLS for `https://`) to an external upstream.

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

/// A client with `settings`: the one construction every hal0 HTTP client goes through (the
/// gateway's [`Pool`]s share its connector).
pub fn build(settings: Settings) -> Client {
    legacy::Client::builder(TokioExecutor::new())
        .pool_idle_timeout(settings.idle_timeout)
        .pool_max_idle_per_host(settings.max_idle_per_host)
        .build(connector(settings))
}

/// Plain TCP (TCP_NODELAY, the connect timeout), with TLS for `https://` when `settings.tls`.
fn connector(settings: Settings) -> HttpsConnector<HttpConnector> {
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
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config((*tls).clone())
        .https_or_http()
        .enable_http1()
        .wrap_connector(http)
}

/// Why a request through a [`Pool`] failed.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("cannot connect to {origin}: {source}")]
    Connect {
        origin: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("connecting to {origin} timed out")]
    ConnectTimeout { origin: String },
    #[error("HTTP handshake with {origin} failed: {source}")]
    Handshake {
        origin: String,
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

/// How a [`Pool`] opens a connection.
enum Connect {
    /// Plain TCP (TCP_NODELAY) to a local provider.
    Tcp(SocketAddr),
    /// `http://` or `https://` (the system's roots) through the shared connector.
    Origin {
        connector: HttpsConnector<HttpConnector>,
        origin: http::Uri,
    },
}

/// Keep-alive HTTP/1 connections to one origin: a slot's provider on `127.0.0.1:<port>`
/// (plain), or an external upstream (TLS when `https://`). The gateway keeps one per slot, so
/// a request takes a connection without the generic pool's keying, boxing and bookkeeping.
/// A connection goes back to the pool when its response body has been read to the end; a body
/// dropped before that closes its connection (the upstream sees a cancelled request at once).
/// Requests carry origin-form URIs; the caller sets `host`.
pub struct Pool {
    connect: Connect,
    settings: Settings,
    idle: Mutex<VecDeque<Idle>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("origin", &self.describe())
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// Plain HTTP to `addr`.
    pub fn plain(addr: SocketAddr, settings: Settings) -> Arc<Self> {
        Self::with(Connect::Tcp(addr), settings)
    }

    /// `origin` (`scheme://authority`): plain HTTP, or TLS with the system's roots for
    /// `https://` when `settings.tls` is set.
    pub fn to_origin(origin: http::Uri, settings: Settings) -> Arc<Self> {
        Self::with(
            Connect::Origin {
                connector: connector(settings),
                origin,
            },
            settings,
        )
    }

    fn with(connect: Connect, settings: Settings) -> Arc<Self> {
        Arc::new(Pool {
            connect,
            settings,
            idle: Mutex::new(VecDeque::new()),
        })
    }

    fn describe(&self) -> String {
        match &self.connect {
            Connect::Tcp(addr) => format!("http://{addr}"),
            Connect::Origin { origin, .. } => origin.to_string(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Idle>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The most recently used live connection, if any.
    async fn checkout(&self) -> Option<SendRequest<RequestBody>> {
        loop {
            let mut idle = self.lock().pop_back()?;
            if idle.sender.is_closed() || idle.since.elapsed() >= self.settings.idle_timeout {
                continue;
            }
            // Its last response was read to the end; the connection may not have said it is
            // ready for the next one yet.
            if idle.sender.is_ready() || idle.sender.ready().await.is_ok() {
                return Some(idle.sender);
            }
        }
    }

    async fn connect(&self) -> Result<SendRequest<RequestBody>, PoolError> {
        let timeout = self.settings.connect_timeout;
        let timed_out = || PoolError::ConnectTimeout {
            origin: self.describe(),
        };
        let handshake = |source| PoolError::Handshake {
            origin: self.describe(),
            source,
        };
        let (sender, conn) = match &self.connect {
            Connect::Tcp(addr) => {
                let tcp = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr))
                    .await
                    .map_err(|_| timed_out())?
                    .map_err(|e| PoolError::Connect {
                        origin: self.describe(),
                        source: Box::new(e),
                    })?;
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!("cannot set TCP_NODELAY: {e}");
                }
                let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                    .await
                    .map_err(handshake)?;
                (sender, Box::pin(conn) as ConnTask)
            }
            Connect::Origin { connector, origin } => {
                use tower::ServiceExt;
                let io = tokio::time::timeout(timeout, connector.clone().oneshot(origin.clone()))
                    .await
                    .map_err(|_| timed_out())?
                    .map_err(|source| PoolError::Connect {
                        origin: self.describe(),
                        source,
                    })?;
                let (sender, conn) = hyper::client::conn::http1::handshake(io)
                    .await
                    .map_err(handshake)?;
                (sender, Box::pin(conn) as ConnTask)
            }
        };
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("upstream connection: {e}");
            }
        });
        Ok(sender)
    }

    fn checkin(&self, sender: SendRequest<RequestBody>) {
        if sender.is_closed() || self.settings.max_idle_per_host == 0 {
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
        idle.push_back(Idle { sender, since: now });
    }

    /// Sends `req` (an origin-form URI, `host` set) and returns the response, whose body gives
    /// the connection back when read to the end. A pooled connection that turns out to be
    /// closed before the request went out (the upstream closed it while idle) is replaced by a
    /// new one.
    pub async fn send(
        self: &Arc<Self>,
        req: http::Request<RequestBody>,
    ) -> Result<http::Response<PooledBody>, PoolError> {
        let mut req = req;
        let (sender, resp) = loop {
            let Some(mut sender) = self.checkout().await else {
                // Boxed: a new connection is the rare path; every request's future stays small.
                let mut sender = Box::pin(self.connect()).await?;
                let resp = sender.send_request(req).await?;
                break (sender, resp);
            };
            match sender.try_send_request(req).await {
                Ok(resp) => break (sender, resp),
                Err(mut e) => match e.take_message() {
                    Some(unsent) => req = unsent,
                    None => return Err(PoolError::Request(e.into_error())),
                },
            }
        };
        let pool = self.clone();
        Ok(resp.map(|inner| PooledBody {
            inner,
            back: Some((pool, sender)),
        }))
    }
}

/// A connection's task.
type ConnTask = Pin<Box<dyn std::future::Future<Output = hyper::Result<()>> + Send>>;

/// A response body from a [`Pool`]: at its end the connection goes back to the pool.
pub struct PooledBody {
    inner: Incoming,
    back: Option<(Arc<Pool>, SendRequest<RequestBody>)>,
}

impl PooledBody {
    fn give_back(&mut self) {
        if let Some((pool, sender)) = self.back.take() {
            pool.checkin(sender);
        }
    }
}

impl Drop for PooledBody {
    /// A body with nothing to read (`content-length: 0`, a 204) may be dropped without being
    /// polled to its end: its connection is ready for the next request all the same.
    fn drop(&mut self) {
        if self.back.is_some() && hyper::body::Body::is_end_stream(&self.inner) {
            self.give_back();
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
