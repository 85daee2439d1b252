//! The gateway's keep-alive connections to one origin (see [`Pool`]).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::time::Instant;

use super::h1::{self, Framing, H1Error};
use super::{RequestBody, Settings, connector};

/// Why a request through a [`Pool`] failed.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("cannot connect to {origin}: {source}")]
    Connect {
        origin: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(
        "the certificate of {origin} is not trusted: {source} (hal0 trusts the system's roots, \
         or the CA certificates in the file SSL_CERT_FILE names)"
    )]
    Certificate {
        origin: String,
        source: rustls::Error,
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
    #[error("{0}")]
    Upstream(#[from] H1Error),
}

/// How a [`Pool`] opens a connection.
enum Connect {
    /// Plain TCP, driven by [`h1`].
    Plain(Plain),
    /// `https://` (the system's roots) through the shared connector and hyper's client.
    Tls {
        connector: HttpsConnector<HttpConnector>,
        origin: http::Uri,
    },
}

/// Where a plain connection goes.
enum Plain {
    /// An address: a local provider.
    Addr(SocketAddr),
    /// `host:port` of an `http://` upstream, resolved per connection.
    Host(String),
}

/// An idle connection.
enum Conn {
    /// Driven by the task of the request it serves ([`h1`]).
    Plain(h1::Conn),
    /// hyper's client connection, running as its own task (TLS).
    Hyper(SendRequest<RequestBody>),
}

/// An idle connection and since when it is idle.
struct Idle {
    conn: Conn,
    since: Instant,
}

/// Keep-alive HTTP/1 connections to one origin: a slot's provider on `127.0.0.1:<port>`, or an
/// external upstream. The gateway keeps one per slot, so a request takes a connection without
/// a generic pool's keying, boxing and bookkeeping.
///
/// Plain HTTP (local providers, `http://` upstreams) goes through [`h1`]: the request's own
/// task writes the request and reads the answer, chunk by chunk, out of the connection's
/// buffer. `https://` goes through hyper's client connection (its own task per connection).
///
/// A connection goes back to the pool when its response body has been read to the end; a body
/// dropped before that closes its connection (the upstream sees a cancelled request at once).
/// A pooled connection the upstream closed while idle is not used; a request that finds its
/// pooled connection closed under it before any answer (the upstream closed it as the request
/// went out) goes again on another. Requests carry origin-form URIs; the caller sets `host`.
pub struct Pool {
    connect: Connect,
    settings: Settings,
    /// Idle connections per lane (see [`super::set_lane`]), most recently used last; each
    /// lane has its own lock on its own cache line, so worker threads never contend.
    lanes: Box<[Lane]>,
}

/// One lane's idle connections.
#[repr(align(128))]
#[derive(Default)]
struct Lane(Mutex<VecDeque<Idle>>);

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
        Self::with(Connect::Plain(Plain::Addr(addr)), settings)
    }

    /// `origin` (`scheme://authority`): plain HTTP, or TLS with the system's roots for
    /// `https://` when `settings.tls` is set.
    pub fn to_origin(origin: http::Uri, settings: Settings) -> Arc<Self> {
        let plain = origin.scheme() == Some(&http::uri::Scheme::HTTP);
        let connect = match origin.authority() {
            Some(authority) if plain => Connect::Plain(Plain::Host(match authority.port() {
                Some(_) => authority.as_str().to_string(),
                None => format!("{}:80", authority.host()),
            })),
            _ => Connect::Tls {
                connector: connector(settings),
                origin,
            },
        };
        Self::with(connect, settings)
    }

    fn with(connect: Connect, settings: Settings) -> Arc<Self> {
        Arc::new(Pool {
            connect,
            settings,
            lanes: (0..super::lanes()).map(|_| Lane::default()).collect(),
        })
    }

    fn describe(&self) -> String {
        match &self.connect {
            Connect::Plain(Plain::Addr(addr)) => format!("http://{addr}"),
            Connect::Plain(Plain::Host(host)) => format!("http://{host}"),
            Connect::Tls { origin, .. } => origin.to_string(),
        }
    }

    /// This thread's lane.
    fn lane(&self) -> std::sync::MutexGuard<'_, VecDeque<Idle>> {
        let i = super::lane() % self.lanes.len().max(1);
        self.lanes[i].0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The most recently used idle connection of this thread's lane.
    fn pop_idle(&self) -> Option<Idle> {
        self.lane().pop_back()
    }

    /// The most recently used live connection, if any.
    async fn checkout(&self) -> Option<Conn> {
        loop {
            let idle = self.pop_idle()?;
            if idle.since.elapsed() >= self.settings.idle_timeout {
                continue;
            }
            match idle.conn {
                Conn::Plain(mut c) => {
                    if c.is_reusable() {
                        return Some(Conn::Plain(c));
                    }
                }
                Conn::Hyper(mut sender) => {
                    if sender.is_closed() {
                        continue;
                    }
                    // Its last response was read to the end; the connection may not have said
                    // it is ready for the next one yet.
                    if sender.is_ready() || sender.ready().await.is_ok() {
                        return Some(Conn::Hyper(sender));
                    }
                }
            }
        }
    }

    fn checkin(&self, conn: Conn) {
        if self.settings.max_idle_per_host == 0 {
            return;
        }
        if let Conn::Hyper(sender) = &conn
            && sender.is_closed()
        {
            return;
        }
        let now = Instant::now();
        let mut idle = self.lane();
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
        idle.push_back(Idle { conn, since: now });
    }

    /// A new plain connection.
    async fn connect_plain(&self, to: &Plain) -> Result<h1::Conn, PoolError> {
        let timeout = self.settings.connect_timeout;
        let tcp = match to {
            Plain::Addr(addr) => {
                tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await
            }
            Plain::Host(host) => {
                tokio::time::timeout(timeout, tokio::net::TcpStream::connect(host.as_str())).await
            }
        };
        let tcp = tcp
            .map_err(|_| PoolError::ConnectTimeout {
                origin: self.describe(),
            })?
            .map_err(|e| PoolError::Connect {
                origin: self.describe(),
                source: Box::new(e),
            })?;
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
        Ok(h1::Conn::new(tcp))
    }

    /// A new hyper client connection, running as its own task.
    async fn connect_hyper(
        &self,
        connector: &HttpsConnector<HttpConnector>,
        origin: &http::Uri,
    ) -> Result<SendRequest<RequestBody>, PoolError> {
        use tower::ServiceExt;
        let connecting = connector.clone().oneshot(origin.clone());
        let io = tokio::time::timeout(self.settings.connect_timeout, connecting)
            .await
            .map_err(|_| PoolError::ConnectTimeout {
                origin: self.describe(),
            })?
            .map_err(|source| match certificate_error(source.as_ref()) {
                Some(e) => PoolError::Certificate {
                    origin: self.describe(),
                    source: e.clone(),
                },
                None => PoolError::Connect {
                    origin: self.describe(),
                    source,
                },
            })?;
        let (sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|source| PoolError::Handshake {
                origin: self.describe(),
                source,
            })?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("upstream connection: {e}");
            }
        });
        Ok(sender)
    }

    /// Sends `req` (an origin-form URI, `host` set) and returns the response, whose body gives
    /// the connection back when read to the end.
    pub async fn send(
        self: &Arc<Self>,
        req: http::Request<Bytes>,
    ) -> Result<http::Response<PooledBody>, PoolError> {
        let to = match &self.connect {
            Connect::Plain(to) => to,
            // Boxed: hyper's request futures would otherwise make every plain request's
            // future (which the gateway boxes per request) larger.
            Connect::Tls { connector, origin } => {
                return Box::pin(self.send_hyper(connector, origin, req.map(Full::new))).await;
            }
        };
        let (mut parts, body) = req.into_parts();
        loop {
            let (mut conn, reused) = match self.checkout().await {
                Some(Conn::Plain(c)) => (c, true),
                Some(Conn::Hyper(_)) => continue,
                // Boxed: a new connection is the rare path; every request's future stays small.
                None => (Box::pin(self.connect_plain(to)).await?, false),
            };
            match exchange(&mut conn, &mut parts, &body).await {
                Ok(head) => return Ok(self.plain_response(conn, head)),
                // The upstream closed the idle connection as the request went out: it never
                // saw the request, which goes again on another connection.
                Err(e) if reused && e.unanswered() => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// [`Pool::send`] through hyper's client (TLS origins).
    async fn send_hyper(
        self: &Arc<Self>,
        connector: &HttpsConnector<HttpConnector>,
        origin: &http::Uri,
        req: http::Request<RequestBody>,
    ) -> Result<http::Response<PooledBody>, PoolError> {
        let mut req = req;
        loop {
            let Some(Conn::Hyper(mut sender)) = self.checkout().await else {
                let mut sender = Box::pin(self.connect_hyper(connector, origin)).await?;
                let resp = sender.send_request(req).await?;
                return Ok(self.hyper_response(sender, resp));
            };
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok(self.hyper_response(sender, resp)),
                Err(mut e) => match e.take_message() {
                    // Not sent: the connection closed first.
                    Some(unsent) => req = unsent,
                    None => return Err(PoolError::Request(e.into_error())),
                },
            }
        }
    }

    fn plain_response(
        self: &Arc<Self>,
        conn: h1::Conn,
        head: h1::Head,
    ) -> http::Response<PooledBody> {
        let h1::Head {
            status,
            version,
            headers,
            framing,
            keep_alive,
        } = head;
        let mut resp = http::Response::new(PooledBody {
            inner: Inner::Plain {
                conn: Some(conn),
                framing,
                keep_alive,
                pool: self.clone(),
            },
        });
        *resp.status_mut() = status;
        *resp.version_mut() = version;
        *resp.headers_mut() = headers;
        resp
    }

    fn hyper_response(
        self: &Arc<Self>,
        sender: SendRequest<RequestBody>,
        resp: http::Response<Incoming>,
    ) -> http::Response<PooledBody> {
        let pool = self.clone();
        resp.map(|inner| PooledBody {
            inner: Inner::Hyper {
                inner,
                back: Some((pool, sender)),
            },
        })
    }
}

/// Writes the request and reads the response head, into the request's header map (reused: it
/// is not needed once the answer has begun).
async fn exchange(
    conn: &mut h1::Conn,
    parts: &mut http::request::Parts,
    body: &Bytes,
) -> Result<h1::Head, H1Error> {
    let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    conn.write_request(&parts.method, path, &parts.headers, body)
        .await?;
    conn.read_head(&parts.method, &mut parts.headers).await
}

/// A response body from a [`Pool`]: at its end the connection goes back to the pool; dropped
/// before that, it closes the connection.
pub struct PooledBody {
    inner: Inner,
}

impl std::fmt::Debug for PooledBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledBody").finish_non_exhaustive()
    }
}

