//! `hal0 __exec-child --parent PID -- ARGV...`: asks the kernel to SIGKILL this process when
//! its parent (hal0) dies — also when hal0 itself is SIGKILLed — and then becomes the provider
//! with `exec`, keeping the pid. This is how hal0 leaves no orphans without `unsafe` code.
//!
//! The death signal fires when the *thread* that spawned the child exits. hal0 spawns from
//! tokio worker threads, which live as long as the runtime, so this is hal0's own exit.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;

use nix::sys::signal::Signal;

/// The hidden subcommand name.
pub const SHIM_SUBCOMMAND: &str = "__exec-child";

/// Sets the parent-death signal and execs `argv`. Returns only on failure.
pub fn exec_child(parent: u32, argv: &[OsString]) -> std::io::Error {
    // A parent that blocks signals to wait for them (hal0-testenv does) must not pass the
    // mask on: the child would ignore SIGTERM.
    if let Err(e) = nix::sys::signal::SigSet::all().thread_unblock() {
        return std::io::Error::other(format!("cannot unblock signals: {e}"));
    }
    if let Err(e) = nix::sys::prctl::set_pdeathsig(Some(Signal::SIGKILL)) {
        return std::io::Error::other(format!("prctl(PR_SET_PDEATHSIG) failed: {e}"));
    }
    // The parent may have died between fork and prctl; then nobody would kill us later.
    if nix::unistd::getppid().as_raw() as u32 != parent {
        return std::io::Error::other("hal0 exited before the provider started");
    }
    let Some((program, args)) = argv.split_first() else {
        return std::io::Error::other("no command given to __exec-child");
    };
    std::process::Command::new(program).args(args).exec()
}
