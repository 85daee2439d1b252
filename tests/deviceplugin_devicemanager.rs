//! `hal0 device-plugin` against the kubelet's own device manager
//! (`k8s.io/kubernetes/pkg/kubelet/cm/devicemanager`, Kubernetes v1.36.3), run by the Go
//! harness `hal0-devicemanager` (tests/deviceplugin_kubelet/devicemanager, built by
//! scripts/setup-kube.sh) on a temp plugin directory: registration on kubelet.sock, the
//! device list through ListAndWatch (capacity and allocatable as the node reports them),
//! pod admission and Allocate through the topology manager, what the container runtime is
//! handed, device health reaching allocated pods, and kubelet restarts.
//!
//! Needs HAL0_KUBE_BIN_DIR (scripts/test.sh sets it from scripts/setup-kube.sh); without it
//! every test here fails and says so.

#[path = "deviceplugin_kubelet/fixtures.rs"]
mod fixtures;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use fixtures::{fixture, mutable_fixture};
use serde_json::{Value, json};

/// Bound on every condition the harness waits for (generous for a loaded CI machine).
const WAIT_MS: u64 = 20_000;
/// Bound on the harness answering a request, beyond the request's own wait.
const ANSWER: Duration = Duration::from_secs(30);

const GPU: &str = "amd.com/gpu";
const NPU: &str = "amd.com/npu";

fn harness_binary() -> PathBuf {
    let Some(dir) = std::env::var_os("HAL0_KUBE_BIN_DIR") else {
        panic!(
            "HAL0_KUBE_BIN_DIR is not set: these tests run the kubelet's device manager built by \
             scripts/setup-kube.sh. Run scripts/test.sh, or: eval \"$(scripts/setup-kube.sh)\" && \
             HAL0_KUBE_BIN_DIR=$KUBE_BIN_DIR cargo test --test deviceplugin_devicemanager"
        );
    };
    let bin = PathBuf::from(dir).join("hal0-devicemanager");
    assert!(
        bin.is_file(),
        "{} is missing: run scripts/setup-kube.sh (it builds hal0-devicemanager)",
        bin.display()
    );
    bin
}

/// A running `hal0-devicemanager` (the kubelet's device manager) and its plugin directory.
struct DeviceManager {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    log: PathBuf,
    plugin_dir: PathBuf,
    /// Plugins started on this node, stopped before the manager.
    plugins: Vec<Plugin>,
    _dir: tempfile::TempDir,
}

impl DeviceManager {
    fn start() -> DeviceManager {
        let dir = tempfile::tempdir().expect("tempdir");
        let plugin_dir = dir.path().join("device-plugins");
        let log = dir.path().join("devicemanager.log");
        let mut child = Command::new(harness_binary())
            .arg("--plugin-dir")
            .arg(&plugin_dir)
            .arg("-v=4")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn hal0-devicemanager");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let stdin = child.stdin.take();
        let mut dm = DeviceManager {
            child,
            stdin,
            lines,
            log,
            plugin_dir,
            plugins: Vec::new(),
            _dir: dir,
        };
        let ready = dm.next_line();
        assert_eq!(ready["event"], "ready", "{ready}");
        assert_eq!(
            ready["socket"],
            dm.plugin_dir.join("kubelet.sock").display().to_string()
        );
        dm
    }

    fn logs(&self) -> String {
        let mut s = format!(
            "--- device manager log:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
        for p in &self.plugins {
            s.push_str(&format!(
                "\n--- {} plugin log:\n{}",
                p.kind,
                std::fs::read_to_string(&p.log).unwrap_or_default()
            ));
        }
        s
    }

    fn next_line(&mut self) -> Value {
        match self
            .lines
            .recv_timeout(ANSWER + Duration::from_millis(WAIT_MS))
        {
            Ok(line) => serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("harness printed {line:?}: {e}\n{}", self.logs())),
            Err(e) => panic!("no answer from the device manager ({e})\n{}", self.logs()),
        }
    }

    /// Sends one request; returns the answer.
    fn call(&mut self, request: Value) -> Value {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{request}").expect("write request");
        stdin.flush().expect("flush request");
        self.next_line()
    }

    /// Waits until `resource` has this capacity and allocatable; returns the node's state.
    fn wait(&mut self, resource: &str, capacity: u64, allocatable: u64) -> Value {
        let got = self.call(json!({
            "op": "wait", "resource": resource, "capacity": capacity,
            "allocatable": allocatable, "timeout_ms": WAIT_MS,
        }));
        assert_eq!(got["ok"], true, "{got}\n{}", self.logs());
        got
    }

    /// Admits a pod with one container asking for `count` of `resource`.
    fn admit(&mut self, pod: &str, resource: &str, count: u64) -> Value {
        let got = self.call(json!({
            "op": "admit", "pod": pod,
            "containers": [{"name": "server", "limits": {resource: count}}],
        }));
        assert_eq!(got["ok"], true, "{got}\n{}", self.logs());
        got
    }

