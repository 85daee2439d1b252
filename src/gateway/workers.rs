//! The threads that serve client connections: one single-threaded tokio runtime per core, each
//! with its own I/O driver and timers, as nginx has one event loop per worker process.
//!
//! A connection is accepted once, centrally (the connection cap and eviction live there), and
//! handed to the worker with the fewest open connections; from then on its requests, the
//! upstream connections they use (`http_client`'s pools keep one set per worker) and the
//! chunks they stream are all handled on that one thread. On the shared multi-threaded runtime,
//! every request and every streamed chunk crossed between its threads at least once (the
//! client connection's task, the upstream connection's task, whichever thread polled the I/O
//! driver), with a wake-up of the other thread each time.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// How many workers: the cores this process may use.
pub fn default_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Running workers; dropping this stops them (their remaining tasks are dropped).
pub struct Workers {
    lanes: Vec<Lane>,
}

struct Lane {
    handle: Handle,
    open: Arc<AtomicUsize>,
    /// Dropped to stop the worker.
    _stop: oneshot::Sender<()>,
}

/// A connection's place on a worker: counted until dropped.
pub struct Seat {
    open: Arc<AtomicUsize>,
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Workers {
    /// Starts `count` worker threads (at least one).
    pub fn start(count: usize) -> std::io::Result<Workers> {
        let mut lanes = Vec::with_capacity(count.max(1));
        for i in 0..count.max(1) {
            let lane = i + 1;
            let (stop, stopped) = oneshot::channel::<()>();
            let (started, handle) = std::sync::mpsc::sync_channel(1);
            // The runtime is built, run and dropped on its own thread (dropping one inside
            // the caller's async context would panic).
            std::thread::Builder::new()
                .name(format!("hal0-gateway-{lane}"))
                .spawn(move || {
                    crate::http_client::set_lane(lane);
                    let rt = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            let _ = started.send(Err(e));
                            return;
                        }
                    };
                    let _ = started.send(Ok(rt.handle().clone()));
                    // Runs the connections' tasks until told to stop (or the sender is gone).
                    let _ = rt.block_on(stopped);
                })?;
            // A wait of a runtime's construction, once per worker at start.
            let handle = handle
                .recv()
                .map_err(|_| std::io::Error::other("a gateway worker thread ended at start"))??;
            lanes.push(Lane {
                handle,
                open: Arc::default(),
                _stop: stop,
            });
        }
        Ok(Workers { lanes })
    }

    /// The worker with the fewest open connections, and a seat on it.
    pub fn pick(&self) -> (&Handle, Seat) {
        // `start` makes at least one.
        let lane = self.lanes[1..].iter().fold(&self.lanes[0], |best, l| {
            if l.open.load(Ordering::Relaxed) < best.open.load(Ordering::Relaxed) {
                l
            } else {
                best
            }
        });
        lane.open.fetch_add(1, Ordering::Relaxed);
        (
            &lane.handle,
            Seat {
                open: lane.open.clone(),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Connections go to the worker with the fewest, run on that worker's thread, and the
    /// workers start and stop from inside an async context.
    #[tokio::test]
    async fn connections_are_spread_and_run_on_their_worker() {
        let workers = Workers::start(2).expect("workers");
        let (a, seat_a) = workers.pick();
        let (b, seat_b) = workers.pick();
        let thread_of =
            |h: &Handle| h.spawn(async { std::thread::current().name().map(str::to_string) });
        let (ta, tb) = (thread_of(a), thread_of(b));
        let (ta, tb) = (ta.await.expect("ran"), tb.await.expect("ran"));
        assert_ne!(ta, tb, "two connections, two workers");
        for t in [&ta, &tb] {
            assert!(
                t.as_deref().is_some_and(|n| n.starts_with("hal0-gateway-")),
                "{t:?}"
            );
        }
        // The first seat freed: the next connection goes there.
        drop(seat_a);
        let (c, _seat_c) = workers.pick();
        assert_eq!(thread_of(c).await.expect("ran"), ta);
        drop(seat_b);
        drop(workers);
    }
}
