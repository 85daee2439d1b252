//! The device plugins against a fake kubelet: registration, the device list for each fixture
//! node, allocation, unknown IDs, health, kubelet restarts and shutdown; and a gRPC C-core
//! client (grpcio) on the plugin's socket.

#[path = "deviceplugin_kubelet/fake_kubelet.rs"]
mod fake_kubelet;
#[path = "deviceplugin_kubelet/fixtures.rs"]
mod fixtures;
mod support;

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fake_kubelet::{FakeKubelet, WAIT};
use fixtures::fixture;
use hal0::deviceplugin::{DeviceKind, PluginConfig, api, run_plugin};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A plugin under test, its fake kubelet and their temp plugin directory.
struct Harness {
    kubelet: FakeKubelet,
    socket: PathBuf,
    stop: CancellationToken,
    plugin: JoinHandle<Result<(), hal0::deviceplugin::LifecycleError>>,
    /// Owns the plugin directory (and a copied fixture, when a test mutates one).
    _dirs: Vec<tempfile::TempDir>,
}

impl Harness {
    /// Starts a fake kubelet and a plugin for `kind` on the node tree at `node`.
    fn start(kind: DeviceKind, node: &Path, shared: u32) -> Harness {
        Harness::start_with(kind, node, shared, kind_resource(kind), Vec::new())
    }

    fn start_with(
        kind: DeviceKind,
        node: &Path,
        shared: u32,
        kubelet_resource: &str,
        mut dirs: Vec<tempfile::TempDir>,
    ) -> Harness {
        let plugin_dir = tempfile::tempdir().expect("plugin dir");
        let kubelet = FakeKubelet::start(plugin_dir.path(), kubelet_resource);
        let cfg = PluginConfig {
            kind,
            sysfs_root: node.join("sys"),
            dev_root: node.join("dev"),
            plugin_dir: plugin_dir.path().to_path_buf(),
            resource: kind_resource(kind).to_string(),
            shared: NonZeroU32::new(shared).expect("shared > 0"),
            socket_name: kind.socket_name().to_string(),
            // Short, so health changes and restarts show within the tests' bounded waits.
            rescan_interval: Duration::from_millis(50),
        };
        let socket = plugin_dir.path().join(kind.socket_name());
        let stop = CancellationToken::new();
        let plugin = tokio::spawn(run_plugin(cfg, stop.clone()));
        dirs.push(plugin_dir);
        Harness {
            kubelet,
            socket,
            stop,
            plugin,
            _dirs: dirs,
        }
    }

    /// Stops the plugin and checks it removed its socket.
    async fn stop(self) {
        self.stop.cancel();
        let result = tokio::time::timeout(WAIT, self.plugin)
            .await
            .expect("plugin stops in time")
            .expect("plugin task");
        assert!(result.is_ok(), "{result:?}");
        assert!(!self.socket.exists(), "socket left behind");
    }
}

fn kind_resource(kind: DeviceKind) -> &'static str {
    kind.default_resource()
}

fn view(devices: &[api::Device]) -> Vec<(&str, &str)> {
    devices
        .iter()
        .map(|d| (d.id.as_str(), d.health.as_str()))
        .collect()
}