    /// The health the kubelet reports for each device allocated to `pod`'s container.
    fn health(&mut self, pod: &str, resource: &str) -> Value {
        let got = self.call(json!({"op": "status", "pod": pod}));
        assert_eq!(got["ok"], true, "{got}\n{}", self.logs());
        let resources = &got["containers"][0]["resources"];
        resources
            .as_array()
            .and_then(|list| list.iter().find(|r| r["name"] == resource))
            .map(|r| r["health"].clone())
            .unwrap_or_else(|| panic!("no {resource} in {got}"))
    }

    fn expect_ok(&mut self, request: Value) {
        let got = self.call(request.clone());
        assert_eq!(got["ok"], true, "{request} -> {got}\n{}", self.logs());
    }

    /// Starts `hal0 device-plugin --device <kind>` on `node`, in this manager's directory.
    fn plugin(&mut self, kind: &str, node: &Path) {
        let plugin = Plugin::start(kind, node, &self.plugin_dir, self._dir.path());
        self.plugins.push(plugin);
    }
}

impl Drop for DeviceManager {
    fn drop(&mut self) {
        self.plugins.clear();
        // EOF on stdin stops the harness like a kubelet shutting down.
        drop(self.stdin.take());
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `hal0 device-plugin`.
struct Plugin {
    kind: String,
    child: Child,
    log: PathBuf,
}

impl Plugin {
    fn start(kind: &str, node: &Path, plugin_dir: &Path, log_dir: &Path) -> Plugin {
        let log = log_dir.join(format!("plugin-{kind}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_hal0"))
            .arg("device-plugin")
            .args(["--device", kind])
            .arg("--sysfs-root")
            .arg(node.join("sys"))
            .arg("--dev-root")
            .arg(node.join("dev"))
            .arg("--plugin-dir")
            .arg(plugin_dir)
            .args(["--rescan-interval", "100ms"])
            .env("HAL0_LOG", "debug")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("plugin log"))
            .spawn()
            .expect("spawn hal0 device-plugin");
        Plugin {
            kind: kind.to_string(),
            child,
            log,
        }
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        for _ in 0..200 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| s.as_str().expect("string").to_string())
        .collect()
}

fn gpu_ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("0000:c5:00.0-{i}")).collect()
}

/// The device specs a container got, as (host, container, permissions), sorted.
fn device_specs(container: &Value) -> Vec<(String, String, String)> {
    let mut specs: Vec<_> = container["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .map(|d| {
            (
                d["host_path"].as_str().expect("host").to_string(),
                d["container_path"].as_str().expect("container").to_string(),
                d["permissions"].as_str().expect("permissions").to_string(),
            )
        })
        .collect();
    specs.sort();
    specs
}

fn spec(path: &str) -> (String, String, String) {
    (path.to_string(), path.to_string(), "rw".to_string())
}

fn assert_no_extras(container: &Value) {
    for field in ["envs", "mounts", "annotations", "cdi_devices"] {
        assert_eq!(container[field], json!([]), "{field} in {container}");
    }
}

#[ignore = "needs the Kubernetes control plane built by scripts/setup-kube.sh; scripts/test.sh runs it"]
#[test]
fn the_kubelet_registers_the_igpu_and_gives_a_pod_its_render_node_and_kfd() {
    let mut dm = DeviceManager::start();
    dm.plugin("igpu", &fixture("strix-halo"));
    let node = dm.wait(GPU, 8, 8);
    assert_eq!(strings(&node["healthy_ids"][GPU]), gpu_ids(8));

    let got = dm.admit("chat", GPU, 2);
    assert_eq!(got["admitted"], true, "{got}\n{}", dm.logs());
    let container = &got["containers"][0];
    let ids = strings(&container["device_ids"][GPU]);
    assert_eq!(ids.len(), 2, "{got}");
    assert!(ids.iter().all(|id| gpu_ids(8).contains(id)), "{ids:?}");
    assert_eq!(
        device_specs(container),
        [spec("/dev/dri/renderD128"), spec("/dev/kfd")]
    );
    assert_no_extras(container);
    let health = dm.health("chat", GPU);
    for id in &ids {
        assert_eq!(health[id], "Healthy", "{health}");
    }

    // Six IDs are left: a pod asking for seven is refused at admission, by the kubelet.
    let refused = dm.admit("big", GPU, 7);
    assert_eq!(refused["admitted"], false, "{refused}");
    assert_eq!(refused["reason"], "UnexpectedAdmissionError");
    let message = refused["message"].as_str().expect("message");
    assert!(
        message.contains(
            "requested number of devices unavailable for amd.com/gpu. Requested: 7, Available: 6"
        ),
        "{message}"
    );

    // Once the first pod is gone its IDs are free again.
    dm.expect_ok(json!({"op": "delete", "pod": "chat"}));
    let got = dm.admit("big", GPU, 7);
    assert_eq!(got["admitted"], true, "{got}");
    assert_eq!(strings(&got["containers"][0]["device_ids"][GPU]).len(), 7);
}

