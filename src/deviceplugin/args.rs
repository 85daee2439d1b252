//! `hal0 device-plugin` arguments and the resolved plugin configuration.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use crate::model::{Device, HumanDuration};

/// Which device family a plugin instance advertises. One process serves one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum DeviceKind {
    /// The AMD integrated GPU (amdgpu): `/dev/dri/renderD*` plus `/dev/kfd` for ROCm.
    Igpu,
    /// The AMD XDNA NPU (amdxdna): `/dev/accel/accel*`.
    Npu,
    /// The AMD iGPU's memory (GTT: the system RAM it can map) as a countable resource, one ID
    /// per GiB, so the scheduler never places models that cannot fit together on one APU.
    /// Allocate hands out no device nodes: a pod asks for `igpu` IDs for those.
    IgpuMemory,
}

impl DeviceKind {
    /// Extended resource name advertised when `--resource` is not given.
    pub fn default_resource(self) -> &'static str {
        match self {
            DeviceKind::Igpu => "amd.com/gpu",
            DeviceKind::Npu => "amd.com/npu",
            DeviceKind::IgpuMemory => "amd.com/gpu-memory",
        }
    }

    /// Schedulable IDs per physical device when `--shared` is not given. One iGPU serves many
    /// slots at once (llama.cpp, whisper and TTS servers share it fine, memory is the real
    /// limit and hal0 admits by memory); the NPU runs one model context per process well, so
    /// it is handed out whole.
    pub fn default_shared(self) -> u32 {
        match self {
            DeviceKind::Igpu => 8,
            // Unused: memory is counted per GiB, not shared.
            DeviceKind::Npu | DeviceKind::IgpuMemory => 1,
        }
    }

    /// File name of our socket in the plugin directory.
    pub fn socket_name(self) -> &'static str {
        match self {
            DeviceKind::Igpu => "hal0-igpu.sock",
            DeviceKind::Npu => "hal0-npu.sock",
            DeviceKind::IgpuMemory => "hal0-igpu-memory.sock",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::IgpuMemory => "igpu-memory",
            _ => Device::from(self).as_str(),
        }
    }

    /// Whether the IDs count GiB of device memory instead of sharing the device.
    pub fn counts_memory(self) -> bool {
        self == DeviceKind::IgpuMemory
    }
}

impl From<DeviceKind> for Device {
    fn from(kind: DeviceKind) -> Self {
        match kind {
            DeviceKind::Igpu | DeviceKind::IgpuMemory => Device::Igpu,
            DeviceKind::Npu => Device::Npu,
        }
    }
}

/// `hal0 device-plugin` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct DevicePluginArgs {
    /// Device family to advertise.
    #[arg(long, value_enum)]
    pub device: DeviceKind,
    /// Where sysfs is mounted (read to discover devices and their drivers).
    #[arg(long, default_value = "/sys")]
    pub sysfs_root: PathBuf,
    /// Where the device nodes are visible to this process (checked for presence). Allocate
    /// always answers with the host's `/dev/...` paths.
    #[arg(long, default_value = "/dev")]
    pub dev_root: PathBuf,
    /// The kubelet's device plugin directory (holds kubelet.sock and our socket).
    #[arg(long, default_value = "/var/lib/kubelet/device-plugins")]
    pub plugin_dir: PathBuf,
    /// Extended resource name (default: amd.com/gpu for igpu, amd.com/npu for npu).
    #[arg(long)]
    pub resource: Option<String>,
    /// Schedulable IDs advertised per physical device (default: 8 for igpu, 1 for npu).
    #[arg(long)]
    pub shared: Option<NonZeroU32>,
    /// How often sysfs is rescanned for health; the plugin directory is watched as well.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub rescan_interval: Duration,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    HumanDuration::parse(s)
        .map(|d| d.0)
        .map_err(|e| e.to_string())
}

#[derive(Debug, thiserror::Error)]
pub enum ArgsError {
    #[error(
        "--resource {0:?} is not an extended resource name; write it as <domain>/<name>, e.g. amd.com/gpu"
    )]
    InvalidResource(String),
    #[error("--rescan-interval must be above zero")]
    ZeroRescanInterval,
}

/// Everything a running plugin needs, resolved from the arguments.
#[derive(Debug, Clone)]
pub struct PluginConfig {
    /// Device family, selects discovery and allocation contents.
    pub kind: DeviceKind,
    /// Root of the sysfs tree that discovery reads (fixtures in tests).
    pub sysfs_root: PathBuf,
    /// Root where device nodes are checked for presence (fixtures in tests).
    pub dev_root: PathBuf,
    /// The kubelet's plugin directory: kubelet.sock lives here and so does our socket.
    pub plugin_dir: PathBuf,
    /// Extended resource name registered with the kubelet.
    pub resource: String,
    /// Schedulable IDs per physical device.
    pub shared: NonZeroU32,
    /// Our socket's file name inside `plugin_dir`.
    pub socket_name: String,
    /// Health rescan period; also the poll fallback for the plugin directory watch.
    pub rescan_interval: Duration,
}

