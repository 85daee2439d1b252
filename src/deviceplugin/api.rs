//! The kubelet device plugin API `v1beta1`, generated at build time from
//! `proto/v1beta1/deviceplugin.proto`, plus the protocol constants both sides agree on.

#[allow(clippy::all, clippy::pedantic, missing_docs)]
mod generated {
    tonic::include_proto!("v1beta1");
}

pub use generated::*;

/// The API version a plugin announces in `RegisterRequest.version`.
pub const VERSION: &str = "v1beta1";

/// File name of the kubelet's registration socket inside the plugin directory.
pub const KUBELET_SOCKET: &str = "kubelet.sock";

/// `Device.health` of a usable device.
pub const HEALTHY: &str = "Healthy";

/// `Device.health` of a device the kubelet must not hand out.
pub const UNHEALTHY: &str = "Unhealthy";
