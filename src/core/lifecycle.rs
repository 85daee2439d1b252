//! Pure transitions of one slot's observed state: on runtime events, on requests, and on the
//! controller carrying out an action. The controller applies these and nothing else.

use crate::model::{Phase, SlotSpec};

use super::{Action, ObservedSlot, RestartPolicy, StopReason, Time};

/// Something that happened to a slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The runtime started the process of generation `generation`.
    Spawned { generation: u64, pid: u32 },
    /// The process passed its health check.
    Ready { generation: u64 },
    /// The process of generation `generation` holds `rss` bytes now, `peak` at most so far.
    Memory {
        generation: u64,
        rss: u64,
        peak: u64,
    },
    /// The provider of generation `generation` reports whether it sleeps (weights released).
    Asleep { generation: u64, asleep: bool },
    /// The model of generation `generation` is being downloaded.
    Pulling {
        generation: u64,
        downloaded: u64,
        total: Option<u64>,
    },
    /// The process exited on its own, failed its health checks, could not be started, or did
    /// not become ready within `load_timeout`.
    Failed { generation: u64, message: String },
    /// A stop the controller asked for completed.
    Stopped { generation: u64 },
    /// A request arrived for the slot (the gateway wants it loaded).
    Wake,
    /// An explicit load (API, CLI): also lifts a crash-loop.
    Load,
    /// An explicit unload (API, CLI).
    Unload,
}

/// Applies an event. Events about an older process generation are ignored.
pub fn on_event(obs: &mut ObservedSlot, event: Event, now: Time, policy: &RestartPolicy) {
    match event {
        Event::Pulling {
            generation,
            downloaded,
            total,
        } if generation == obs.generation
            && matches!(obs.phase, Phase::Loading | Phase::Pulling) =>
        {
            obs.phase = Phase::Pulling;
            obs.pull = Some((downloaded, total));
        }
        Event::Memory {
            generation,
            rss,
            peak,
        } if generation == obs.generation && obs.phase.is_running() => {
            obs.memory_rss = Some(rss);
            obs.memory_peak = Some(obs.memory_peak.map_or(peak, |p| p.max(peak)));
        }
        Event::Asleep { generation, asleep } if generation == obs.generation => {
            match (asleep, obs.phase) {
                (true, Phase::Ready | Phase::Idle)
                    if obs.in_flight == 0 && obs.draining.is_none() =>
                {
                    // A reading taken just before a request reached the provider says "asleep"
                    // although the request is about to wake it: believe it only once the slot has
                    // been quiet for as long as the provider waits before sleeping.
                    let after = obs
                        .launch
                        .as_ref()
                        .and_then(|l| l.sleep_after_secs)
                        .map(std::time::Duration::from_secs);
                    let quiet = match (after, obs.last_activity) {
                        (Some(after), Some(last)) => now >= last + after,
                        (Some(_), None) => true,
                        (None, _) => false,
                    };
                    if quiet {
                        obs.phase = Phase::Sleeping;
                        obs.sleeping_since = Some(now);
                        obs.idle_since = None;
                    }
                }
                (false, Phase::Sleeping) => {
                    obs.phase = Phase::Ready;
                    obs.sleeping_since = None;
                }
                _ => {}
            }
        }
        Event::Spawned { generation, pid } if generation == obs.generation => {
            obs.pid = Some(pid);
            if obs.phase == Phase::Pulling {
                obs.phase = Phase::Loading;
                obs.pull = None;
                // The load is timed from here; the download is not part of it.
                obs.load_started = Some(now);
            }
        }
        Event::Ready { generation }
            if generation == obs.generation && obs.phase == Phase::Loading =>
        {
            obs.phase = Phase::Ready;
            obs.last_activity = Some(now);
            obs.last_load = obs.load_started.map(|t| now.saturating_sub(t));
            obs.last_error = None;
            obs.ready_since = Some(now);
            obs.draining = None;
            // Loaded: it stays until unloaded, idle or swapped out, requests or not.
            obs.on_demand = false;
        }
        Event::Failed {
            generation,
            message,
        } if generation == obs.generation => match obs.phase {
            Phase::Pulling | Phase::Loading | Phase::Ready | Phase::Idle | Phase::Sleeping => {
                obs.pid = None;
                obs.pull = None;
                obs.sleeping_since = None;
                obs.ready_since = None;
                obs.draining = None;
                obs.load_failures += 1;
                obs.refused = false;
                obs.last_error = Some(message);
                obs.failures.push(now);
                policy.prune(&mut obs.failures, now);
                obs.idle_since = None;
                if policy.is_crash_loop(obs.failures.len()) {
                    obs.phase = Phase::CrashLoop;
                    obs.retry_at = None;
                } else {
                    obs.phase = Phase::Failed;
                    obs.retry_at = Some(now + policy.delay(obs.failures.len()));
                }
            }
            Phase::Unloading => {
                obs.phase = Phase::Stopped;
                obs.pid = None;
                obs.draining = None;
            }
            _ => {}
        },
        Event::Stopped { generation } if generation == obs.generation => {
            obs.memory_rss = None;
            if obs.phase.is_running() {
                obs.phase = Phase::Stopped;
            }
            obs.pid = None;
            obs.idle_since = None;
            obs.ready_since = None;
            obs.draining = None;
        }
        Event::Wake if !obs.want_loaded => {
            obs.want_loaded = true;
            obs.on_demand = true;
        }
        Event::Load => {
            obs.want_loaded = true;
            obs.on_demand = false;
            match obs.phase {
                Phase::CrashLoop => {
                    obs.failures.clear();
                    obs.retry_at = None;
                    obs.phase = Phase::Stopped;
                }
                Phase::Failed => obs.retry_at = Some(now),
                _ => {}
            }
        }
        Event::Unload => {
            obs.want_loaded = false;
            obs.on_demand = false;
        }
        _ => {}
    }
}

