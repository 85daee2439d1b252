//! NPU discovery: `class/accel/accel*` devices whose PCI function is bound to `amdxdna`, with
//! their `/dev/accel/accelN` node.

use std::fs;
use std::path::{Path, PathBuf};

use super::inventory::{Details, Discovery, Health, NpuDetails, PhysicalDevice};
use super::sysfs;

/// Kernel driver of the AMD XDNA NPU.
pub const DRIVER: &str = "amdxdna";

/// NPU generation by (PCI device, revision), as the amdxdna driver tells them apart.
const GENERATIONS: &[(u16, u8, &str)] = &[
    (0x1502, 0x00, "NPU1 (XDNA, Phoenix / Hawk Point)"),
    (0x17f0, 0x00, "NPU2 (XDNA2, Strix engineering sample)"),
    (0x17f0, 0x10, "NPU4 (XDNA2, Strix Point)"),
    (0x17f0, 0x11, "NPU5 (XDNA2, Strix Halo)"),
    (0x17f0, 0x20, "NPU6 (XDNA2, Krackan Point)"),
];

/// The generation name for an AMD NPU; devices the table does not know are still served (the
/// driver bound them) and named by their IDs.
pub fn generation(device: u16, revision: u8) -> String {
    GENERATIONS
        .iter()
        .find(|(d, r, _)| *d == device && *r == revision)
        .map_or_else(
            || format!("unknown XDNA generation (device {device:04x}, revision {revision:02x})"),
            |(_, _, name)| (*name).to_string(),
        )
}

/// Every amdxdna-bound accel device under `sysfs_root`, with nodes checked under `dev_root`.
pub fn discover(sysfs_root: &Path, dev_root: &Path) -> Discovery {
    let mut out = Discovery::default();
    let entries = match sysfs::entries_with_prefix(&sysfs_root.join("class/accel"), "accel") {
        Ok(entries) => entries,
        Err(e) => {
            out.warnings.push(e.to_string());
            return out;
        }
    };
    for (name, entry) in entries {
        // `accelN/device` links to the PCI function; resolving it gives its address.
        let dev_dir = match fs::canonicalize(entry.join("device")) {
            Ok(dir) => dir,
            Err(e) => {
                out.warnings.push(format!(
                    "skipping {name}: its device link does not resolve: {e}"
                ));
                continue;
            }
        };
        if sysfs::driver(&dev_dir).as_deref() != Some(DRIVER) {
            continue;
        }
        let Some(address) = dev_dir.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        match probe(&name, address, &dev_dir, dev_root) {
            Ok(device) => out.devices.push(device),
            Err(e) => out
                .warnings
                .push(format!("skipping {name} ({address}): {e}")),
        }
    }
    out
}

fn probe(
    accel: &str,
    address: &str,
    dev_dir: &Path,
    dev_root: &Path,
) -> Result<PhysicalDevice, sysfs::SysfsError> {
    let pci_id = sysfs::pci_id(dev_dir)?;
    let health = if dev_root.join("accel").join(accel).exists() {
        Health::Healthy
    } else {
        Health::Unhealthy(format!(
            "/dev/accel/{accel} is missing (not created, or /dev not mounted into the plugin)"
        ))
    };
    Ok(PhysicalDevice {
        pci_address: address.to_string(),
        pci_id,
        nodes: vec![PathBuf::from("/dev/accel").join(accel)],
        numa_node: sysfs::numa_node(dev_dir),
        health,
        details: Details::Npu(NpuDetails {
            generation: generation(pci_id.device, pci_id.revision),
        }),
    })
}

/// One log line per device.
pub fn describe(device: &PhysicalDevice, details: &NpuDetails) -> String {
    let node = device
        .nodes
        .first()
        .map_or_else(String::new, |n| n.display().to_string());
    format!(
        "NPU {} ({}): {}, {node}",
        device.pci_address, device.pci_id, details.generation
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_are_named_from_device_and_revision() {
        assert_eq!(generation(0x17f0, 0x11), "NPU5 (XDNA2, Strix Halo)");
        assert_eq!(
            generation(0x1502, 0x00),
            "NPU1 (XDNA, Phoenix / Hawk Point)"
        );
        assert!(generation(0x17f0, 0x99).contains("unknown"));
    }
}
