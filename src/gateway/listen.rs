//! Serving HTTP/1 connections so that slow, idle or too many clients cannot exhaust hal0:
//!
//! - a connection cap (`server.max_connections`, lowered to what the open-file limit allows):
//!   at the cap, the connection that has been idle longest is closed to make room for a new
//!   one; when every connection has a request in flight, new ones wait until one closes;
//! - a header timeout: a request's head must arrive within `header_timeout` of its first byte
//!   (a new connection's first request, within `header_timeout` of its opening);
//! - a body timeout: its body within `body_timeout` of the head;
//! - an idle timeout: a connection on which nothing moves for `client_idle_timeout` is closed,
//!   whether it waits for a next request or hal0 waits for it to take a response. A request
//!   hal0 is still working on (a load, a generation) is never idle, and a stream that is
//!   flowing moves bytes;
//! - accept errors (out of file descriptors, say) back off exponentially instead of spinning;
//! - a drain on shutdown: stop accepting, close idle connections at once, let requests in
//!   flight finish up to `drain_timeout`, then tell open streams to end (the gateway sends them
//!   an error event) and close whatever is left shortly after.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::reply::{self, Reply, ReplyBody};
use super::workers::Workers;
use super::{GatewayState, front, routes};

/// The limits of [`serve`]; [`Default`] has the `[server]` defaults.
#[derive(Debug, Clone)]
pub struct Limits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub drain_timeout: Duration,
    /// Worker threads serving the connections (see [`super::workers`]); 0: serve them on the
    /// caller's runtime.
    pub workers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
            drain_timeout: Duration::from_secs(10),
            workers: super::workers::default_count(),
        }
    }
}

/// One worker per core (see [`super::workers`]).
pub fn default_workers() -> usize {
    super::workers::default_count()
}

/// After the drain time, how long open streams get to send their error event and end.
const CUT_GRACE: Duration = Duration::from_secs(1);

/// File descriptors kept for everything but client connections: provider pipes and logs, the
/// config watch, upstream connections (one per proxied request, counted below).
const RESERVED_FDS: u64 = 64;

/// The connection cap the open-file limit allows: each client connection may hold an upstream
/// connection too. The soft limit is raised to the hard one first.
pub fn connection_cap(wanted: usize) -> usize {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return wanted;
    };
    let soft = if hard > soft && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        hard
    } else {
        soft
    };
    let allowed = usize::try_from(soft.saturating_sub(RESERVED_FDS) / 2)
        .unwrap_or(usize::MAX)
        .max(1);
    if allowed < wanted {
        tracing::warn!(
            "server.max_connections is {wanted}, but the open-file limit ({soft}) allows {allowed}; \
             using {allowed} (raise it with ulimit -n or LimitNOFILE=)"
        );
    }
    wanted.min(allowed)
}

/// Exponential backoff for accept errors: 5 ms doubling to 1 s, reset by a success.
#[derive(Debug, Default)]
pub struct AcceptBackoff {
    failures: u32,
}

impl AcceptBackoff {
    pub fn failed(&mut self) -> Duration {
        let d = Duration::from_millis(5) * 2u32.saturating_pow(self.failures.min(8));
        self.failures = self.failures.saturating_add(1);
        d.min(Duration::from_secs(1))
    }

    pub fn succeeded(&mut self) {
        self.failures = 0;
    }
}

/// Errors that concern one connection only (the client gave up while it was being accepted).
fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// What [`serve`] serves: a router, and the gateway's `POST /v1/*` handler, which is called
/// directly (no routing, no boxed futures or extensions per request: the hot path).
#[derive(Clone)]
pub struct App {
    router: Router,
    v1: Option<GatewayState>,
}

impl App {
    /// Requests go to `router`, and `POST /v1/*` to the gateway of `state` (whose routes
    /// `router` has too).
    pub fn new(router: Router, state: GatewayState) -> Self {
        App {
            router,
            v1: Some(state),
        }
    }
}