/// Records that the controller carried out `action` for this slot.
pub fn on_action(obs: &mut ObservedSlot, action: &Action, now: Time) {
    match action {
        Action::Start { launch, .. } | Action::Restart { launch, .. } => {
            if obs.phase == Phase::Failed && obs.launch.as_ref() == Some(launch) {
                obs.restarts += 1;
            }
            if obs.launch.as_ref() != Some(launch) {
                // A config change gives the slot a fresh start: its old failures were about
                // another launch.
                obs.failures.clear();
                obs.memory_peak = None;
            }
            obs.generation += 1;
            obs.phase = Phase::Loading;
            obs.launch = Some(launch.clone());
            obs.load_started = Some(now);
            obs.pid = None;
            obs.retry_at = None;
            obs.idle_since = None;
            obs.pull = None;
            obs.ready_since = None;
            obs.draining = None;
            obs.held_since = None;
        }
        Action::Stop { reason, .. } => {
            obs.phase = Phase::Unloading;
            match reason {
                StopReason::Evicted { .. } => obs.evictions += 1,
                StopReason::Swapped { .. } => obs.swaps += 1,
                _ => {}
            }
            if !matches!(reason, StopReason::Removed) {
                obs.want_loaded = false;
                obs.on_demand = false;
            }
            if let Some(r) = obs.ready_since.take() {
                obs.last_residency = Some(now.saturating_sub(r));
            }
            obs.draining = None;
        }
        Action::Drain { for_slot, .. } => obs.draining = Some(for_slot.clone()),
        Action::Undrain { .. } => obs.draining = None,
        Action::Abandon { .. } => {
            obs.want_loaded = false;
            obs.on_demand = false;
        }
        Action::HoldRequests { hold, .. } => {
            obs.held_since = hold.then_some(now);
        }
        // Planned for a ready slot; with `unload_idle` the same plan stops it first, and an
        // unloading slot stays unloading (marking it idle would have it stopped twice).
        Action::MarkIdle { .. } if obs.phase == Phase::Ready => {
            obs.phase = Phase::Idle;
            obs.idle_since = Some(now);
        }
        Action::MarkIdle { .. } => {}
        Action::MarkReady { .. } => {
            obs.phase = Phase::Ready;
            obs.idle_since = None;
            obs.sleeping_since = None;
        }
        Action::Wake { .. } => {
            // The provider wakes on the request that is let through now; its memory is back
            // in admission from here, and a residency starts as after a load.
            obs.phase = Phase::Ready;
            obs.sleeping_since = None;
            obs.idle_since = None;
            obs.ready_since = Some(now);
            obs.last_activity = Some(now);
        }
        Action::Refuse { message, .. } => {
            obs.want_loaded = false;
            obs.on_demand = false;
            obs.load_failures += 1;
            obs.refused = true;
            obs.last_error = Some(message.clone());
        }
        Action::Forget { .. } => {}
    }
}

