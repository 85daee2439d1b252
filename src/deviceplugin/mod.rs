//! Kubelet device plugins for the AMD iGPU and the XDNA NPU (issue 4). Placeholder entry point.

/// `hal0 device-plugin` arguments.
#[derive(Debug, clap::Args)]
pub struct DevicePluginArgs {}

pub async fn run(_args: DevicePluginArgs) -> anyhow::Result<()> {
    anyhow::bail!("device plugin not built yet")
}