enum Inner {
    Plain {
        /// `None` once given back (or failed).
        conn: Option<h1::Conn>,
        framing: Framing,
        keep_alive: bool,
        pool: Arc<Pool>,
    },
    Hyper {
        inner: Incoming,
        back: Option<(Arc<Pool>, SendRequest<RequestBody>)>,
    },
}

impl Inner {
    fn give_back(&mut self) {
        match self {
            Inner::Plain {
                conn,
                keep_alive,
                pool,
                ..
            } => {
                if let Some(c) = conn.take()
                    && *keep_alive
                {
                    pool.checkin(Conn::Plain(c));
                }
            }
            Inner::Hyper { back, .. } => {
                if let Some((pool, sender)) = back.take() {
                    pool.checkin(Conn::Hyper(sender));
                }
            }
        }
    }
}

impl Drop for PooledBody {
    /// A body with nothing to read (`content-length: 0`, a 204) may be dropped without being
    /// polled to its end: its connection is ready for the next request all the same.
    fn drop(&mut self) {
        if hyper::body::Body::is_end_stream(self) {
            self.inner.give_back();
        }
    }
}

impl hyper::body::Body for PooledBody {
    type Data = Bytes;
    type Error = PoolError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, PoolError>>> {
        let this = &mut self.inner;
        match this {
            Inner::Plain { conn, framing, .. } => {
                let Some(c) = conn.as_mut() else {
                    return Poll::Ready(None);
                };
                match c.poll_body(framing, cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(None) => {
                        this.give_back();
                        Poll::Ready(None)
                    }
                    Poll::Ready(Some(Ok(data))) => {
                        if framing.is_end() {
                            this.give_back();
                        }
                        Poll::Ready(Some(Ok(Frame::data(data))))
                    }
                    Poll::Ready(Some(Err(e))) => {
                        *conn = None;
                        Poll::Ready(Some(Err(e.into())))
                    }
                }
            }
            Inner::Hyper { inner, back } => {
                let r = Pin::new(&mut *inner).poll_frame(cx);
                match &r {
                    Poll::Ready(None) => this.give_back(),
                    Poll::Ready(Some(Ok(_))) if inner.is_end_stream() => this.give_back(),
                    Poll::Ready(Some(Err(_))) => *back = None,
                    _ => {}
                }
                r.map(|o| o.map(|r| r.map_err(PoolError::from)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Plain { conn, framing, .. } => conn.is_none() || framing.is_end(),
            Inner::Hyper { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Plain {
                framing: Framing::Length(n),
                ..
            } => SizeHint::with_exact(*n),
            Inner::Plain { framing, .. } if framing.is_end() => SizeHint::with_exact(0),
            Inner::Plain { .. } => SizeHint::default(),
            Inner::Hyper { inner, .. } => inner.size_hint(),
        }
    }
}

/// The TLS verification failure in `e`'s chain, if that is why a connection failed (rustls
/// reports it inside an `io::Error`, possibly inside another, whose `source()` skips it).
fn certificate_error<'e>(e: &'e (dyn std::error::Error + 'static)) -> Option<&'e rustls::Error> {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(tls @ rustls::Error::InvalidCertificate(_)) = e.downcast_ref() {
            return Some(tls);
        }
        next = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;