impl From<Router> for App {
    fn from(router: Router) -> Self {
        App { router, v1: None }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains (see the module doc).
/// `cut` is set when the drain time is over: the gateway ends its open streams on it.
pub async fn serve(
    listener: TcpListener,
    app: impl Into<App>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: Limits,
    cut: watch::Sender<bool>,
) -> std::io::Result<()> {
    let app = app.into();
    let workers = match limits.workers {
        0 => None,
        n => Some(Workers::start(n)?),
    };
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (drain_tx, drain_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    let mut backoff = AcceptBackoff::default();
    tokio::pin!(shutdown);
    let live: Live = Arc::default();
    let mut next_id: u64 = 0;
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            a = listener.accept() => a,
        };
        // Reap finished connection tasks so the set does not grow.
        while conns.try_join_next().is_some() {}
        let (tcp, _) = match accepted {
            Ok(a) => {
                backoff.succeeded();
                a
            }
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                let wait = backoff.failed();
                tracing::warn!("accept error: {e}; trying again in {wait:?}");
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(wait) => continue,
                }
            }
        };
        // At the cap, the connection that has been idle longest makes room (idle connections
        // cannot lock hal0 out); when every connection is busy, the new one waits.
        let permit = loop {
            if let Ok(p) = permits.clone().try_acquire_owned() {
                break Some(p);
            }
            evict_oldest_idle(&live);
            tokio::select! {
                () = &mut shutdown => break None,
                p = permits.clone().acquire_owned() => break p.ok(),
                // A connection too young to be called idle may be old enough soon.
                () = tokio::time::sleep(EVICT_RETRY) => {}
            }
        };
        let Some(permit) = permit else { break };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
        // A worker's runtime must own the socket: its own I/O driver then wakes its tasks.
        let (tcp, worker) = match &workers {
            None => (Accepted::Here(tcp), None),
            Some(w) => match tcp.into_std() {
                Ok(std) => (Accepted::Moved(std), Some(w.pick())),
                Err(e) => {
                    tracing::warn!("cannot hand a connection to a worker: {e}");
                    continue;
                }
            },
        };
        let app = app.clone();
        let limits = limits.clone();
        let drain = drain_rx.clone();
        let activity = Arc::new(Activity::new());
        let id = next_id;
        next_id += 1;
        lock(&live).insert(id, activity.clone());
        let live = live.clone();
        let task = async move {
            match tcp.register() {
                Ok(tcp) => connection(tcp, app, &limits, drain, activity).await,
                Err(e) => tracing::warn!("cannot serve a connection on a worker: {e}"),
            }
            lock(&live).remove(&id);
            drop(permit);
        };
        match worker {
            None => conns.spawn(task),
            Some((handle, seat)) => conns.spawn_on(
                async move {
                    task.await;
                    drop(seat);
                },
                handle,
            ),
        };
    }
    drop(listener);
    let _ = drain_tx.send(true);
    // Requests in flight may finish; then streams are told to end, and shortly after the rest
    // is closed.
    if tokio::time::timeout(limits.drain_timeout, join_all(&mut conns))
        .await
        .is_err()
    {
        tracing::warn!(
            "requests still open after drain_timeout ({:?}); ending them",
            limits.drain_timeout
        );
        let _ = cut.send(true);
        if tokio::time::timeout(CUT_GRACE, join_all(&mut conns))
            .await
            .is_err()
        {
            conns.abort_all();
        }
    }
    Ok(())
}

/// An accepted connection: registered with this runtime, or to be registered with a worker's.
enum Accepted {
    Here(TcpStream),
    Moved(std::net::TcpStream),
}

impl Accepted {
    /// The connection, registered with the runtime this is called on.
    fn register(self) -> std::io::Result<TcpStream> {
        match self {
            Accepted::Here(tcp) => Ok(tcp),
            Accepted::Moved(std) => TcpStream::from_std(std),
        }
    }
}

/// The open connections' activity, to find the one idle longest when the cap is reached.
type Live = Arc<std::sync::Mutex<std::collections::HashMap<u64, Arc<Activity>>>>;

fn lock(live: &Live) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, Arc<Activity>>> {
    live.lock().unwrap_or_else(|p| p.into_inner())
}

/// A connection quiet for less than this is not idle yet (a client that just connected is
/// sending its request).
const EVICT_MIN_QUIET: Duration = Duration::from_millis(200);

/// How often a connection waiting at the cap looks for an idle one to close again.
const EVICT_RETRY: Duration = Duration::from_millis(50);

