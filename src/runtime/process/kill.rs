//! Stopping a provider: SIGTERM to its process group, a grace period, then SIGKILL to the group.

use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::spawn::Child;

/// Stops the child's whole process group and waits for the child.
pub async fn stop_group(child: &mut Child, grace: Duration) {
    let group = Pid::from_raw(child.pgid);
    if !child.try_exited() {
        let _ = killpg(group, Signal::SIGTERM);
        if tokio::time::timeout(grace, child.wait_exit())
            .await
            .is_err()
        {
            tracing::warn!(
                pid = child.pid,
                "provider ignored SIGTERM for {grace:?}; sending SIGKILL"
            );
            let _ = killpg(group, Signal::SIGKILL);
            child.wait_exit().await;
        }
    }
    // Anything the provider forked that outlived it.
    let _ = killpg(group, Signal::SIGKILL);
}

/// SIGKILL to a group whose leader already exited, so its helpers do not linger.
pub fn kill_group_now(pgid: i32) {
    let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
}
