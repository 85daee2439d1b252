//! Pid files, one per running slot, in `server.state_dir`. If hal0 dies without stopping its
//! providers (a power cut of the service manager, a bug), the next hal0 finds them here and
//! kills what is still running, so no port stays taken. Only processes that carry our
//! `HAL0_SLOT=<name>` environment variable are touched.

use std::path::{Path, PathBuf};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::spawn::SLOT_ENV;
use crate::model::SlotName;

fn path(dir: &Path, slot: &SlotName) -> PathBuf {
    dir.join(format!("{slot}.pid"))
}

pub fn write(dir: Option<&Path>, slot: &SlotName, pid: u32) {
    let Some(dir) = dir else { return };
    let result =
        std::fs::create_dir_all(dir).and_then(|_| std::fs::write(path(dir, slot), pid.to_string()));
    if let Err(e) = result {
        tracing::warn!(slot = %slot, "cannot write pid file in {}: {e}", dir.display());
    }
}

pub fn remove(dir: Option<&Path>, slot: &SlotName) {
    if let Some(dir) = dir {
        let _ = std::fs::remove_file(path(dir, slot));
    }
}

/// Kills the process groups of leftover providers recorded in `dir`. Returns the pids killed.
pub fn reap_orphans(dir: &Path) -> Vec<u32> {
    let mut killed = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return killed;
    };
    for entry in entries.flatten() {
        let file = entry.path();
        let Some(slot) = file
            .file_stem()
            .and_then(|s| s.to_str())
            .map(str::to_string)
        else {
            continue;
        };
        if file.extension().and_then(|e| e.to_str()) != Some("pid") {
            continue;
        }
        let pid = std::fs::read_to_string(&file)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        if let Some(pid) = pid
            && is_our_provider(pid, &slot)
            && let Ok(raw) = i32::try_from(pid)
        {
            tracing::warn!(slot = %slot, pid, "killing a provider left behind by an earlier hal0");
            let _ = killpg(Pid::from_raw(raw), Signal::SIGKILL);
            killed.push(pid);
        }
        let _ = std::fs::remove_file(&file);
    }
    killed
}

/// Whether `pid` still runs with `HAL0_SLOT=<slot>` in its environment.
fn is_our_provider(pid: u32, slot: &str) -> bool {
    let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let want = format!("{SLOT_ENV}={slot}");
    environ.split(|b| *b == 0).any(|kv| kv == want.as_bytes())
}