/// Closes the connection with nothing in flight that has been quiet longest, if any has been
/// quiet for [`EVICT_MIN_QUIET`].
fn evict_oldest_idle(live: &Live) {
    let quiet_since = now_ms().saturating_sub(EVICT_MIN_QUIET.as_millis() as u64);
    let victim = lock(live)
        .values()
        .filter(|a| a.in_flight() == 0 && a.last_active() <= quiet_since)
        .min_by_key(|a| a.last_active())
        .cloned();
    if let Some(a) = victim {
        a.evict.notify_one();
    }
}

async fn join_all(set: &mut JoinSet<()>) {
    while set.join_next().await.is_some() {}
}

/// One connection under the watchdog of [`Activity`]: `POST /v1/*` requests served by
/// [`front`], the rest (from the first request it does not take) by hyper's HTTP/1 server.
async fn connection(
    tcp: TcpStream,
    app: App,
    limits: &Limits,
    mut drain: watch::Receiver<bool>,
    activity: Arc<Activity>,
) {
    let mut io = Watched {
        inner: tcp,
        activity: activity.clone(),
        ahead: Bytes::new(),
    };
    let mut read = bytes::BytesMut::new();
    // This connection's own copy of the gateway's state: what each request clones is counted
    // on this connection's thread only, not on a count every worker writes to.
    let v1 = app.v1.as_ref().map(GatewayState::own_copy);
    let mut draining = false;
    if let Some(state) = &v1 {
        let front_drain = drain.clone();
        let served = front::serve(&mut io, &mut read, state, limits, &front_drain);
        tokio::pin!(served);
        // A drain lets the request in flight finish: the front closes after its response.
        match under_watchdog(served, &activity, limits, &mut drain, &mut draining, |_| {}).await {
            Some(front::Outcome::HandOff) => {}
            Some(front::Outcome::Closed) | None => return,
        }
    }
    // What the front read ahead (the request it did not take) is hyper's first read.
    io.ahead = read.freeze();
    let io = TokioIo::new(io);
    let body_timeout = limits.body_timeout;
    let act = activity.clone();
    let router = app.router;
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let guard = act.request_started();
        let req = req.map(|b| TimedBody::new(b, body_timeout));
        // Boxed, one allocation per request: hyper keeps a slot the size of this future in
        // every connection for its whole life, and the proxy's future is a few KiB (2.7 KiB
        // less per open stream, measured by tests/gateway_allocs.rs). The slot holds two
        // pointers, not either future.
        let handled: Pin<Box<dyn Future<Output = Reply> + Send>> = match &v1 {
            Some(state) if routes::is_v1_post(&req) => {
                let state = state.clone();
                Box::pin(async move {
                    let view = super::view::View::new(&state);
                    routes::direct(&state, &view, req).await
                })
            }
            _ => {
                use tower::ServiceExt;
                let router = router.clone();
                Box::pin(async move {
                    match router.oneshot(req.map(Body::new)).await {
                        Ok(resp) => reply::of(resp),
                        Err(never) => match never {},
                    }
                })
            }
        };
        async move {
            let resp = handled.await;
            // Not boxed again: hyper takes the wrapper as it is.
            Ok::<_, std::convert::Infallible>(resp.map(|b| Guarded {
                inner: b,
                _guard: guard,
            }))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The watchdog times request heads from their first byte; hyper's own header timeout would
    // also count the idle time before it.
    builder
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(None);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    if draining {
        conn.as_mut().graceful_shutdown();
    }
    let _ = under_watchdog(conn, &activity, limits, &mut drain, &mut draining, |c| {
        c.graceful_shutdown()
    })
    .await;
}

/// Runs `fut` under the connection's watchdog: `None` when the watchdog closes the
/// connection (evicted, a timeout, or a drain with nothing in flight). A drain while a request
/// is in flight calls `on_drain` (once; `draining` records it) and lets `fut` finish.
async fn under_watchdog<F: Future>(
    mut fut: Pin<&mut F>,
    activity: &Activity,
    limits: &Limits,
    drain: &mut watch::Receiver<bool>,
    draining: &mut bool,
    mut on_drain: impl FnMut(Pin<&mut F>),
) -> Option<F::Output> {
    // The watchdog is polled only when one of its own wake-ups fired, not at every wake-up of
    // the connection (each I/O event of each request): its timer, eviction notice and drain
    // watch would otherwise be polled, and the two notices locked, a few times per request.
    let side = Arc::new(SideWake::default());
    let side_waker = std::task::Waker::from(side.clone());
    loop {
        let watch = watchdog(activity, limits, drain, *draining);
        tokio::pin!(watch);
        side.fired.store(true, Ordering::Release);
        let outcome = std::future::poll_fn(|cx| {
            if let Poll::Ready(v) = fut.as_mut().poll(cx) {
                return Poll::Ready(Ok(v));
            }
            side.parent.register(cx.waker());
            if side.fired.swap(false, Ordering::AcqRel) {
                let mut side_cx = Context::from_waker(&side_waker);
                if let Poll::Ready(v) = watch.as_mut().poll(&mut side_cx) {
                    return Poll::Ready(Err(v));
                }
            }
            Poll::Pending
        })
        .await;
        match outcome {
            Ok(v) => return Some(v),
            Err(Verdict::Evicted) => {
                tracing::debug!("closing an idle client connection to make room for a new one");
                return None;
            }
            Err(Verdict::Expired(why)) => {
                tracing::debug!("closing a client connection: {why}");
                return None;
            }
            Err(Verdict::Drain { closed }) => {
                *draining = true;
                if closed || activity.in_flight() == 0 {
                    // Idle, or half-way through sending a request: nothing to finish.
                    return None;
                }
                on_drain(fut.as_mut());
            }
        }
    }
}

/// What a connection's watchdog saw.
enum Verdict {
    /// The connection cap is reached and this connection, idle, makes room.
    Evicted,
    /// A timeout passed.
    Expired(&'static str),
    /// Shutdown began (`closed`: the drain signal is gone).
    Drain { closed: bool },
}

/// Waits for a reason to close the connection or begin its drain.
async fn watchdog(
    activity: &Activity,
    limits: &Limits,
    drain: &mut watch::Receiver<bool>,
    draining: bool,
) -> Verdict {
    loop {
        let check_in = activity.next_check(limits);
        tokio::select! {
            () = activity.evict.notified() => {
                // A request may have started since the notice was sent.
                if activity.in_flight() == 0 {
                    return Verdict::Evicted;
                }
            }
            () = tokio::time::sleep(check_in) => {
                if let Some(why) = activity.expired(limits) {
                    return Verdict::Expired(why);
                }
            }
            r = drain.wait_for(|d| *d), if !draining => {
                return Verdict::Drain { closed: r.is_err() };
            }
        }
    }
}

/// Wakes a connection's task for its watchdog, and says so.
#[derive(Default)]
struct SideWake {
    fired: std::sync::atomic::AtomicBool,
    parent: futures_util::task::AtomicWaker,
}

impl std::task::Wake for SideWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.fired.store(true, Ordering::Release);
        self.parent.wake();
    }
}

