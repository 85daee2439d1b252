//! Starting a provider process: its own process group (so a stop reaches every process it
//! forks), stdin closed, stdout and stderr pumped line by line into the slot's log buffer and
//! hal0's log.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use super::{RuntimeConfig, shim};
use crate::model::SlotName;
use crate::providers::Command;
use crate::runtime::LogBuffer;

/// Environment variable set in every provider; used to recognise our own leftovers.
pub const SLOT_ENV: &str = "HAL0_SLOT";

/// A running child.
pub struct Child {
    pub pid: u32,
    /// Process group id (the child leads its own group, so it equals `pid`).
    pub pgid: i32,
    inner: tokio::process::Child,
}

impl Child {
    /// Waits for the process to exit and describes how it did.
    pub async fn wait_exit(&mut self) -> String {
        match self.inner.wait().await {
            Ok(status) => describe(status),
            Err(e) => format!("could not be waited for: {e}"),
        }
    }

    /// Whether the process has exited (without blocking).
    pub fn try_exited(&mut self) -> bool {
        !matches!(self.inner.try_wait(), Ok(None))
    }
}

fn describe(status: std::process::ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(sig)) => {
            let name = nix::sys::signal::Signal::try_from(sig)
                .map(|s| s.as_str())
                .unwrap_or("unknown");
            format!("was killed by signal {sig} ({name})")
        }
        _ => format!("ended ({status})"),
    }
}

/// Spawns the provider. With a shim configured, the argv is wrapped as
/// `hal0 __exec-child --parent <our pid> -- <argv>`.
pub fn spawn(
    slot: &SlotName,
    command: &Command,
    config: &RuntimeConfig,
    logs: &LogBuffer,
) -> std::io::Result<Child> {
    let mut cmd = match &config.shim {
        Some(hal0) => {
            let mut c = tokio::process::Command::new(hal0);
            c.arg(shim::SHIM_SUBCOMMAND)
                .arg("--parent")
                .arg(std::process::id().to_string())
                .arg("--")
                .arg(&command.program)
                .args(&command.args);
            c
        }
        None => {
            let mut c = tokio::process::Command::new(&command.program);
            c.args(&command.args);
            c
        }
    };
    cmd.envs(&command.env)
        .env(SLOT_ENV, slot.as_str())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        // A safety net only: the supervisor always stops children itself.
        .kill_on_drop(true);
    let mut inner = cmd.spawn()?;
    let pid = inner
        .id()
        .ok_or_else(|| std::io::Error::other("child exited before its pid was read"))?;
    if let Some(out) = inner.stdout.take() {
        tokio::spawn(pump(slot.clone(), out, logs.clone()));
    }
    if let Some(err) = inner.stderr.take() {
        tokio::spawn(pump(slot.clone(), err, logs.clone()));
    }
    let pgid = i32::try_from(pid).map_err(|_| std::io::Error::other("pid out of range"))?;
    Ok(Child { pid, pgid, inner })
}

async fn pump(slot: SlotName, stream: impl AsyncRead + Unpin, logs: LogBuffer) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::info!(target: "hal0::provider", slot = %slot, "{line}");
        logs.push(line);
    }
}
