//! A histogram of durations that the gateway's workers record into without a lock: every
//! request observes its slot's time to first byte, from whichever worker serves it, and
//! prometheus-client's `Histogram` takes a mutex for each observation (a lock both workers
//! wrote, and one a preempted worker could hold while the other waited for it). Here each
//! bucket and the sum are atomics; the count is the buckets' total, so a scrape never sees
//! them disagree. Encoded as a Prometheus histogram with the bounds it is made with.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Cheap to clone: clones record into the same histogram.
#[derive(Clone, Debug)]
pub struct Latency(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    /// Upper bounds in seconds, ascending; the last is +Inf.
    bounds: Box<[f64]>,
    /// Observations per bucket (not cumulative).
    counts: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
}

impl Latency {
    /// A histogram with these upper bounds (seconds, ascending) and +Inf.
    pub fn new(bounds: impl IntoIterator<Item = f64>) -> Self {
        let bounds: Box<[f64]> = bounds.into_iter().chain([f64::INFINITY]).collect();
        let counts = bounds.iter().map(|_| AtomicU64::new(0)).collect();
        Latency(Arc::new(Inner {
            bounds,
            counts,
            sum_nanos: AtomicU64::new(0),
        }))
    }

    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = self
            .0
            .bounds
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(self.0.bounds.len() - 1);
        self.0.counts[i].fetch_add(1, Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.0.sum_nanos.fetch_add(nanos, Relaxed);
    }

    /// The sum in seconds, the count, and `(upper bound, observations)` per bucket.
    fn read(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let buckets: Vec<(f64, u64)> = (self.0.bounds.iter().copied())
            .zip(self.0.counts.iter().map(|c| c.load(Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = self.0.sum_nanos.load(Relaxed) as f64 / 1e9;
        (sum, count, buckets)
    }
}

impl TypedMetric for Latency {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Latency {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (sum, count, buckets) = self.read();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;
    use prometheus_client::metrics::histogram::Histogram;
    use prometheus_client::registry::Registry;

    /// The same observations give the same text as prometheus-client's own histogram.
    #[test]
    fn encodes_as_prometheus_clients_histogram_does() {
        let bounds = [0.001, 0.0025, 0.00625];
        let ours = Latency::new(bounds);
        let theirs = Histogram::new(bounds);
        for ms in [0.5, 1.0, 2.0, 3.0, 7.0, 7.0, 100.0] {
            let d = Duration::from_secs_f64(ms / 1000.0);
            ours.observe(d);
            theirs.observe(d.as_secs_f64());
        }
        let text = |m: Box<dyn FnOnce(&mut Registry)>| {
            let mut r = Registry::default();
            m(&mut r);
            let mut out = String::new();
            encode(&mut out, &r).expect("encodes");
            out
        };
        let a = text(Box::new(move |r| r.register("ttfb", "t", ours)));
        let b = text(Box::new(move |r| r.register("ttfb", "t", theirs)));
        // The sums may differ in the last digit (theirs adds seconds, ours nanoseconds).
        let split = |t: &str| -> (Vec<String>, f64) {
            let sum = t
                .lines()
                .find_map(|l| l.strip_prefix("ttfb_sum "))
                .and_then(|v| v.parse().ok())
                .expect("a sum");
            let rest = t.lines().filter(|l| !l.starts_with("ttfb_sum "));
            (rest.map(str::to_string).collect(), sum)
        };
        let ((a_lines, a_sum), (b_lines, b_sum)) = (split(&a), split(&b));
        assert_eq!(a_lines, b_lines);
        assert!((a_sum - b_sum).abs() < 1e-9, "{a_sum} vs {b_sum}");
        assert!(a.contains("ttfb_count 7"), "{a}");
        assert!(a.contains("ttfb_bucket{le=\"0.001\"} 2"), "{a}");
    }
}