/// Applies a change of the slot's declaration that needs no restart. A slot that appears with
/// `autoload`, or whose `autoload` is switched on, is wanted loaded.
pub fn on_spec_change(obs: &mut ObservedSlot, old: Option<&SlotSpec>, new: &SlotSpec) {
    let autoload_now = new.autoload && !old.is_some_and(|o| o.autoload);
    if autoload_now {
        obs.want_loaded = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn s(n: u64) -> Time {
        Duration::from_secs(n)
    }

    fn loading(generation: u64) -> ObservedSlot {
        ObservedSlot {
            phase: Phase::Loading,
            generation,
            want_loaded: true,
            load_started: Some(s(0)),
            ..Default::default()
        }
    }

    #[test]
    fn ready_records_load_time_and_activity() {
        let mut o = loading(1);
        on_event(
            &mut o,
            Event::Ready { generation: 1 },
            s(7),
            &RestartPolicy::default(),
        );
        assert_eq!(o.phase, Phase::Ready);
        assert_eq!(o.last_load, Some(s(7)));
        assert_eq!(o.last_activity, Some(s(7)));
    }

    #[test]
    fn events_about_an_old_generation_are_ignored() {
        let mut o = loading(2);
        on_event(
            &mut o,
            Event::Ready { generation: 1 },
            s(1),
            &RestartPolicy::default(),
        );
        on_event(
            &mut o,
            Event::Failed {
                generation: 1,
                message: "x".into(),
            },
            s(1),
            &RestartPolicy::default(),
        );
        assert_eq!(o.phase, Phase::Loading);
    }

    #[test]
    fn a_crash_schedules_a_retry_with_backoff() {
        let p = RestartPolicy::default();
        let mut o = loading(1);
        o.phase = Phase::Ready;
        on_event(
            &mut o,
            Event::Failed {
                generation: 1,
                message: "exit 137".into(),
            },
            s(10),
            &p,
        );
        assert_eq!(o.phase, Phase::Failed);
        assert_eq!(o.retry_at, Some(s(11)));
        assert_eq!(o.last_error.as_deref(), Some("exit 137"));
        assert_eq!(o.load_failures, 1);
    }

    #[test]
    fn repeated_failures_in_the_window_park_the_slot_in_crash_loop() {
        let p = RestartPolicy::default();
        let mut o = loading(0);
        for i in 0..p.max_failures as u64 {
            o.phase = Phase::Loading;
            on_event(
                &mut o,
                Event::Failed {
                    generation: 0,
                    message: "boom".into(),
                },
                s(i),
                &p,
            );
        }
        assert_eq!(o.phase, Phase::CrashLoop);
        assert_eq!(o.retry_at, None);
    }

    #[test]
    fn failures_outside_the_window_do_not_count() {
        let p = RestartPolicy::default();
        let mut o = loading(0);
        for i in 0..p.max_failures as u64 {
            o.phase = Phase::Loading;
            on_event(
                &mut o,
                Event::Failed {
                    generation: 0,
                    message: "boom".into(),
                },
                s(i * 200),
                &p,
            );
        }
        assert_eq!(o.phase, Phase::Failed);
    }

    #[test]
    fn an_explicit_load_lifts_a_crash_loop_but_a_wake_does_not() {
        let p = RestartPolicy::default();
        let mut o = ObservedSlot {
            phase: Phase::CrashLoop,
            failures: vec![s(1); 5],
            ..Default::default()
        };
        on_event(&mut o, Event::Wake, s(2), &p);
        assert_eq!(o.phase, Phase::CrashLoop);
        on_event(&mut o, Event::Load, s(2), &p);
        assert_eq!(o.phase, Phase::Stopped);
        assert!(o.failures.is_empty());
        assert!(o.want_loaded);
    }

    #[test]
    fn an_exit_during_unloading_is_a_stop_not_a_failure() {
        let mut o = loading(1);
        o.phase = Phase::Unloading;
        on_event(
            &mut o,
            Event::Failed {
                generation: 1,
                message: "signal 15".into(),
            },
            s(3),
            &RestartPolicy::default(),
        );
        assert_eq!(o.phase, Phase::Stopped);
        assert_eq!(o.load_failures, 0);
    }

    #[test]
    fn a_residency_runs_from_ready_to_the_stop_and_a_swap_is_counted() {
        let p = RestartPolicy::default();
        let mut o = loading(1);
        o.on_demand = true;
        on_event(&mut o, Event::Ready { generation: 1 }, s(5), &p);
        assert_eq!(o.ready_since, Some(s(5)));
        assert!(
            !o.on_demand,
            "a loaded slot is no longer an abandonable load"
        );
        let drain = Action::Drain {
            slot: crate::model::SlotName::parse("a").unwrap(),
            for_slot: crate::model::SlotName::parse("b").unwrap(),
        };
        on_action(&mut o, &drain, s(20));
        assert!(o.draining.is_some());
        let swap = Action::Stop {
            slot: crate::model::SlotName::parse("a").unwrap(),
            reason: StopReason::Swapped {
                for_slot: crate::model::SlotName::parse("b").unwrap(),
            },
        };
        on_action(&mut o, &swap, s(25));
        assert_eq!(o.last_residency, Some(s(20)));
        assert_eq!((o.swaps, o.evictions), (1, 0));
        assert_eq!(o.draining, None);
        assert_eq!(o.ready_since, None);
        assert!(!o.want_loaded);
    }

    #[test]
    fn only_a_wake_of_an_unwanted_slot_makes_an_on_demand_load() {
        let p = RestartPolicy::default();
        let mut o = ObservedSlot::default();
        on_event(&mut o, Event::Wake, s(1), &p);
        assert!(o.want_loaded && o.on_demand);
        on_event(&mut o, Event::Load, s(2), &p);
        assert!(o.want_loaded && !o.on_demand, "an explicit load is kept");
        on_event(&mut o, Event::Wake, s(3), &p);
        assert!(!o.on_demand);
    }

    #[test]
    fn the_provider_falling_asleep_is_believed_once_the_slot_was_quiet_long_enough() {
        let p = RestartPolicy::default();
        let mut o = loading(1);
        o.phase = Phase::Ready;
        o.launch = Some(crate::model::LaunchSpec {
            sleep_after_secs: Some(5),
            ..crate::model::LaunchSpec::new(
                &crate::model::DesiredState::default(),
                &crate::model::SlotName::parse("a").unwrap(),
                &crate::model::SlotSpec::new(crate::model::ProviderKind::LlamaCpp, Some("/m")),
                9000,
            )
        });
        o.last_activity = Some(s(10));
        let asleep = Event::Asleep {
            generation: 1,
            asleep: true,
        };
        on_event(&mut o, asleep.clone(), s(12), &p);
        assert_eq!(
            o.phase,
            Phase::Ready,
            "a reading from before the last request"
        );
        on_event(&mut o, asleep, s(15), &p);
        assert_eq!(o.phase, Phase::Sleeping);
        assert_eq!(o.sleeping_since, Some(s(15)));
        let wake = Action::Wake {
            slot: crate::model::SlotName::parse("a").unwrap(),
        };
        on_action(&mut o, &wake, s(20));
        assert_eq!((o.phase, o.ready_since), (Phase::Ready, Some(s(20))));
    }

    #[test]
    fn autoload_marks_a_new_slot_wanted() {
        let mut spec =
            crate::model::SlotSpec::new(crate::model::ProviderKind::LlamaCpp, Some("/m.gguf"));
        let mut o = ObservedSlot::default();
        on_spec_change(&mut o, None, &spec);
        assert!(!o.want_loaded);
        let old = spec.clone();
        spec.autoload = true;
        on_spec_change(&mut o, Some(&old), &spec);
        assert!(o.want_loaded);
    }
}

/// Whether the controller wants to hear when the slot's requests in flight cross zero (each
/// crossing wakes it for a round). Yes when the end of a request can change the plan: a slot
/// not ready (a request wakes an idle or sleeping one), draining, no longer declared, or with a
/// restart or an unload waiting for its requests to end. Not for a ready slot that is simply
/// serving (its idle clock is looked at on a timer, see `plan`), nor ever for an external
/// upstream (it runs nothing here). Otherwise every request would wake the controller twice.
pub fn watches_activity(spec: Option<&SlotSpec>, obs: Option<&ObservedSlot>) -> bool {
    let Some(spec) = spec else {
        return true;
    };
    if !spec.provider.runs_process() {
        return false;
    }
    obs.is_none_or(|o| {
        o.phase != Phase::Ready
            || o.draining.is_some()
            || (o.in_flight > 0 && (o.held_since.is_some() || !o.want_loaded))
    })
}

#[cfg(test)]
mod watch_tests {
    use super::*;
    use crate::model::ProviderKind;

    #[test]
    fn only_slots_whose_requests_can_change_a_plan_are_watched() {
        let local = SlotSpec::new(ProviderKind::LlamaCpp, Some("/m.gguf"));
        let external = SlotSpec::new(ProviderKind::OpenAiCompatible, None);
        let ready = ObservedSlot {
            phase: Phase::Ready,
            want_loaded: true,
            ..ObservedSlot::default()
        };
        let busy = ObservedSlot {
            in_flight: 1,
            ..ready.clone()
        };
        assert!(!watches_activity(Some(&local), Some(&ready)));
        assert!(
            !watches_activity(Some(&local), Some(&busy)),
            "simply serving"
        );
        let held = ObservedSlot {
            held_since: Some(Time::ZERO),
            ..busy.clone()
        };
        assert!(
            watches_activity(Some(&local), Some(&held)),
            "a restart waits"
        );
        let unloading = ObservedSlot {
            want_loaded: false,
            ..busy.clone()
        };
        assert!(
            watches_activity(Some(&local), Some(&unloading)),
            "an unload waits"
        );
        let idle = ObservedSlot {
            phase: Phase::Idle,
            ..ready.clone()
        };
        assert!(
            watches_activity(Some(&local), Some(&idle)),
            "a request wakes it"
        );
        assert!(
            watches_activity(Some(&local), Some(&ObservedSlot::default())),
            "stopped"
        );
        assert!(watches_activity(Some(&local), None), "not seen yet");
        assert!(watches_activity(None, Some(&busy)), "being removed");
        for obs in [None, Some(&ready), Some(&busy)] {
            assert!(
                !watches_activity(Some(&external), obs),
                "an external upstream"
            );
        }
    }
}