impl PluginConfig {
    pub fn from_args(args: DevicePluginArgs) -> Result<Self, ArgsError> {
        let resource = args
            .resource
            .unwrap_or_else(|| args.device.default_resource().to_string());
        if !is_extended_resource_name(&resource) {
            return Err(ArgsError::InvalidResource(resource));
        }
        if args.rescan_interval.is_zero() {
            return Err(ArgsError::ZeroRescanInterval);
        }
        let default_shared =
            NonZeroU32::new(args.device.default_shared()).unwrap_or(NonZeroU32::MIN);
        Ok(PluginConfig {
            kind: args.device,
            sysfs_root: args.sysfs_root,
            dev_root: args.dev_root,
            plugin_dir: args.plugin_dir,
            resource,
            shared: args.shared.unwrap_or(default_shared),
            socket_name: args.device.socket_name().to_string(),
            rescan_interval: args.rescan_interval,
        })
    }
}

/// `<domain>/<name>` with a DNS-ish domain and a name of `[A-Za-z0-9._-]`, not under
/// `kubernetes.io` (the kubelet refuses those for device plugins).
pub fn is_extended_resource_name(s: &str) -> bool {
    let Some((domain, name)) = s.split_once('/') else {
        return false;
    };
    let domain_ok = !domain.is_empty()
        && domain.len() <= 253
        && domain.contains('.')
        && domain
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && !domain.ends_with("kubernetes.io");
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    domain_ok && name_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: DevicePluginArgs,
    }

    fn parse(argv: &[&str]) -> Result<PluginConfig, String> {
        let cli = Cli::try_parse_from(std::iter::once("hal0").chain(argv.iter().copied()))
            .map_err(|e| e.to_string())?;
        PluginConfig::from_args(cli.args).map_err(|e| e.to_string())
    }

    #[test]
    fn igpu_defaults_to_amd_gpu_shared_eight_times() {
        let cfg = parse(&["--device", "igpu"]).expect("valid args");
        assert_eq!(cfg.resource, "amd.com/gpu");
        assert_eq!(cfg.shared.get(), 8);
        assert_eq!(cfg.sysfs_root, PathBuf::from("/sys"));
        assert_eq!(cfg.dev_root, PathBuf::from("/dev"));
        assert_eq!(
            cfg.plugin_dir,
            PathBuf::from("/var/lib/kubelet/device-plugins")
        );
        assert_eq!(cfg.socket_name, "hal0-igpu.sock");
        assert_eq!(cfg.rescan_interval, Duration::from_secs(5));
    }

    #[test]
    fn npu_defaults_to_amd_npu_unshared() {
        let cfg = parse(&["--device", "npu"]).expect("valid args");
        assert_eq!(cfg.resource, "amd.com/npu");
        assert_eq!(cfg.shared.get(), 1);
        assert_eq!(cfg.socket_name, "hal0-npu.sock");
    }

    #[test]
    fn every_flag_is_taken() {
        let cfg = parse(&[
            "--device",
            "npu",
            "--sysfs-root",
            "/host/sys",
            "--dev-root",
            "/host/dev",
            "--plugin-dir",
            "/tmp/dp",
            "--resource",
            "example.com/xdna",
            "--shared",
            "3",
            "--rescan-interval",
            "250ms",
        ])
        .expect("valid args");
        assert_eq!(cfg.sysfs_root, PathBuf::from("/host/sys"));
        assert_eq!(cfg.dev_root, PathBuf::from("/host/dev"));
        assert_eq!(cfg.plugin_dir, PathBuf::from("/tmp/dp"));
        assert_eq!(cfg.resource, "example.com/xdna");
        assert_eq!(cfg.shared.get(), 3);
        assert_eq!(cfg.rescan_interval, Duration::from_millis(250));
    }

    #[test]
    fn bad_resource_names_and_zero_sharing_are_refused() {
        for bad in [
            "gpu",
            "amd.com/",
            "/gpu",
            "AMD.com/gpu",
            "kubernetes.io/gpu",
            "amd/gpu",
        ] {
            let err = parse(&["--device", "igpu", "--resource", bad]).expect_err(bad);
            assert!(err.contains("extended resource name"), "{bad}: {err}");
        }
        assert!(parse(&["--device", "igpu", "--shared", "0"]).is_err());
        assert!(parse(&["--device", "gpu"]).is_err());
    }
}