/// Milliseconds of the coarse monotonic clock, for atomics: read on every I/O of every
/// connection, so it is the clock the kernel keeps per tick (no hardware clock read; a few ms
/// of resolution, plenty for timeouts of seconds).
fn now_ms() -> u64 {
    use nix::time::{ClockId, clock_gettime};
    match clock_gettime(ClockId::CLOCK_MONOTONIC_COARSE) {
        Ok(t) => {
            let secs = u64::try_from(t.tv_sec()).unwrap_or(0);
            let ms = u64::try_from(t.tv_nsec()).unwrap_or(0) / 1_000_000;
            secs.saturating_mul(1000).saturating_add(ms)
        }
        // Not on Linux: the precise clock, since a process-wide epoch.
        Err(_) => {
            static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
            let epoch = *EPOCH.get_or_init(std::time::Instant::now);
            u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
        }
    }
}

/// What a connection's watchdog looks at. Times are [`now_ms`] values, 0 for "none".
#[derive(Debug)]
pub(super) struct Activity {
    /// Requests handed to hal0 whose response has not been sent completely.
    in_flight: AtomicUsize,
    /// The last time a byte moved either way.
    last_io: AtomicU64,
    /// When the connection last had nothing in flight (opened, or a response was finished).
    idle_since: AtomicU64,
    /// The first byte read while nothing was in flight (a request head is arriving), or the
    /// connection's opening until its first request.
    head_started: AtomicU64,
    /// Since when hal0 has been waiting to write (the client does not take the response).
    write_blocked: AtomicU64,
    /// Told to close: the connection cap is reached and this one has been idle longest.
    evict: tokio::sync::Notify,
}

