//! The per-slot supervisor: the one task that owns a slot's child process. Everyone else talks
//! to it through a [`SupervisorHandle`], so nobody checks a state and then acts on a stale one.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior};

use super::health::{Probe, SleepProbe};
use super::pulling::{self, PullJob, Pulling};
use super::spawn::{Child, spawn};
use super::{AnswerCheck, Readiness, RuntimeConfig, kill, pidfiles};
use crate::core::Event;
use crate::model::SlotName;
use crate::providers::Command;
use crate::runtime::LogBuffer;
use crate::runtime::RuntimeEvent;

enum Cmd {
    Start {
        generation: u64,
        command: Command,
        port: u16,
        ready: Box<Readiness>,
        pull: Option<PullJob>,
    },
    Stop {
        generation: u64,
    },
    Shutdown(Option<oneshot::Sender<()>>),
}

/// Talks to one slot's supervisor task.
pub struct SupervisorHandle {
    tx: mpsc::UnboundedSender<Cmd>,
    logs: LogBuffer,
}

impl SupervisorHandle {
    pub fn spawn(
        slot: SlotName,
        config: Arc<RuntimeConfig>,
        events: mpsc::UnboundedSender<RuntimeEvent>,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let logs = LogBuffer::new(2000);
        let sup = Supervisor {
            slot,
            config,
            events,
            logs: logs.clone(),
            current: None,
            pulling: None,
        };
        tokio::spawn(sup.run(rx));
        SupervisorHandle { tx, logs }
    }

    /// Starts generation `generation`, replacing any running process (which is stopped first,
    /// without a failure being reported for it).
    pub fn start(
        &self,
        generation: u64,
        command: Command,
        port: u16,
        ready: Readiness,
        pull: Option<PullJob>,
    ) {
        let _ = self.tx.send(Cmd::Start {
            generation,
            command,
            port,
            ready: Box::new(ready),
            pull,
        });
    }

    /// Stops the process; `Stopped { generation }` is reported when it is gone.
    pub fn stop(&self, generation: u64) {
        let _ = self.tx.send(Cmd::Stop { generation });
    }

    pub fn logs(&self) -> &LogBuffer {
        &self.logs
    }

    /// Stops the process and ends the task, waiting for both.
    pub async fn shutdown(self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Cmd::Shutdown(Some(done))).is_ok() {
            let _ = wait.await;
        }
    }

    /// Ends the task without waiting.
    pub fn shutdown_detached(self) {
        let _ = self.tx.send(Cmd::Shutdown(None));
    }
}

/// The process of the current generation.
struct Running {
    child: Child,
    generation: u64,
    port: u16,
    probe: Probe,
    /// Asked once health passes, before the process counts as ready.
    answer: Option<AnswerCheck>,
    /// Asked at each health check once ready, when the provider may sleep.
    sleep: Option<SleepProbe>,
    /// What it said last.
    asleep: Option<bool>,
    ready: bool,
    started: Instant,
    failed_probes: u32,
}

struct Supervisor {
    slot: SlotName,
    config: Arc<RuntimeConfig>,
    events: mpsc::UnboundedSender<RuntimeEvent>,
    logs: LogBuffer,
    current: Option<Running>,
    /// A model download that must finish before the process starts.
    pulling: Option<Pulling>,
}

/// The answer check gets the rest of load_timeout, but at least this long.
const ANSWER_TIMEOUT_MIN: Duration = Duration::from_secs(10);

/// How often a loading process is probed: often, so a ready model is served at once.
const LOADING_PROBE_INTERVAL: Duration = Duration::from_millis(100);

