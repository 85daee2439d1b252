//! hal0-testenv: a real Kubernetes control plane on 127.0.0.1 for hal0's tests and benchmarks,
//! from the binaries `scripts/setup-kube.sh` builds: etcd, kube-apiserver (RBAC on, generated
//! certificates and service-account signing key, a static admin token),
//! kube-controller-manager, kube-scheduler, and kwok with fake nodes so Deployments get
//! Running, Ready pods without a kubelet. Like controller-runtime's envtest, but the whole
//! control plane.
//!
//! ```text
//! hal0-testenv --bin-dir DIR [--dir WORKDIR] [--nodes N] [--no-workloads] [--keep]
//! ```
//!
//! Every port is random. When ready it prints one line on stdout,
//! `READY {"kubeconfig": "...", "server": "https://127.0.0.1:P", "etcd": "http://127.0.0.1:P", ...}`,
//! and then runs until stdin closes, SIGTERM or SIGINT; then it stops every process and
//! removes WORKDIR (unless `--keep`). On stdin it takes commands, one per line:
//! `restart COMPONENT` (e.g. `restart kube-apiserver`: stop it, start it with the same flags,
//! wait until it is ready; answers `RESTARTED COMPONENT` or `ERROR message` on stdout) and
//! `stop`. Each child is started through `hal0-testenv __exec-child`,
//! which asks the kernel to SIGKILL it when hal0-testenv dies, so nothing outlives it even after
//! a SIGKILL. A test keeps the pipe to stdin open; when the test binary exits or panics, stdin
//! closes and the control plane goes away.
#![forbid(unsafe_code)]

#[path = "testenv/certs.rs"]
mod certs;
#[path = "testenv/plane.rs"]
mod plane;

use std::ffi::OsString;
use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// The subcommand a child is started through (hal0's own, see [`exec_child`]).
pub const SHIM: &str = hal0::runtime::process::SHIM_SUBCOMMAND;

#[derive(Debug, Parser)]
#[command(
    name = "hal0-testenv",
    about = "A real Kubernetes control plane on 127.0.0.1 for tests"
)]
struct Args {
    /// Where etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl and kwok are
    /// (scripts/setup-kube.sh prints it as KUBE_BIN_DIR).
    #[arg(long, env = "HAL0_KUBE_BIN_DIR")]
    bin_dir: PathBuf,
    /// Working directory (certificates, etcd data, logs, kubeconfig). Default: a new one
    /// under the system temp dir.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// How many kwok nodes to create.
    #[arg(long, default_value_t = 2)]
    nodes: u32,
    /// Only etcd and kube-apiserver: no controller-manager, scheduler or kwok.
    #[arg(long)]
    no_workloads: bool,
    /// Keep the working directory on exit.
    #[arg(long)]
    keep: bool,
    /// Extra kube-apiserver flags (repeatable), e.g. `--apiserver-arg=--watch-cache=false`.
    #[arg(long = "apiserver-arg", allow_hyphen_values = true)]
    apiserver_args: Vec<String>,
}

fn main() -> std::process::ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    if argv.get(1).is_some_and(|a| a == SHIM) {
        let err = exec_child(&argv[2..]);
        eprintln!("hal0-testenv: {err}");
        return std::process::ExitCode::from(127);
    }
    let args = Args::parse();
    match run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hal0-testenv: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `hal0-testenv __exec-child PARENT_PID ARGV...`: hal0's own shim (die with the parent,
/// then exec ARGV).
fn exec_child(argv: &[OsString]) -> std::io::Error {
    let Some(parent) = argv.first().and_then(|p| p.to_str()?.parse::<u32>().ok()) else {
        return std::io::Error::other("usage: __exec-child PARENT_PID ARGV...");
    };
    hal0::runtime::process::exec_child(parent, argv.get(1..).unwrap_or_default())
}

fn run(args: Args) -> anyhow::Result<()> {
    let (dir, remove) = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
            (d.clone(), false)
        }
        None => {
            let d = std::env::temp_dir().join(format!("hal0-testenv-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d)?;
            (d, !args.keep)
        }
    };
    let stop = plane::StopFlag::install()?;
    let mut plane = plane::Plane::new(args.bin_dir.clone(), dir.clone());
    let result = plane.start(&plane::Options {
        nodes: args.nodes,
        workloads: !args.no_workloads,
        apiserver_args: args.apiserver_args.clone(),
    });
    match result {
        Ok(info) => {
            let mut out = std::io::stdout().lock();
            writeln!(out, "READY {}", serde_json::to_string(&info)?)?;
            out.flush()?;
            drop(out);
            serve_commands(&mut plane, &stop);
        }
        Err(e) => {
            plane.stop();
            if remove {
                let _ = std::fs::remove_dir_all(&dir);
            }
            return Err(e);
        }
    }
    plane.stop();
    if remove {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

/// Runs stdin's commands until stdin reaches EOF (the test went away), `stop`, or a signal.
fn serve_commands(plane: &mut plane::Plane, stop: &plane::StopFlag) {
    let (tx, rx) = std::sync::mpsc::channel::<Option<String>>();
    let lines = tx.clone();
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            match line {
                Ok(l) if l.trim() == "stop" => break,
                Ok(l) => {
                    if lines.send(Some(l)).is_err() {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        let _ = lines.send(None);
    });
    let flag = stop.clone();
    std::thread::spawn(move || {
        flag.wait();
        let _ = tx.send(None);
    });
    while let Ok(Some(line)) = rx.recv() {
        let mut words = line.split_whitespace();
        let answer = match (words.next(), words.next()) {
            (Some("restart"), Some(name)) => match plane.restart(name) {
                Ok(()) => format!("RESTARTED {name}"),
                Err(e) => format!("ERROR {e:#}").replace('\n', " "),
            },
            _ => format!("ERROR unknown command: {line}"),
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{answer}");
        let _ = out.flush();
    }
}
