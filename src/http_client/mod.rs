//! The one place hal0 builds HTTP clients: the gateway's proxy, readiness and answer probes,
//! model pulls and the CLI all get theirs from [`build`], with the pooling, TLS and connect
//! timeout of their [`Settings`]. Per-request timeouts stay with each caller (a probe's 2 s, a
//! pull's header wait): they are what the caller is waiting for, not a property of the client.
//!
//! - [`build`]: hyper-util's pooled client over plain TCP (TCP_NODELAY), and TLS with the
//!   system's trusted roots when [`Settings::tls`] is set. The roots are read once per process.
//! - [`Pool`] (`pool`): keep-alive HTTP/1 connections to one origin, without the generic
//!   pool's per-request keying and boxing: the gateway's client, one per slot. Plain HTTP (a
//!   local provider, an `http://` upstream) is spoken by `h1`, in the request's own task; TLS
//!   (`https://` upstreams) by hyper's client over the shared connector.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

mod h1;
mod pool;

pub use h1::{H1Error, has_token, parse_decimal};
pub use pool::{Pool, PoolError, PooledBody};

thread_local! {
    /// Which event loop this thread is (see [`set_lane`]); 0 for any other thread.
    static LANE: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Marks this thread as event loop `lane` (1, 2, …): the gateway's worker threads each run
/// their own runtime, whose I/O driver owns the sockets opened on it, so [`Pool`]s keep their
/// idle connections per lane and a request only takes one opened on its own thread.
pub fn set_lane(lane: usize) {
    LANE.with(|l| l.set(lane));
}

fn lane() -> usize {
    LANE.with(std::cell::Cell::get)
}

/// How many lanes a pool keeps: one per core and one for every other thread. A lane number
/// beyond that (more workers than cores) shares a lane, by its remainder.
fn lanes() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()) + 1
}

/// Every client sends whole bodies (requests are small, or read whole first, as the gateway's).
pub type RequestBody = Full<Bytes>;

/// A pooled client for `http://` URLs, and `https://` ones when built with [`Settings::tls`].
pub type Client = legacy::Client<HttpsConnector<HttpConnector>, RequestBody>;

/// How a client connects and pools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Give up connecting after this long.
    pub connect_timeout: Duration,
    /// Idle keep-alive connections kept per host (a gateway [`Pool`]: per worker); 0: a fresh
    /// connection per request.
    pub max_idle_per_host: usize,
    /// Idle connections are closed after this long.
    pub idle_timeout: Duration,
    /// Whether `https://` URLs work (the system's roots are loaded for it).
    pub tls: bool,
}

impl Settings {
    /// The gateway to slots and external upstreams (and Kubernetes slot Services):
    /// kept-alive connections for bursts of requests (64 idle per gateway worker: a burst's
    /// connections beyond that are closed when it ends), TLS for hosted APIs.
    pub const UPSTREAM: Settings = Settings {
        connect_timeout: Duration::from_secs(10),
        max_idle_per_host: 64,
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