impl Supervisor {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Cmd>) {
        let mut tick = tokio::time::interval(LOADING_PROBE_INTERVAL);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(Cmd::Start { generation, command, port, ready, pull }) => {
                        self.stop_current().await;
                        match pull {
                            Some(job) => {
                                let task = pulling::begin(self.slot.clone(), generation, job, self.events.clone());
                                self.pulling = Some(Pulling { generation, task, command, port, ready: *ready });
                            }
                            None => self.start(generation, command, port, *ready),
                        }
                    }
                    Some(Cmd::Stop { generation }) => {
                        self.stop_current().await;
                        self.emit(Event::Stopped { generation });
                    }
                    Some(Cmd::Shutdown(done)) => {
                        self.stop_current().await;
                        if let Some(done) = done {
                            let _ = done.send(());
                        }
                        return;
                    }
                    None => {
                        self.stop_current().await;
                        return;
                    }
                },
                pulled = pulling::wait(&mut self.pulling) => {
                    if let Some(p) = self.pulling.take() {
                        match pulled {
                            Ok(()) => self.start(p.generation, p.command, p.port, p.ready),
                            Err(message) => {
                                tracing::warn!(slot = %self.slot, "{message}");
                                self.emit(Event::Failed { generation: p.generation, message });
                            }
                        }
                    }
                }
                status = wait_current(&mut self.current) => {
                    if let Some(run) = self.current.take() {
                        kill::kill_group_now(run.child.pgid);
                        pidfiles::remove(self.config.state_dir.as_deref(), &self.slot);
                        let message = format!("{}{}", status, self.log_context());
                        tracing::warn!(slot = %self.slot, "provider {message}");
                        self.emit(Event::Failed { generation: run.generation, message: format!("provider {message}") });
                    }
                }
                _ = tick.tick(), if self.current.is_some() => self.probe().await,
            }
        }
    }

    fn start(&mut self, generation: u64, command: Command, port: u16, ready: Readiness) {
        if let Err(e) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            let message = format!(
                "port {port} is already in use by another process ({e}); pin another port or free it"
            );
            self.emit(Event::Failed {
                generation,
                message,
            });
            return;
        }
        let shown = loggable_argv(&command.argv());
        tracing::info!(slot = %self.slot, argv = ?shown, "starting provider");
        match spawn(&self.slot, &command, &self.config, &self.logs) {
            Ok(child) => {
                pidfiles::write(self.config.state_dir.as_deref(), &self.slot, child.pid);
                self.emit(Event::Spawned {
                    generation,
                    pid: child.pid,
                });
                self.current = Some(Running {
                    child,
                    generation,
                    port,
                    probe: Probe::new(port, &ready.health_path),
                    answer: ready.answer,
                    sleep: ready.sleeps.then(|| SleepProbe::new(port)),
                    asleep: None,
                    ready: false,
                    started: Instant::now(),
                    failed_probes: 0,
                });
            }
            Err(e) => {
                let message = format!("could not start {}: {e}", command.program);
                self.emit(Event::Failed {
                    generation,
                    message,
                });
            }
        }
    }

    async fn probe(&mut self) {
        let Some(run) = self.current.as_mut() else {
            return;
        };
        if run.ready && run.started.elapsed() < self.config.health_interval {
            return;
        }
        let ok = run.probe.check().await;
        let Some(run) = self.current.as_mut() else {
            return;
        };
        // Measured once the model is loaded: while starting, the process is not yet what it
        // will be (the shim, or a half-read model).
        if let (true, Some((rss, peak))) = (run.ready, super::memory::measure(run.child.pid)) {
            let generation = run.generation;
            self.emit(Event::Memory {
                generation,
                rss,
                peak,
            });
        }
        let Some(run) = self.current.as_mut() else {
            return;
        };
        if !run.ready {
            if ok && let Some(check) = run.answer.take() {
                let port = run.port;
                let left = self
                    .config
                    .load_timeout
                    .saturating_sub(run.started.elapsed());
                let verdict = check.run(port, left.max(ANSWER_TIMEOUT_MIN)).await;
                if let Err(message) = verdict {
                    self.fail_current(message).await;
                    return;
                }
                tracing::info!(slot = %self.slot, "answer check passed");
            }
            let Some(run) = self.current.as_mut() else {
                return;
            };
            if ok {
                run.ready = true;
                run.started = Instant::now();
                tracing::info!(slot = %self.slot, port = run.port, "provider ready");
                let generation = run.generation;
                self.emit(Event::Ready { generation });
            } else if run.started.elapsed() > self.config.load_timeout {
                let message = format!(
                    "{} ({:?}){}",
                    crate::model::LOAD_TIMED_OUT,
                    self.config.load_timeout,
                    self.log_context()
                );
                self.fail_current(message).await;
            }
            return;
        }
        // Ready: re-probe every health_interval (`started` doubles as the last probe time).
        run.started = Instant::now();
        if ok {
            run.failed_probes = 0;
            let Some(sleep) = run.sleep.as_ref() else {
                return;
            };
            let asleep = sleep.asleep().await;
            let Some(run) = self.current.as_mut() else {
                return;
            };
            // "Asleep" is repeated at every check (the controller may not believe a reading
            // taken just before a request); "awake" only when it changes.
            if let Some(asleep) = asleep
                && (asleep || run.asleep != Some(asleep))
            {
                if run.asleep != Some(asleep) {
                    tracing::info!(slot = %self.slot, asleep, "provider sleep state");
                }
                run.asleep = Some(asleep);
                let generation = run.generation;
                self.emit(Event::Asleep { generation, asleep });
            }
            return;
        }
        run.failed_probes += 1;
        if run.failed_probes >= self.config.health_failures {
            let message = format!(
                "provider failed {} health checks in a row",
                run.failed_probes
            );
            self.fail_current(message).await;
        }
    }

    async fn fail_current(&mut self, message: String) {
        let generation = self.current.as_ref().map(|r| r.generation);
        self.stop_current().await;
        if let Some(generation) = generation {
            tracing::warn!(slot = %self.slot, "{message}");
            self.emit(Event::Failed {
                generation,
                message,
            });
        }
    }

    async fn stop_current(&mut self) {
        if let Some(p) = self.pulling.take() {
            p.task.abort();
        }
        if let Some(mut run) = self.current.take() {
            tracing::info!(slot = %self.slot, pid = run.child.pid, "stopping provider");
            kill::stop_group(&mut run.child, self.config.stop_grace).await;
            pidfiles::remove(self.config.state_dir.as_deref(), &self.slot);
        }
    }

    /// The last lines the provider printed, for error messages.
    fn log_context(&self) -> String {
        let tail = self.logs.tail(3);
        if tail.is_empty() {
            String::new()
        } else {
            format!("; last output: {}", tail.join(" | "))
        }
    }

    fn emit(&self, event: Event) {
        let _ = self.events.send(RuntimeEvent {
            slot: self.slot.clone(),
            event,
        });
    }
}