impl Activity {
    fn new() -> Self {
        let now = now_ms().max(1);
        Activity {
            in_flight: AtomicUsize::new(0),
            last_io: AtomicU64::new(now),
            idle_since: AtomicU64::new(now),
            // A new connection's first request must start within header_timeout.
            head_started: AtomicU64::new(now),
            write_blocked: AtomicU64::new(0),
            evict: tokio::sync::Notify::new(),
        }
    }

    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// The last time the connection did anything.
    fn last_active(&self) -> u64 {
        self.idle_since
            .load(Ordering::Acquire)
            .max(self.last_io.load(Ordering::Relaxed))
    }

    pub(super) fn request_started(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_started.store(0, Ordering::Release);
        RequestGuard(self.clone())
    }

    pub(super) fn read(&self, n: usize) {
        if n == 0 {
            return;
        }
        let now = now_ms().max(1);
        self.last_io.store(now, Ordering::Relaxed);
        if self.in_flight() == 0 {
            let _ = self
                .head_started
                .compare_exchange(0, now, Ordering::AcqRel, Ordering::Relaxed);
        }
    }

    fn wrote(&self, blocked: bool) {
        let now = now_ms().max(1);
        if blocked {
            let _ =
                self.write_blocked
                    .compare_exchange(0, now, Ordering::AcqRel, Ordering::Relaxed);
        } else {
            self.write_blocked.store(0, Ordering::Release);
            self.last_io.store(now, Ordering::Relaxed);
        }
    }

    /// Why the connection should be closed now, if it should.
    fn expired(&self, limits: &Limits) -> Option<&'static str> {
        let now = now_ms();
        let older = |t: u64, d: Duration| t != 0 && now.saturating_sub(t) >= d.as_millis() as u64;
        if self.in_flight() == 0 {
            let head = self.head_started.load(Ordering::Acquire);
            if head != 0 {
                return older(head, limits.header_timeout)
                    .then_some("the request head did not arrive within header_timeout");
            }
            let idle = self
                .idle_since
                .load(Ordering::Acquire)
                .max(self.last_io.load(Ordering::Relaxed));
            return older(idle, limits.idle_timeout)
                .then_some("no request within client_idle_timeout");
        }
        let blocked = self.write_blocked.load(Ordering::Acquire);
        let last = self.last_io.load(Ordering::Relaxed);
        (older(blocked, limits.idle_timeout) && older(last, limits.idle_timeout))
            .then_some("the client took no data for client_idle_timeout")
    }

    /// When to look again: often enough to close within a fraction of the shortest limit.
    fn next_check(&self, limits: &Limits) -> Duration {
        let shortest = limits.header_timeout.min(limits.idle_timeout);
        (shortest / 8).clamp(Duration::from_millis(10), Duration::from_secs(1))
    }
}

/// Counts a request as in flight until its response body is finished or dropped.
pub(super) struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle_since.store(now_ms().max(1), Ordering::Release);
            self.0.head_started.store(0, Ordering::Release);
        }
    }
}

/// A response body carrying its request's [`RequestGuard`].
struct Guarded {
    inner: ReplyBody,
    _guard: RequestGuard,
}

impl hyper::body::Body for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The request body, failing when it has not all arrived within the body timeout.
pub struct TimedBody {
    inner: Incoming,
    /// Set when the body first has to be waited for (a body that came with its head needs no
    /// timer).
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    started: Instant,
    limit: Duration,
}

/// A request body that did not arrive in time; the gateway answers it with 408.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within server.body_timeout ({0:?})")]
pub struct BodyTimeout(pub Duration);

impl TimedBody {
    fn new(inner: Incoming, limit: Duration) -> Self {
        TimedBody {
            inner,
            deadline: None,
            started: Instant::now(),
            limit,
        }
    }
}

