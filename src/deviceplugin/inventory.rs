//! What the plugin knows about its devices: physical devices found by discovery, their health,
//! and the schedulable IDs (`--shared` per physical device) the kubelet sees.
//!
//! `merge` is the health rule, pure: a device seen before but missing from a rescan stays in
//! the list as `Unhealthy`, so the kubelet stops scheduling onto it instead of forgetting it.

use std::num::NonZeroU32;
use std::path::PathBuf;

use super::api;
use super::sysfs::PciId;

/// Whether a device can be handed to a container, and why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Healthy,
    /// Not usable; the reason is logged and returned by Allocate.
    Unhealthy(String),
}

impl Health {
    pub fn is_healthy(&self) -> bool {
        matches!(self, Health::Healthy)
    }

    fn as_api(&self) -> &'static str {
        match self {
            Health::Healthy => api::HEALTHY,
            Health::Unhealthy(_) => api::UNHEALTHY,
        }
    }
}

/// iGPU facts worth a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgpuDetails {
    /// APU family when the PCI ID is a known AMD APU (e.g. "Strix Halo"): there the GPU's
    /// working memory is GTT (system RAM), not the small VRAM carve-out.
    pub apu: Option<&'static str>,
    /// `mem_info_vram_total`: dedicated VRAM, or the BIOS carve-out on an APU.
    pub vram_total: Option<u64>,
    /// `mem_info_gtt_total`: system memory the GPU can map; what models live in on an APU.
    pub gtt_total: Option<u64>,
    /// `/dev/kfd` present: ROCm/HIP usable, not only Vulkan.
    pub kfd: bool,
}

/// NPU facts worth a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpuDetails {
    /// Generation named from PCI device and revision, e.g. "NPU5 (XDNA2, Strix Halo)".
    pub generation: String,
}

/// Facts that differ between device kinds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Details {
    Igpu(IgpuDetails),
    Npu(NpuDetails),
}

/// One physical device found in sysfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhysicalDevice {
    /// PCI address (`0000:c5:00.0`): stable across rescans and reboots, so it keys health
    /// tracking and prefixes the schedulable IDs.
    pub pci_address: String,
    /// Vendor, device and revision, for logs and generation naming.
    pub pci_id: PciId,
    /// Device nodes a container needs, as host paths (`/dev/dri/renderD128`). Allocate
    /// returns exactly these, read-write.
    pub nodes: Vec<PathBuf>,
    /// NUMA node for topology-aware admission; `None` on single-node machines.
    pub numa_node: Option<i64>,
    /// Whether Allocate may hand it out; ListAndWatch reports it.
    pub health: Health,
    /// Kind-specific facts for the discovery log line.
    pub details: Details,
}

/// What one discovery pass found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discovery {
    /// Devices bound to our driver, healthy or not, in sysfs order.
    pub devices: Vec<PhysicalDevice>,
    /// Entries that looked relevant but could not be read; logged, never fatal.
    pub warnings: Vec<String>,
}

/// One schedulable ID as the kubelet sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedulable<'a> {
    /// The ID the kubelet schedules and passes back to Allocate.
    pub id: String,
    /// The physical device whose nodes that ID grants.
    pub device: &'a PhysicalDevice,
}

/// The published state: every known physical device and how many IDs each one advertises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inventory {
    /// Every device ever found since start, including vanished ones (kept as Unhealthy).
    pub devices: Vec<PhysicalDevice>,
    /// Schedulable IDs per physical device (`--shared`).
    pub shared: NonZeroU32,
    /// Memory accounting (`igpu-memory`): one ID per whole GiB of the device's GTT instead of
    /// `shared` IDs, named `<pci address>-gib-<n>`.
    pub per_gib: bool,
}

/// Bytes per memory ID.
pub const GIB: u64 = 1 << 30;

/// Health reason for a device that a rescan no longer finds.
pub const GONE_REASON: &str = "no longer found in sysfs (removed, or its driver was unbound)";

impl Inventory {
    pub fn new(shared: NonZeroU32) -> Self {
        Inventory {
            devices: Vec::new(),
            shared,
            per_gib: false,
        }
    }

    /// One ID per GiB of each device's GTT (`igpu-memory`).
    pub fn per_gib() -> Self {
        Inventory {
            devices: Vec::new(),
            shared: NonZeroU32::MIN,
            per_gib: true,
        }
    }

    /// Schedulable IDs of one device: the PCI address itself when unshared, else
    /// `<pci address>-<n>` for n in 0..shared.
    pub fn ids_of(&self, device: &PhysicalDevice) -> Vec<String> {
        if self.per_gib {
            let gib = match &device.details {
                Details::Igpu(d) => d.gtt_total.unwrap_or(0) / GIB,
                Details::Npu(_) => 0,
            };
            return (0..gib)
                .map(|n| format!("{}-gib-{n}", device.pci_address))
                .collect();
        }
        if self.shared.get() == 1 {
            return vec![device.pci_address.clone()];
        }
        (0..self.shared.get())
            .map(|n| format!("{}-{n}", device.pci_address))
            .collect()
    }

