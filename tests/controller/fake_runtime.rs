//! A fake [`Runtime`] for the controller's tests, on tokio's virtual time: a start reports
//! `Spawned` at once and `Ready` after `load_time` (or `Failed`, when a failure is queued for
//! the slot); a stop reports `Stopped` at once; `crash` makes the running generation fail.
//! Every command is recorded with the virtual time it came at.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use hal0::core::Event;
use hal0::model::SlotName;
use hal0::runtime::{EventSender, LaunchSpec, LogBuffer, ModelStore, Runtime, RuntimeEvent};

/// What the fake was asked to do.
#[derive(Debug, Clone)]
pub enum Call {
    Start {
        at: Instant,
        launch: Box<LaunchSpec>,
    },
    Stop {
        at: Instant,
        slot: SlotName,
    },
}

#[derive(Default)]
struct Shared {
    calls: Vec<Call>,
    /// Failure messages for the next loads of a slot, in order.
    failures: BTreeMap<SlotName, VecDeque<String>>,
    /// The generation each slot runs (or loads).
    running: BTreeMap<SlotName, u64>,
}

/// The test's side of the fake.
#[derive(Clone)]
pub struct Script {
    shared: Arc<Mutex<Shared>>,
    events: EventSender,
}

impl Script {
    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// The starts so far: (virtual time, slot, generation).
    pub fn starts(&self) -> Vec<(Instant, SlotName, u64)> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Start { at, launch } => Some((at, launch.slot().clone(), launch.generation)),
                Call::Stop { .. } => None,
            })
            .collect()
    }

    /// The stops so far: (virtual time, slot).
    pub fn stops(&self) -> Vec<(Instant, SlotName)> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Stop { at, slot } => Some((at, slot)),
                Call::Start { .. } => None,
            })
            .collect()
    }

    /// The next load of `slot` fails with `message`.
    pub fn fail_next_load(&self, slot: &SlotName, message: &str) {
        self.lock()
            .failures
            .entry(slot.clone())
            .or_default()
            .push_back(message.to_string());
    }

    /// The running process of `slot` exits on its own.
    pub fn crash(&self, slot: &SlotName, message: &str) {
        let generation = self.lock().running.get(slot).copied();
        if let Some(generation) = generation {
            let _ = self.events.send(RuntimeEvent {
                slot: slot.clone(),
                event: Event::Failed {
                    generation,
                    message: message.to_string(),
                },
            });
        }
    }
}

pub struct FakeRuntime {
    script: Script,
    load_time: Duration,
    loads: BTreeMap<SlotName, JoinHandle<()>>,
}

impl FakeRuntime {
    pub fn new(events: EventSender, load_time: Duration) -> (Self, Script) {
        let script = Script {
            shared: Arc::default(),
            events,
        };
        let fake = FakeRuntime {
            script: script.clone(),
            load_time,
            loads: BTreeMap::new(),
        };
        (fake, script)
    }
}

impl Runtime for FakeRuntime {
    fn start(&mut self, launch: LaunchSpec) {
        let slot = launch.slot().clone();
        let generation = launch.generation;
        let failure = {
            let mut shared = self.script.lock();
            shared.calls.push(Call::Start {
                at: Instant::now(),
                launch: Box::new(launch),
            });
            shared.running.insert(slot.clone(), generation);
            shared.failures.get_mut(&slot).and_then(VecDeque::pop_front)
        };
        if let Some(old) = self.loads.remove(&slot) {
            old.abort();
        }
        let key = slot.clone();
        let events = self.script.events.clone();
        let load_time = self.load_time;
        let emit = move |event| {
            let _ = events.send(RuntimeEvent {
                slot: slot.clone(),
                event,
            });
        };
        emit(Event::Spawned {
            generation,
            pid: 4242,
        });
        let task = tokio::spawn(async move {
            tokio::time::sleep(load_time).await;
            emit(match failure {
                Some(message) => Event::Failed {
                    generation,
                    message,
                },
                None => Event::Ready { generation },
            });
        });
        self.loads.insert(key, task);
    }

    fn stop(&mut self, slot: &SlotName, generation: u64) {
        if let Some(load) = self.loads.remove(slot) {
            load.abort();
        }
        {
            let mut shared = self.script.lock();
            shared.calls.push(Call::Stop {
                at: Instant::now(),
                slot: slot.clone(),
            });
            shared.running.remove(slot);
        }
        let _ = self.script.events.send(RuntimeEvent {
            slot: slot.clone(),
            event: Event::Stopped { generation },
        });
    }

    fn forget(&mut self, slot: &SlotName) {
        self.loads.remove(slot);
    }

    fn logs(&self, _slot: &SlotName) -> Option<LogBuffer> {
        None
    }

    fn model_size(&self, _model: &str, _store: &ModelStore) -> Option<u64> {
        None
    }

    async fn shutdown(&mut self) {
        for (_, load) in std::mem::take(&mut self.loads) {
            load.abort();
        }
    }
}