impl hyper::body::Body for TimedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let deadline = self.started + self.limit;
        let sleep = self
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.as_mut().poll(cx).is_ready() {
            let limit = self.limit;
            return Poll::Ready(Some(Err(Box::new(BodyTimeout(limit)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        hyper::body::Body::is_end_stream(&self.inner)
    }

    fn size_hint(&self) -> SizeHint {
        hyper::body::Body::size_hint(&self.inner)
    }
}

/// Whether `e` (or one of its sources) is a [`BodyTimeout`].
pub fn is_body_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<BodyTimeout>() {
            return true;
        }
        cur = err.source();
    }
    false
}

/// The client socket, noting every byte that moves.
pub(super) struct Watched {
    pub(super) inner: TcpStream,
    pub(super) activity: Arc<Activity>,
    /// Bytes already read off the socket (by the front, when it hands the connection to
    /// hyper), served before the socket's own.
    pub(super) ahead: Bytes,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.ahead.is_empty() {
            // Noted as read when they were read.
            let n = self.ahead.len().min(buf.remaining());
            buf.put_slice(&self.ahead.split_to(n));
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            self.activity.read(buf.filled().len() - before);
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.activity.wrote(r.is_pending());
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.activity.wrote(r.is_pending());
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A streamed response body that ends with `last` (an SSE error event) once `cut` is set.
pub struct Cuttable {
    inner: Body,
    cut: Pin<Box<dyn Future<Output = ()> + Send>>,
    last: Option<Bytes>,
    ended: bool,
}

impl Cuttable {
    pub fn new(inner: Body, mut cut: watch::Receiver<bool>, last: Bytes) -> Self {
        let cut = Box::pin(async move {
            if cut.wait_for(|c| *c).await.is_err() {
                // Nobody will ever cut (no sender): never.
                std::future::pending::<()>().await;
            }
        });
        Cuttable {
            inner,
            cut,
            last: Some(last),
            ended: false,
        }
    }
}

impl hyper::body::Body for Cuttable {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        if self.cut.as_mut().poll(cx).is_ready() {
            self.ended = true;
            return Poll::Ready(self.last.take().map(|b| Ok(Frame::data(b))));
        }
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = r {
            self.ended = true;
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }
}

/// Reads a whole request body, up to `limit` bytes. A body that arrives in one piece (the
/// usual small JSON request) is returned as that piece, without copying.
pub async fn read_body<B>(body: B, limit: usize) -> Result<Bytes, ReadBodyError>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    let failed = |e: axum::BoxError| {
        if is_body_timeout(&*e) {
            ReadBodyError::TimedOut(e.to_string())
        } else {
            ReadBodyError::Failed(e.to_string())
        }
    };
    if hyper::body::Body::size_hint(&body).lower() > limit as u64 {
        return Err(ReadBodyError::TooLarge);
    }
    let mut body = body;
    let mut first: Option<Bytes> = None;
    let mut rest: Option<bytes::BytesMut> = None;
    let mut len = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| failed(e.into()))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        len = len.saturating_add(data.len());
        if len > limit {
            return Err(ReadBodyError::TooLarge);
        }
        match (&mut first, &mut rest) {
            (None, None) => first = Some(data),
            (Some(f), None) => {
                let mut all = bytes::BytesMut::with_capacity(len.max(f.len() * 2));
                all.extend_from_slice(f);
                all.extend_from_slice(&data);
                first = None;
                rest = Some(all);
            }
            (_, Some(all)) => all.extend_from_slice(&data),
        }
    }
    Ok(match (first, rest) {
        (_, Some(all)) => all.freeze(),
        (Some(f), None) => f,
        (None, None) => Bytes::new(),
    })
}

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadBodyError {
    #[error("the request body is too large")]
    TooLarge,
    #[error("{0}")]
    TimedOut(String),
    #[error("cannot read the request body: {0}")]
    Failed(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_errors_back_off_up_to_a_second_and_reset_on_success() {
        let mut b = AcceptBackoff::default();
        let waits: Vec<u128> = (0..10).map(|_| b.failed().as_millis()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        b.succeeded();
        assert_eq!(b.failed().as_millis(), 5);
    }
}