    /// Every schedulable ID, grouped by physical device in discovery order.
    pub fn schedulable(&self) -> Vec<Schedulable<'_>> {
        self.devices
            .iter()
            .flat_map(|device| {
                self.ids_of(device)
                    .into_iter()
                    .map(move |id| Schedulable { id, device })
            })
            .collect()
    }

    /// The physical device behind a schedulable ID.
    pub fn lookup(&self, id: &str) -> Option<&PhysicalDevice> {
        self.devices
            .iter()
            .find(|d| self.ids_of(d).iter().any(|candidate| candidate == id))
    }

    /// The `ListAndWatch` message for this state.
    pub fn to_list_response(&self) -> api::ListAndWatchResponse {
        let devices = self
            .schedulable()
            .into_iter()
            .map(|s| api::Device {
                id: s.id,
                health: s.device.health.as_api().to_string(),
                topology: s.device.numa_node.map(|id| api::TopologyInfo {
                    nodes: vec![api::NumaNode { id }],
                }),
            })
            .collect();
        api::ListAndWatchResponse { devices }
    }
}

/// The next inventory after a rescan: every scanned device as found, plus every previously
/// known device the scan did not find, kept as `Unhealthy`. Order: previous order first, new
/// devices after, so IDs do not move around in the kubelet's view.
pub fn merge(previous: &Inventory, scan: Discovery) -> Inventory {
    let mut scanned = scan.devices;
    let mut devices = Vec::with_capacity(previous.devices.len() + scanned.len());
    for old in &previous.devices {
        match scanned
            .iter()
            .position(|d| d.pci_address == old.pci_address)
        {
            Some(i) => devices.push(scanned.remove(i)),
            None => {
                let mut gone = old.clone();
                gone.health = Health::Unhealthy(GONE_REASON.to_string());
                devices.push(gone);
            }
        }
    }
    devices.extend(scanned);
    Inventory {
        devices,
        shared: previous.shared,
        per_gib: previous.per_gib,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(addr: &str) -> PhysicalDevice {
        PhysicalDevice {
            pci_address: addr.to_string(),
            pci_id: PciId {
                vendor: 0x1002,
                device: 0x1586,
                revision: 0xc1,
            },
            nodes: vec![PathBuf::from("/dev/dri/renderD128")],
            numa_node: None,
            health: Health::Healthy,
            details: Details::Npu(NpuDetails {
                generation: "test".into(),
            }),
        }
    }

    fn shared(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
    }

    #[test]
    fn shared_devices_advertise_numbered_ids_and_unshared_the_address() {
        let mut inv = Inventory::new(shared(3));
        inv.devices.push(device("0000:c5:00.0"));
        let ids: Vec<String> = inv.schedulable().into_iter().map(|s| s.id).collect();
        assert_eq!(ids, ["0000:c5:00.0-0", "0000:c5:00.0-1", "0000:c5:00.0-2"]);
        assert_eq!(
            inv.lookup("0000:c5:00.0-2").map(|d| d.pci_address.as_str()),
            Some("0000:c5:00.0")
        );
        assert!(inv.lookup("0000:c5:00.0-3").is_none());
        assert!(inv.lookup("0000:c5:00.0").is_none());

        inv.shared = shared(1);
        let ids: Vec<String> = inv.schedulable().into_iter().map(|s| s.id).collect();
        assert_eq!(ids, ["0000:c5:00.0"]);
    }

    #[test]
    fn memory_inventories_advertise_one_id_per_whole_gib_of_gtt() {
        let mut inv = Inventory::per_gib();
        let mut gpu = device("0000:c5:00.0");
        gpu.details = Details::Igpu(IgpuDetails {
            apu: Some("Strix Halo"),
            vram_total: Some(512 << 20),
            gtt_total: Some(3 * GIB + GIB / 2),
            kfd: true,
        });
        inv.devices.push(gpu);
        let ids: Vec<String> = inv.schedulable().into_iter().map(|s| s.id).collect();
        assert_eq!(
            ids,
            [
                "0000:c5:00.0-gib-0",
                "0000:c5:00.0-gib-1",
                "0000:c5:00.0-gib-2"
            ]
        );
        assert!(inv.lookup("0000:c5:00.0-gib-2").is_some());
        let next = merge(&inv, Discovery::default());
        assert!(next.per_gib, "a rescan keeps the scheme");
    }

    #[test]
    fn a_device_missing_from_a_rescan_stays_listed_as_unhealthy() {
        let mut inv = Inventory::new(shared(1));
        inv.devices = vec![device("a"), device("b")];
        let next = merge(
            &inv,
            Discovery {
                devices: vec![device("b"), device("c")],
                warnings: vec![],
            },
        );
        let view: Vec<(&str, bool)> = next
            .devices
            .iter()
            .map(|d| (d.pci_address.as_str(), d.health.is_healthy()))
            .collect();
        assert_eq!(view, [("a", false), ("b", true), ("c", true)]);
        let list = next.to_list_response();
        assert_eq!(list.devices[0].health, "Unhealthy");
        assert_eq!(list.devices[1].health, "Healthy");
    }

    #[test]
    fn a_device_that_comes_back_is_healthy_again() {
        let mut inv = Inventory::new(shared(1));
        let mut gone = device("a");
        gone.health = Health::Unhealthy(GONE_REASON.into());
        inv.devices = vec![gone];
        let next = merge(
            &inv,
            Discovery {
                devices: vec![device("a")],
                warnings: vec![],
            },
        );
        assert!(next.devices[0].health.is_healthy());
    }

    #[test]
    fn numa_nodes_become_topology_hints() {
        let mut inv = Inventory::new(shared(1));
        let mut d = device("a");
        d.numa_node = Some(1);
        inv.devices = vec![d, device("b")];
        let list = inv.to_list_response();
        assert_eq!(
            list.devices[0].topology,
            Some(api::TopologyInfo {
                nodes: vec![api::NumaNode { id: 1 }]
            })
        );
        assert_eq!(list.devices[1].topology, None);
    }
}
