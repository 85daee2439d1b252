//! A bounded per-slot log buffer: the last N lines a provider printed.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// Cheap to clone; every clone sees the same lines. A std `Mutex` is right here: the critical
/// sections are a push or a copy, never held across an await.
#[derive(Debug, Clone)]
pub struct LogBuffer {
    inner: Arc<Mutex<VecDeque<String>>>,
    capacity: usize,
}

impl LogBuffer {
    pub fn new(capacity: usize) -> Self {
        LogBuffer {
            inner: Arc::new(Mutex::new(VecDeque::with_capacity(capacity.min(256)))),
            capacity,
        }
    }

    pub fn push(&self, line: String) {
        let mut q = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() == self.capacity {
            q.pop_front();
        }
        q.push_back(line);
    }

    /// The last `n` lines, oldest first.
    pub fn tail(&self, n: usize) -> Vec<String> {
        let q = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        q.iter().skip(q.len().saturating_sub(n)).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_last_lines() {
        let b = LogBuffer::new(3);
        for i in 0..5 {
            b.push(format!("line {i}"));
        }
        assert_eq!(b.tail(10), vec!["line 2", "line 3", "line 4"]);
        assert_eq!(b.tail(1), vec!["line 4"]);
    }
}
