//! iGPU discovery: PCI functions bound to `amdgpu`, their DRM render node, and `/dev/kfd`.
//!
//! A container needs the render node (Vulkan, and ROCm's buffer sharing) and `/dev/kfd` (ROCm
//! compute queues); the primary `card*` node is for display and is never handed out.

use std::path::{Path, PathBuf};

use super::inventory::{Details, Discovery, Health, IgpuDetails, PhysicalDevice};
use super::sysfs;

/// Kernel driver of AMD GPUs.
pub const DRIVER: &str = "amdgpu";

/// PCI vendor ID of AMD/ATI graphics.
pub const VENDOR_AMD_GPU: u16 = 0x1002;

/// AMD APUs recognised by PCI device ID. On these the GPU shares system memory: VRAM is a
/// small BIOS carve-out and models live in GTT.
const APUS: &[(u16, &str)] = &[
    (0x1586, "Strix Halo"),
    (0x150e, "Strix Point"),
    (0x15bf, "Phoenix"),
    (0x15c8, "Phoenix"),
];

/// The APU family of an AMD GPU device ID, if it is a known APU.
pub fn apu_family(device_id: u16) -> Option<&'static str> {
    APUS.iter()
        .find(|(id, _)| *id == device_id)
        .map(|(_, name)| *name)
}

/// Every amdgpu-bound PCI function under `sysfs_root`, with device nodes checked under
/// `dev_root`. Nodes in the result are host paths (`/dev/...`), whatever `dev_root` is.
pub fn discover(sysfs_root: &Path, dev_root: &Path) -> Discovery {
    let mut out = Discovery::default();
    let pci_devices = sysfs_root.join("bus/pci/devices");
    let entries = match sysfs::entries_with_prefix(&pci_devices, "") {
        Ok(entries) => entries,
        Err(e) => {
            out.warnings.push(e.to_string());
            return out;
        }
    };
    let kfd = dev_root.join("kfd").exists();
    for (address, dev_dir) in entries {
        let driver = sysfs::driver(&dev_dir);
        if driver.as_deref() != Some(DRIVER) {
            if let Some(warning) = unbound_amd_display(&address, &dev_dir, driver.as_deref()) {
                out.warnings.push(warning);
            }
            continue;
        }
        match probe(&address, &dev_dir, dev_root, kfd) {
            Ok(device) => out.devices.push(device),
            Err(e) => out
                .warnings
                .push(format!("skipping amdgpu device {address}: {e}")),
        }
    }
    out
}

fn probe(
    address: &str,
    dev_dir: &Path,
    dev_root: &Path,
    kfd: bool,
) -> Result<PhysicalDevice, sysfs::SysfsError> {
    let pci_id = sysfs::pci_id(dev_dir)?;
    let render = sysfs::entries_with_prefix(&dev_dir.join("drm"), "renderD")?
        .into_iter()
        .next()
        .map(|(name, _)| name);
    let health = match &render {
        None => Health::Unhealthy(format!(
            "{address} is bound to amdgpu but has no DRM render node (driver initialisation failed?)"
        )),
        Some(name) if !dev_root.join("dri").join(name).exists() => Health::Unhealthy(format!(
            "/dev/dri/{name} is missing (not created, or /dev not mounted into the plugin)"
        )),
        Some(_) => Health::Healthy,
    };
    let mut nodes: Vec<PathBuf> = Vec::new();
    if let Some(name) = &render {
        nodes.push(PathBuf::from("/dev/dri").join(name));
    }
    if kfd {
        nodes.push(PathBuf::from("/dev/kfd"));
    }
    let apu = if pci_id.vendor == VENDOR_AMD_GPU {
        apu_family(pci_id.device)
    } else {
        None
    };
    Ok(PhysicalDevice {
        pci_address: address.to_string(),
        pci_id,
        nodes,
        numa_node: sysfs::numa_node(dev_dir),
        health,
        details: Details::Igpu(IgpuDetails {
            apu,
            vram_total: sysfs::read_bytes(&dev_dir.join("mem_info_vram_total"))?,
            gtt_total: sysfs::read_bytes(&dev_dir.join("mem_info_gtt_total"))?,
            kfd,
        }),
    })
}

/// A warning for an AMD display-class function that amdgpu does not drive (blacklisted,
/// passed to a VM through vfio-pci, or failed to probe): the likely cause of "no devices".
fn unbound_amd_display(address: &str, dev_dir: &Path, driver: Option<&str>) -> Option<String> {
    let pci_id = sysfs::pci_id(dev_dir).ok()?;
    let class = sysfs::pci_class(dev_dir).ok()?;
    let is_display = class >> 16 == 0x03;
    (pci_id.vendor == VENDOR_AMD_GPU && is_display).then(|| {
        format!(
            "AMD display device {address} ({pci_id}) is bound to {}, not amdgpu: not advertised",
            driver.unwrap_or("no driver")
        )
    })
}

/// One log line per device: what it is and the memory that matters.
pub fn describe(device: &PhysicalDevice, details: &IgpuDetails) -> String {
    let gb = |n: Option<u64>| n.map_or_else(|| "unknown".to_string(), sysfs::human_bytes);
    let memory = match details.apu {
        Some(family) => format!(
            "{family} APU: GPU memory is GTT {} (system RAM), VRAM carve-out {}",
            gb(details.gtt_total),
            gb(details.vram_total)
        ),
        None => format!(
            "VRAM {}, GTT {}",
            gb(details.vram_total),
            gb(details.gtt_total)
        ),
    };
    let compute = if details.kfd {
        "ROCm + Vulkan"
    } else {
        "Vulkan only (/dev/kfd absent)"
    };
    format!(
        "iGPU {} ({}): {memory}; {compute}",
        device.pci_address, device.pci_id
    )
}