fn ids(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn allocate_request(list: &[&str]) -> api::AllocateRequest {
    api::AllocateRequest {
        container_requests: vec![api::ContainerAllocateRequest {
            devices_ids: ids(list),
        }],
    }
}

#[tokio::test]
async fn the_plugin_registers_v1beta1_with_its_socket_resource_and_options() {
    let h = Harness::start(DeviceKind::Igpu, &fixture("strix-halo"), 8);
    let regs = h.kubelet.registrations(1).await;
    assert_eq!(regs.len(), 1);
    assert_eq!(regs[0].version, "v1beta1");
    assert_eq!(regs[0].endpoint, "hal0-igpu.sock");
    assert_eq!(regs[0].resource_name, "amd.com/gpu");
    let announced = regs[0].options.expect("options in the request");
    assert!(announced.get_preferred_allocation_available);
    assert!(!announced.pre_start_required);
    // The kubelet dialed back and read the same options from the plugin's socket.
    assert_eq!(h.kubelet.options().await, announced);
    h.stop().await;
}

#[tokio::test]
async fn a_refused_registration_is_retried_not_fatal() {
    let node = fixture("strix-halo");
    let h = Harness::start_with(DeviceKind::Npu, &node, 1, "example.com/other", Vec::new());
    let refusals = h.kubelet.refusals(2).await;
    assert!(
        refusals[0].contains("unexpected resource name \"amd.com/npu\""),
        "{refusals:?}"
    );
    assert!(!h.plugin.is_finished(), "the plugin gave up");
    h.stop().await;
}

#[tokio::test]
async fn strix_halo_igpu_advertises_shared_healthy_ids() {
    let h = Harness::start(DeviceKind::Igpu, &fixture("strix-halo"), 3);
    let devices = h.kubelet.devices().await;
    assert_eq!(
        view(&devices),
        [
            ("0000:c5:00.0-0", "Healthy"),
            ("0000:c5:00.0-1", "Healthy"),
            ("0000:c5:00.0-2", "Healthy"),
        ]
    );
    // numa_node is -1 on the APU: no topology hint.
    assert!(devices.iter().all(|d| d.topology.is_none()));
    h.stop().await;
}

#[tokio::test]
async fn strix_halo_npu_advertises_one_healthy_id() {
    let h = Harness::start(DeviceKind::Npu, &fixture("strix-halo"), 1);
    let devices = h.kubelet.devices().await;
    assert_eq!(view(&devices), [("0000:c6:00.1", "Healthy")]);
    h.stop().await;
}

#[tokio::test]
async fn a_node_without_devices_registers_and_advertises_nothing() {
    for kind in [DeviceKind::Igpu, DeviceKind::Npu] {
        let h = Harness::start(kind, &fixture("no-devices"), 1);
        assert_eq!(h.kubelet.registrations(1).await.len(), 1);
        assert_eq!(h.kubelet.devices().await, Vec::<api::Device>::new());
        h.stop().await;
    }
}

#[tokio::test]
async fn a_broken_node_advertises_its_devices_as_unhealthy() {
    let h = Harness::start(DeviceKind::Igpu, &fixture("broken"), 1);
    let devices = h.kubelet.devices().await;
    assert_eq!(
        view(&devices),
        [("0000:c3:00.0", "Unhealthy"), ("0000:c5:00.0", "Unhealthy")]
    );
    let mut plugin = h.kubelet.plugin().await;
    let err = plugin
        .allocate(allocate_request(&["0000:c5:00.0"]))
        .await
        .expect_err("unhealthy device");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(
        err.message().contains("/dev/dri/renderD128 is missing"),
        "{}",
        err.message()
    );
    h.stop().await;

    let h = Harness::start(DeviceKind::Npu, &fixture("broken"), 1);
    assert_eq!(
        view(&h.kubelet.devices().await),
        [("0000:c6:00.1", "Unhealthy")]
    );
    h.stop().await;
}

#[tokio::test]
async fn igpu_allocation_is_the_render_node_and_kfd_read_write() {
    let h = Harness::start(DeviceKind::Igpu, &fixture("strix-halo"), 8);
    let mut plugin = h.kubelet.plugin().await;
    let response = plugin
        .allocate(allocate_request(&["0000:c5:00.0-0", "0000:c5:00.0-5"]))
        .await
        .expect("allocate")
        .into_inner();
    assert_eq!(response.container_responses.len(), 1);
    let container = &response.container_responses[0];
    let specs: Vec<(&str, &str, &str)> = container
        .devices
        .iter()
        .map(|d| {
            (
                d.host_path.as_str(),
                d.container_path.as_str(),
                d.permissions.as_str(),
            )
        })
        .collect();
    assert_eq!(
        specs,
        [
            ("/dev/dri/renderD128", "/dev/dri/renderD128", "rw"),
            ("/dev/kfd", "/dev/kfd", "rw"),
        ]
    );
    assert!(
        container.mounts.is_empty(),
        "no mounts the pod does not need"
    );
    assert!(container.envs.is_empty() && container.annotations.is_empty());

    let preferred = plugin
        .get_preferred_allocation(api::PreferredAllocationRequest {
            container_requests: vec![api::ContainerPreferredAllocationRequest {
                available_device_ids: ids(&["0000:c5:00.0-1", "0000:c5:00.0-4"]),
                must_include_device_ids: Vec::new(),
                allocation_size: 2,
            }],
        })
        .await
        .expect("preferred")
        .into_inner();
    assert_eq!(
        preferred.container_responses[0].device_ids,
        ids(&["0000:c5:00.0-1", "0000:c5:00.0-4"])
    );
    let pre_start = plugin
        .pre_start_container(api::PreStartContainerRequest {
            devices_ids: ids(&["0000:c5:00.0-1"]),
        })
        .await;
    assert!(pre_start.is_ok());
    h.stop().await;
}

#[tokio::test]
async fn npu_allocation_is_the_accel_node_read_write() {
    let h = Harness::start(DeviceKind::Npu, &fixture("strix-halo"), 1);
    let mut plugin = h.kubelet.plugin().await;
    let response = plugin
        .allocate(allocate_request(&["0000:c6:00.1"]))
        .await
        .expect("allocate")
        .into_inner();
    let devices = &response.container_responses[0].devices;
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].host_path, "/dev/accel/accel0");
    assert_eq!(devices[0].container_path, "/dev/accel/accel0");
    assert_eq!(devices[0].permissions, "rw");
    h.stop().await;
}

