//! `LoadError`: why a slot a request waits for will not serve it, decided from the slot's
//! status by whoever runs the slots and handed to the gateway as the reply to its wait.

use super::{LOAD_TIMED_OUT, Phase, SlotName, SlotStatus};

/// Why a wait for a slot ended without it serving.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error("slot {slot} was removed")]
    Removed { slot: SlotName },
    #[error("slot {slot} is crash-looping ({why}); fix its config or load it explicitly to retry")]
    CrashLoop {
        slot: SlotName,
        why: String,
        retry_after_secs: u64,
    },
    /// Admission refused the load (memory, the NPU); `why` names what it needs and what holds it.
    #[error("{why}")]
    CannotFit {
        slot: SlotName,
        why: String,
        retry_after_secs: u64,
    },
    /// The provider did not become ready within `load_timeout`.
    #[error("slot {slot} failed to load: {why}")]
    TimedOut {
        slot: SlotName,
        why: String,
        retry_after_secs: u64,
    },
    /// The load failed otherwise; the slot retries after a backoff.
    #[error("slot {slot} failed to load: {why}")]
    Failed {
        slot: SlotName,
        why: String,
        retry_after_secs: u64,
    },
    #[error("hal0 is shutting down")]
    ShuttingDown,
}

impl LoadError {
    /// The verdict for a request that began waiting when the slot had `failures_before` failed
    /// loads: `None` while it may still come to serve. Call it only for a slot that does not
    /// accept requests.
    pub fn verdict(slot: &SlotName, status: &SlotStatus, failures_before: u64) -> Option<Self> {
        if status.phase == Phase::CrashLoop {
            return Some(LoadError::CrashLoop {
                slot: slot.clone(),
                why: status
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "it failed repeatedly".into()),
                retry_after_secs: retry_after(status),
            });
        }
        if status.load_failures <= failures_before {
            return None;
        }
        let slot = slot.clone();
        let why = status
            .last_error
            .clone()
            .unwrap_or_else(|| "unknown error".into());
        let retry_after_secs = retry_after(status);
        Some(if status.refused {
            LoadError::CannotFit {
                slot,
                why,
                retry_after_secs,
            }
        } else if why.starts_with(LOAD_TIMED_OUT) {
            LoadError::TimedOut {
                slot,
                why,
                retry_after_secs,
            }
        } else {
            LoadError::Failed {
                slot,
                why,
                retry_after_secs,
            }
        })
    }

    /// Seconds a client should wait before retrying.
    pub fn retry_after_secs(&self) -> u64 {
        match self {
            LoadError::Removed { .. } => 0,
            LoadError::ShuttingDown => 5,
            LoadError::CrashLoop {
                retry_after_secs, ..
            }
            | LoadError::CannotFit {
                retry_after_secs, ..
            }
            | LoadError::TimedOut {
                retry_after_secs, ..
            }
            | LoadError::Failed {
                retry_after_secs, ..
            } => *retry_after_secs,
        }
    }
}

/// Seconds a client should wait before retrying a slot, from its observed load time.
fn retry_after(status: &SlotStatus) -> u64 {
    let load_secs = status.last_load_ms.map_or(10, |ms| ms.div_ceil(1000));
    match status.phase {
        Phase::CrashLoop => 30,
        Phase::Failed => status
            .retry_in_ms
            .map_or(load_secs, |ms| ms.div_ceil(1000) + load_secs),
        _ => load_secs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(phase: Phase, failures: u64) -> SlotStatus {
        serde_json::from_value(serde_json::json!({
            "name": "chat", "phase": phase, "provider": "llama.cpp", "role": "chat",
            "in_flight": 0, "restarts": 0, "load_failures": failures, "refused": false,
        }))
        .unwrap()
    }

    #[test]
    fn only_failures_after_the_wait_began_end_it() {
        let slot = SlotName::parse("chat").unwrap();
        let mut s = status(Phase::Failed, 1);
        s.last_error = Some("provider exited with code 1".into());
        s.retry_in_ms = Some(2000);
        s.last_load_ms = Some(3500);
        assert_eq!(LoadError::verdict(&slot, &s, 1), None);
        let e = LoadError::verdict(&slot, &s, 0).unwrap();
        assert!(matches!(e, LoadError::Failed { .. }), "{e:?}");
        assert_eq!(e.retry_after_secs(), 2 + 4);
        assert_eq!(
            e.to_string(),
            "slot chat failed to load: provider exited with code 1"
        );
    }

    #[test]
    fn timeouts_refusals_and_crash_loops_are_told_apart() {
        let slot = SlotName::parse("chat").unwrap();
        let mut s = status(Phase::Failed, 1);
        s.last_error = Some(format!("{LOAD_TIMED_OUT} (2s)"));
        assert!(matches!(
            LoadError::verdict(&slot, &s, 0),
            Some(LoadError::TimedOut { .. })
        ));
        s.refused = true;
        s.phase = Phase::Stopped;
        assert!(matches!(
            LoadError::verdict(&slot, &s, 0),
            Some(LoadError::CannotFit { .. })
        ));
        let c = LoadError::verdict(&slot, &status(Phase::CrashLoop, 5), 5).unwrap();
        assert_eq!(c.retry_after_secs(), 30);
        assert!(
            c.to_string()
                .contains("crash-looping (it failed repeatedly)")
        );
    }
}
