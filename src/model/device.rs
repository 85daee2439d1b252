//! Which compute device a slot runs on.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The device a slot's provider uses. On Kubernetes it selects the device-plugin resource
/// (`amd.com/gpu` for `igpu`, `amd.com/npu` for `npu`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    /// Plain CPU; no device requested.
    #[default]
    Cpu,
    /// The integrated GPU (Vulkan or ROCm).
    Igpu,
    /// The AMD XDNA NPU.
    Npu,
}

impl Device {
    pub const ALL: [Device; 3] = [Device::Cpu, Device::Igpu, Device::Npu];

    pub fn as_str(self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Igpu => "igpu",
            Device::Npu => "npu",
        }
    }
}