#[tokio::test]
async fn unknown_ids_get_a_not_found_error_naming_the_advertised_ones() {
    let h = Harness::start(DeviceKind::Npu, &fixture("strix-halo"), 1);
    let mut plugin = h.kubelet.plugin().await;
    let err = plugin
        .allocate(allocate_request(&["0000:99:00.0"]))
        .await
        .expect_err("unknown id");
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert_eq!(
        err.message(),
        "unknown device ID \"0000:99:00.0\" for amd.com/npu; this node advertises: 0000:c6:00.1"
    );
    h.stop().await;
}

#[path = "deviceplugin_kubelet/lifecycle.rs"]
mod lifecycle;

#[path = "deviceplugin_kubelet/grpcio.rs"]
mod grpcio;

/// `--device igpu-memory`: the APU's GTT as `amd.com/gpu-memory`, one ID per GiB (the Strix
/// Halo fixture has 64 GiB of GTT), registered on its own socket; Allocate counts, it hands
/// out no device nodes (those come with `amd.com/gpu`).
#[tokio::test]
async fn igpu_memory_advertises_one_id_per_gib_of_gtt_and_allocates_no_nodes() {
    let h = Harness::start(DeviceKind::IgpuMemory, &fixture("strix-halo"), 1);
    let regs = h.kubelet.registrations(1).await;
    assert_eq!(regs[0].resource_name, "amd.com/gpu-memory");
    assert_eq!(regs[0].endpoint, "hal0-igpu-memory.sock");
    let devices = h.kubelet.devices_where(|d| !d.is_empty()).await;
    assert_eq!(devices.len(), 64, "{:?}", view(&devices));
    assert!(devices.iter().all(|d| d.health == "Healthy"));
    let mut ids: Vec<&str> = devices.iter().map(|d| d.id.as_str()).collect();
    ids.sort();
    assert!(
        ids.contains(&"0000:c5:00.0-gib-0") && ids.contains(&"0000:c5:00.0-gib-63"),
        "{ids:?}"
    );

    let mut plugin = h.kubelet.plugin().await;
    let resp = plugin
        .allocate(allocate_request(&[
            "0000:c5:00.0-gib-0",
            "0000:c5:00.0-gib-1",
            "0000:c5:00.0-gib-2",
        ]))
        .await
        .expect("allocate")
        .into_inner();
    assert_eq!(resp.container_responses.len(), 1);
    assert!(resp.container_responses[0].devices.is_empty());
    let unknown = plugin
        .allocate(allocate_request(&["0000:c5:00.0-gib-64"]))
        .await
        .expect_err("64 GiB are advertised, not 65");
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    h.stop().await;
}
