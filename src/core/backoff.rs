//! Restart backoff and the crash-loop breaker.

use std::time::Duration;

use super::Time;

/// How failed slots are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Delay before the first retry; doubled for each further failure in the window.
    pub base: Duration,
    /// Longest delay between retries.
    pub cap: Duration,
    /// Failures inside `window` that park the slot in `crash-loop`.
    pub max_failures: usize,
    /// Window over which failures are counted.
    pub window: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
            max_failures: 5,
            window: Duration::from_secs(300),
        }
    }
}

impl RestartPolicy {
    /// Delay before retrying after the `n`-th failure (1-based) in the window.
    pub fn delay(&self, n: usize) -> Duration {
        let exp = n.saturating_sub(1).min(20) as u32;
        self.base.saturating_mul(1u32 << exp).min(self.cap)
    }

    /// Drops failures older than the window, as seen at `now`.
    pub fn prune(&self, failures: &mut Vec<Time>, now: Time) {
        failures.retain(|t| now.saturating_sub(*t) < self.window);
    }

    /// Whether this many failures in the window mean crash-loop.
    pub fn is_crash_loop(&self, failures: usize) -> bool {
        failures >= self.max_failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_doubles_and_is_capped() {
        let p = RestartPolicy::default();
        let secs: Vec<u64> = (1..=8).map(|n| p.delay(n).as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(p.delay(1000), p.cap);
    }

    #[test]
    fn old_failures_leave_the_window() {
        let p = RestartPolicy::default();
        let mut f = vec![
            Duration::from_secs(1),
            Duration::from_secs(200),
            Duration::from_secs(400),
        ];
        p.prune(&mut f, Duration::from_secs(450));
        assert_eq!(f, vec![Duration::from_secs(200), Duration::from_secs(400)]);
    }
}