#[ignore = "needs the Kubernetes control plane built by scripts/setup-kube.sh; scripts/test.sh runs it"]
#[test]
fn the_kubelet_registers_the_npu_and_hands_it_out_whole() {
    let mut dm = DeviceManager::start();
    dm.plugin("npu", &fixture("strix-halo"));
    let node = dm.wait(NPU, 1, 1);
    assert_eq!(strings(&node["healthy_ids"][NPU]), ["0000:c6:00.1"]);

    let got = dm.admit("flm", NPU, 1);
    assert_eq!(got["admitted"], true, "{got}\n{}", dm.logs());
    let container = &got["containers"][0];
    assert_eq!(strings(&container["device_ids"][NPU]), ["0000:c6:00.1"]);
    assert_eq!(device_specs(container), [spec("/dev/accel/accel0")]);
    assert_no_extras(container);

    let refused = dm.admit("second", NPU, 1);
    assert_eq!(refused["admitted"], false, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|m| m.contains("Requested: 1, Available: 0")),
        "{refused}"
    );
}

#[ignore = "needs the Kubernetes control plane built by scripts/setup-kube.sh; scripts/test.sh runs it"]
#[test]
fn a_vanished_render_node_reaches_the_node_and_the_pod_through_list_and_watch() {
    let (_copy, node) = mutable_fixture("strix-halo");
    let mut dm = DeviceManager::start();
    dm.plugin("igpu", &node);
    dm.wait(GPU, 8, 8);
    let got = dm.admit("chat", GPU, 1);
    assert_eq!(got["admitted"], true, "{got}");
    let id = strings(&got["containers"][0]["device_ids"][GPU]).remove(0);

    let render = node.join("dev/dri/renderD128");
    std::fs::remove_file(&render).expect("remove the render node");
    // Still 8 devices, none allocatable; the kubelet announces the change for the pod.
    dm.wait(GPU, 8, 0);
    dm.expect_ok(json!({"op": "wait_update", "pod": "chat", "timeout_ms": WAIT_MS}));
    assert_eq!(dm.health("chat", GPU)[&id], "Unhealthy");
    let refused = dm.admit("next", GPU, 1);
    assert_eq!(refused["admitted"], false, "{refused}");
    assert!(
        refused["message"].as_str().is_some_and(|m| m
            .contains("no healthy devices present; cannot allocate unhealthy devices amd.com/gpu")),
        "{refused}"
    );

    std::fs::write(&render, b"").expect("recreate the render node");
    dm.wait(GPU, 8, 8);
    dm.expect_ok(json!({"op": "wait_update", "pod": "chat", "timeout_ms": WAIT_MS}));
    assert_eq!(dm.health("chat", GPU)[&id], "Healthy");
    let got = dm.admit("next", GPU, 1);
    assert_eq!(got["admitted"], true, "{got}");
}

#[ignore = "needs the Kubernetes control plane built by scripts/setup-kube.sh; scripts/test.sh runs it"]
#[test]
fn an_npu_whose_driver_unbinds_is_no_longer_allocatable() {
    let (_copy, node) = mutable_fixture("strix-halo");
    let mut dm = DeviceManager::start();
    dm.plugin("npu", &node);
    dm.wait(NPU, 1, 1);
    let driver = node.join("sys/devices/pci0000:00/0000:00:08.2/0000:c6:00.1/driver");
    std::fs::remove_file(driver).expect("unbind: remove the driver link");
    dm.wait(NPU, 1, 0);
    let refused = dm.admit("flm", NPU, 1);
    assert_eq!(refused["admitted"], false, "{refused}");
}

#[ignore = "needs the Kubernetes control plane built by scripts/setup-kube.sh; scripts/test.sh runs it"]
#[test]
fn both_plugins_register_again_after_kubelet_restarts_and_allocations_survive() {
    let mut dm = DeviceManager::start();
    dm.plugin("igpu", &fixture("strix-halo"));
    dm.plugin("npu", &fixture("strix-halo"));
    dm.wait(GPU, 8, 8);
    dm.wait(NPU, 1, 1);
    let got = dm.admit("chat", GPU, 2);
    assert_eq!(got["admitted"], true, "{got}");
    let ids = strings(&got["containers"][0]["device_ids"][GPU]);

    for _ in 0..2 {
        // The new kubelet removes every socket in the directory, plugins' included, and
        // knows the resources only from its checkpoint until the plugins register again.
        dm.expect_ok(json!({"op": "restart"}));
        dm.wait(GPU, 8, 8);
        dm.wait(NPU, 1, 1);
        let health = dm.health("chat", GPU);
        for id in &ids {
            assert_eq!(health[id], "Healthy", "{health}");
        }
        // The pod's two IDs are still taken after the restart.
        let refused = dm.admit("big", GPU, 7);
        assert_eq!(refused["admitted"], false, "{refused}");
    }
    let got = dm.admit("flm", NPU, 1);
    assert_eq!(got["admitted"], true, "{got}");
    assert_eq!(
        device_specs(&got["containers"][0]),
        [spec("/dev/accel/accel0")]
    );
}
