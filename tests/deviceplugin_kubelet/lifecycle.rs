//! Health changes, kubelet restarts and shutdown: the plugin's life over time.

use std::process::Stdio;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::fake_kubelet::{FakeKubelet, WAIT};
use super::fixtures::mutable_fixture;
use super::*;

fn all_have(devices: &[api::Device], health: &str) -> bool {
    !devices.is_empty() && devices.iter().all(|d| d.health == health)
}

#[tokio::test]
async fn a_vanished_render_node_turns_the_igpu_unhealthy_and_back() {
    let (dir, node) = mutable_fixture("strix-halo");
    let h = Harness::start_with(DeviceKind::Igpu, &node, 2, "amd.com/gpu", vec![dir]);
    h.kubelet.devices_where(|d| all_have(d, "Healthy")).await;

    let render = node.join("dev/dri/renderD128");
    std::fs::remove_file(&render).expect("remove render node");
    let devices = h.kubelet.devices_where(|d| all_have(d, "Unhealthy")).await;
    assert_eq!(
        view(&devices),
        [
            ("0000:c5:00.0-0", "Unhealthy"),
            ("0000:c5:00.0-1", "Unhealthy")
        ]
    );

    std::fs::write(&render, b"").expect("recreate render node");
    h.kubelet.devices_where(|d| all_have(d, "Healthy")).await;
    h.stop().await;
}

#[tokio::test]
async fn an_npu_whose_driver_unbinds_stays_listed_as_unhealthy() {
    let (dir, node) = mutable_fixture("strix-halo");
    let h = Harness::start_with(DeviceKind::Npu, &node, 1, "amd.com/npu", vec![dir]);
    h.kubelet.devices_where(|d| all_have(d, "Healthy")).await;

    let driver = node.join("sys/devices/pci0000:00/0000:00:08.2/0000:c6:00.1/driver");
    std::fs::remove_file(driver).expect("unbind: remove the driver link");
    let devices = h.kubelet.devices_where(|d| all_have(d, "Unhealthy")).await;
    assert_eq!(view(&devices), [("0000:c6:00.1", "Unhealthy")]);

    let mut plugin = h.kubelet.plugin().await;
    let err = plugin
        .allocate(allocate_request(&["0000:c6:00.1"]))
        .await
        .expect_err("unbound device");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(
        err.message().contains("driver was unbound"),
        "{}",
        err.message()
    );
    h.stop().await;
}

#[tokio::test]
async fn a_kubelet_restart_is_followed_by_serving_and_registering_again() {
    let mut h = Harness::start(DeviceKind::Npu, &fixture("strix-halo"), 1);
    assert_eq!(h.kubelet.registrations(1).await.len(), 1);
    h.kubelet.devices().await;

    h.kubelet.restart().await;
    let regs = h.kubelet.registrations(2).await;
    assert_eq!(regs[1].resource_name, "amd.com/npu");
    assert_eq!(regs[1].endpoint, "hal0-npu.sock");
    // The new kubelet reaches the plugin on its new socket and gets the full list.
    assert_eq!(
        view(&h.kubelet.devices().await),
        [("0000:c6:00.1", "Healthy")]
    );
    let mut plugin = h.kubelet.plugin().await;
    assert!(
        plugin
            .allocate(allocate_request(&["0000:c6:00.1"]))
            .await
            .is_ok()
    );
    assert!(!h.plugin.is_finished());

    // And again: a restart is not a one-off path.
    h.kubelet.restart().await;
    assert_eq!(h.kubelet.registrations(3).await.len(), 3);
    h.stop().await;
}

#[tokio::test]
async fn our_socket_deleted_alone_also_means_register_again() {
    let h = Harness::start(DeviceKind::Igpu, &fixture("strix-halo"), 1);
    h.kubelet.registrations(1).await;
    std::fs::remove_file(&h.socket).expect("remove our socket");
    assert_eq!(h.kubelet.registrations(2).await.len(), 2);
    assert!(h.socket.exists(), "the plugin serves on a fresh socket");
    h.stop().await;
}

#[tokio::test]
async fn a_plugin_started_before_the_kubelet_registers_once_it_appears() {
    let plugin_dir = tempfile::tempdir().expect("plugin dir");
    let cfg = PluginConfig {
        kind: DeviceKind::Npu,
        sysfs_root: fixture("strix-halo").join("sys"),
        dev_root: fixture("strix-halo").join("dev"),
        plugin_dir: plugin_dir.path().to_path_buf(),
        resource: "amd.com/npu".to_string(),
        shared: NonZeroU32::MIN,
        socket_name: "hal0-npu.sock".to_string(),
        rescan_interval: Duration::from_millis(50),
    };
    let stop = CancellationToken::new();
    let plugin = tokio::spawn(run_plugin(cfg, stop.clone()));
    // No kubelet yet: the plugin waits for kubelet.sock rather than failing.
    tokio::task::yield_now().await;
    assert!(!plugin.is_finished());

    let kubelet = FakeKubelet::start(plugin_dir.path(), "amd.com/npu");
    assert_eq!(kubelet.registrations(1).await.len(), 1);
    assert_eq!(
        view(&kubelet.devices().await),
        [("0000:c6:00.1", "Healthy")]
    );
    stop.cancel();
    let result = tokio::time::timeout(WAIT, plugin)
        .await
        .expect("stops")
        .expect("task");
    assert!(result.is_ok(), "{result:?}");
    assert!(!plugin_dir.path().join("hal0-npu.sock").exists());
}

#[tokio::test]
async fn sigterm_makes_the_binary_remove_its_socket_and_exit_cleanly() {
    let plugin_dir = tempfile::tempdir().expect("plugin dir");
    let kubelet = FakeKubelet::start(plugin_dir.path(), "amd.com/npu");
    let node = fixture("strix-halo");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_hal0"))
        .arg("device-plugin")
        .args(["--device", "npu"])
        .arg("--sysfs-root")
        .arg(node.join("sys"))
        .arg("--dev-root")
        .arg(node.join("dev"))
        .arg("--plugin-dir")
        .arg(plugin_dir.path())
        .args(["--rescan-interval", "100ms"])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn hal0");
    kubelet.registrations(1).await;
    let socket = plugin_dir.path().join("hal0-npu.sock");
    assert!(socket.exists());

    let pid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .expect("pid");
    kill(Pid::from_raw(pid), Signal::SIGTERM).expect("send SIGTERM");
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("exits in time")
        .expect("wait");
    assert!(status.success(), "{status:?}");
    assert!(!socket.exists(), "socket left behind after SIGTERM");
    assert!(
        plugin_dir.path().join("kubelet.sock").exists(),
        "the kubelet's socket is not ours to remove"
    );
}
