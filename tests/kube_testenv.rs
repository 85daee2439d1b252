//! hal0-testenv leaves nothing behind: when its stdin closes (the test binary exited or
//! panicked) it stops every component and removes its directory; when it is SIGKILLed, the
//! kernel kills every component with it (PR_SET_PDEATHSIG).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn start() -> (std::process::Child, Value) {
    let bin = std::env::var_os("HAL0_KUBE_BIN_DIR").expect(
        "HAL0_KUBE_BIN_DIR is not set: run scripts/test.sh, or eval \"$(scripts/setup-kube.sh)\" first",
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_hal0-testenv"))
        .arg("--bin-dir")
        .arg(bin)
        .arg("--no-workloads")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start hal0-testenv");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("READY line");
    let info: Value =
        serde_json::from_str(line.trim().strip_prefix("READY ").expect("READY")).expect("json");
    (child, info)
}

fn pids(info: &Value) -> Vec<i32> {
    info["pids"]
        .as_array()
        .expect("pids")
        .iter()
        .filter_map(|p| p[1].as_i64())
        .map(|p| p as i32)
        .collect()
}

fn alive(pid: i32) -> bool {
    // A zombie is dead for our purpose; /proc/PID/stat's state field says which.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit(')').next().map(|r| r.trim().to_string()))
        .is_some_and(|r| !r.starts_with('Z'))
}

fn all_gone(pids: &[i32], within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if pids.iter().all(|p| !alive(*p)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[ignore = "needs the Kubernetes control plane built by scripts/setup-kube.sh; scripts/test.sh runs it"]
#[test]
fn closing_stdin_stops_everything_and_removes_the_directory() {
    let (mut child, info) = start();
    let pids = pids(&info);
    assert_eq!(pids.len(), 2, "etcd and kube-apiserver: {info}");
    assert!(pids.iter().all(|p| alive(*p)));
    drop(child.stdin.take());
    let status = child.wait().expect("exit");
    assert!(status.success(), "{status}");
    assert!(
        all_gone(&pids, Duration::from_secs(15)),
        "components left behind"
    );
    let dir = info["dir"].as_str().expect("dir");
    assert!(!std::path::Path::new(dir).exists(), "{dir} left behind");
}

#[ignore = "needs the Kubernetes control plane built by scripts/setup-kube.sh; scripts/test.sh runs it"]
#[test]
fn a_sigkilled_testenv_takes_its_components_with_it() {
    let (mut child, info) = start();
    let pids = pids(&info);
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    assert!(
        all_gone(&pids, Duration::from_secs(15)),
        "components outlived a SIGKILL"
    );
    let _ = std::fs::remove_dir_all(info["dir"].as_str().unwrap_or_default());
}
