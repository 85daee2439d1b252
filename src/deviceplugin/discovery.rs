//! One discovery pass for a device kind, and the log lines describing what it found.

use std::path::Path;

use super::args::DeviceKind;
use super::inventory::{Details, Discovery, Health, PhysicalDevice};
use super::{igpu, npu};

/// Scans `sysfs_root` for devices of `kind`, checking device nodes under `dev_root`. Reads
/// files only; the same trees give the same answer.
pub fn discover(kind: DeviceKind, sysfs_root: &Path, dev_root: &Path) -> Discovery {
    match kind {
        DeviceKind::Igpu | DeviceKind::IgpuMemory => igpu::discover(sysfs_root, dev_root),
        DeviceKind::Npu => npu::discover(sysfs_root, dev_root),
    }
}

/// A one-line description of a device for the log: identity, memory or generation, health.
pub fn describe(device: &PhysicalDevice) -> String {
    let what = match &device.details {
        Details::Igpu(d) => igpu::describe(device, d),
        Details::Npu(d) => npu::describe(device, d),
    };
    match &device.health {
        Health::Healthy => what,
        Health::Unhealthy(reason) => format!("{what}; UNHEALTHY: {reason}"),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::deviceplugin::inventory::{IgpuDetails, NpuDetails};

    fn fixture(name: &str) -> (PathBuf, PathBuf) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/sysfs")
            .join(name);
        (root.join("sys"), root.join("dev"))
    }

    fn scan(kind: DeviceKind, name: &str) -> Discovery {
        let (sys, dev) = fixture(name);
        discover(kind, &sys, &dev)
    }

    #[test]
    fn strix_halo_igpu_is_an_apu_with_gtt_memory_and_rocm() {
        let found = scan(DeviceKind::Igpu, "strix-halo");
        assert_eq!(found.warnings, Vec::<String>::new());
        assert_eq!(found.devices.len(), 1, "{found:?}");
        let gpu = &found.devices[0];
        assert_eq!(gpu.pci_address, "0000:c5:00.0");
        assert_eq!((gpu.pci_id.vendor, gpu.pci_id.device), (0x1002, 0x1586));
        assert_eq!(gpu.health, Health::Healthy);
        assert_eq!(
            gpu.nodes,
            [
                PathBuf::from("/dev/dri/renderD128"),
                PathBuf::from("/dev/kfd")
            ]
        );
        assert_eq!(
            gpu.details,
            Details::Igpu(IgpuDetails {
                apu: Some("Strix Halo"),
                vram_total: Some(512 << 20),
                gtt_total: Some(64 << 30),
                kfd: true,
            })
        );
        let line = describe(gpu);
        assert!(line.contains("Strix Halo APU"), "{line}");
        assert!(line.contains("GTT 64.0 GiB"), "{line}");
        assert!(line.contains("ROCm"), "{line}");
    }

    #[test]
    fn strix_halo_npu_is_an_xdna2_npu5() {
        let found = scan(DeviceKind::Npu, "strix-halo");
        assert_eq!(found.warnings, Vec::<String>::new());
        assert_eq!(found.devices.len(), 1, "{found:?}");
        let npu = &found.devices[0];
        assert_eq!(npu.pci_address, "0000:c6:00.1");
        assert_eq!(npu.health, Health::Healthy);
        assert_eq!(npu.nodes, [PathBuf::from("/dev/accel/accel0")]);
        assert_eq!(
            npu.details,
            Details::Npu(NpuDetails {
                generation: "NPU5 (XDNA2, Strix Halo)".into()
            })
        );
    }

    #[test]
    fn a_node_without_devices_finds_nothing_and_does_not_complain() {
        for kind in [DeviceKind::Igpu, DeviceKind::Npu] {
            let found = scan(kind, "no-devices");
            assert_eq!(found, Discovery::default(), "{kind:?}");
        }
    }

    #[test]
    fn a_broken_node_reports_unhealthy_devices_and_warnings() {
        let gpus = scan(DeviceKind::Igpu, "broken");
        let view: Vec<(&str, bool)> = gpus
            .devices
            .iter()
            .map(|d| (d.pci_address.as_str(), d.health.is_healthy()))
            .collect();
        assert_eq!(view, [("0000:c3:00.0", false), ("0000:c5:00.0", false)]);
        let reasons: Vec<String> = gpus.devices.iter().map(describe).collect();
        assert!(reasons[0].contains("no DRM render node"), "{reasons:?}");
        assert!(
            reasons[1].contains("/dev/dri/renderD128 is missing"),
            "{reasons:?}"
        );
        assert!(reasons[1].contains("Vulkan only"), "{reasons:?}");
        // No /dev/kfd on this node: Allocate must not hand out a node that does not exist.
        assert_eq!(
            gpus.devices[1].nodes,
            [PathBuf::from("/dev/dri/renderD128")]
        );
        assert_eq!(gpus.warnings.len(), 2, "{:?}", gpus.warnings);
        assert!(
            gpus.warnings
                .iter()
                .any(|w| w.contains("0000:c4:00.0") && w.contains("garbage"))
        );
        assert!(
            gpus.warnings
                .iter()
                .any(|w| w.contains("0000:c8:00.0") && w.contains("vfio-pci"))
        );

        let npus = scan(DeviceKind::Npu, "broken");
        assert_eq!(npus.devices.len(), 1, "{npus:?}");
        assert!(!npus.devices[0].health.is_healthy());
        assert!(describe(&npus.devices[0]).contains("/dev/accel/accel0 is missing"));
        assert_eq!(npus.warnings.len(), 1, "{:?}", npus.warnings);
        assert!(npus.warnings[0].contains("accel1"), "{:?}", npus.warnings);
    }
}