async fn wait_current(current: &mut Option<Running>) -> String {
    match current.as_mut() {
        Some(run) => run.child.wait_exit().await,
        None => std::future::pending().await,
    }
}

/// `argv` as it may be logged: the value of a flag whose name looks secret (`--api-key X`,
/// `--hf-token=X`, `--password X`) is replaced, so a key passed in a slot's `args` never
/// reaches the log.
fn loggable_argv<S: AsRef<str>>(argv: &[S]) -> Vec<String> {
    let secret = |flag: &str| {
        let upper = flag.to_ascii_uppercase();
        flag.starts_with('-')
            && ["KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL"]
                .iter()
                .any(|m| upper.contains(m))
    };
    let mut out = Vec::with_capacity(argv.len());
    let mut hide_next = false;
    for arg in argv.iter().map(AsRef::as_ref) {
        if hide_next {
            out.push("<redacted>".to_string());
            hide_next = false;
            continue;
        }
        match arg.split_once('=') {
            Some((flag, _)) if secret(flag) => out.push(format!("{flag}=<redacted>")),
            None if secret(arg) => {
                hide_next = true;
                out.push(arg.to_string());
            }
            _ => out.push(arg.to_string()),
        }
    }
    out
}

#[cfg(test)]
mod argv_tests {
    use super::loggable_argv;

    #[test]
    fn secret_flag_values_are_not_logged() {
        let argv = [
            "llama-server",
            "--api-key",
            "sk-123",
            "--hf-token=hf_abc",
            "--port",
            "8081",
            "-m",
            "/m.gguf",
        ];
        assert_eq!(
            loggable_argv(&argv),
            [
                "llama-server",
                "--api-key",
                "<redacted>",
                "--hf-token=<redacted>",
                "--port",
                "8081",
                "-m",
                "/m.gguf"
            ]
        );
    }
}
