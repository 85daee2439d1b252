//! How the controller turns Slots into pods on this cluster: the image per provider, the model
//! volume, the container port. Read from a YAML file (`hal0 controller --config`), every field
//! optional with a documented default.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::model::{ProviderKind, ProviderOverride};

/// Where model files come from inside a slot pod (mounted read-only at `mount_path`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModelVolume {
    /// Where the volume is mounted; `hf:` refs resolve under it, like `server.models_dir`.
    #[serde(default = "default_mount_path")]
    pub mount_path: String,
    /// A directory on the node (single-node clusters, k3s on a Strix Halo box).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<String>,
    /// A PersistentVolumeClaim in the Slot's namespace (takes precedence over `hostPath`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_name: Option<String>,
}

fn default_mount_path() -> String {
    "/models".to_string()
}

impl Default for ModelVolume {
    fn default() -> Self {
        ModelVolume {
            mount_path: default_mount_path(),
            host_path: Some("/var/lib/hal0/models".to_string()),
            claim_name: None,
        }
    }
}

/// How one provider runs in a pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProviderImage {
    /// The container image.
    pub image: String,
    /// The argv prefix replacing the provider's default program (as `[providers.x] command`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Environment for every slot of this provider (a Slot's own `env` wins).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
}

/// The controller's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterConfig {
    /// Image per provider name (`llama.cpp`, `flm`, `moonshine`, `kokoro`), merged over
    /// [`default_images`].
    #[serde(default)]
    pub images: BTreeMap<ProviderKind, ProviderImage>,
    /// The model volume.
    #[serde(default)]
    pub model_volume: ModelVolume,
    /// The port every provider listens on inside its pod, and the Service port.
    #[serde(default = "default_port")]
    pub port: u16,
    /// How long a pod may take to load its model before its startup probe gives up.
    #[serde(default = "default_startup_seconds")]
    pub startup_timeout_seconds: i32,
    /// `imagePullPolicy` for slot pods (unset: Kubernetes' default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    /// The extended resource igpu Slots request (default `amd.com/gpu`): set it to what the
    /// node's device plugin advertises (`hal0 device-plugin --resource`), e.g. when ROCm's own
    /// plugin already owns `amd.com/gpu`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_resource: Option<String>,
    /// The extended resource counting the iGPU's memory in GiB (`hal0 device-plugin --device
    /// igpu-memory`, e.g. `amd.com/gpu-memory`). When set, an igpu Slot with a declared
    /// `memory` requests that many GiB of it (rounded up), so the scheduler never places
    /// models that cannot fit together on one APU. Unset: not requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_memory_resource: Option<String>,
}

fn default_port() -> u16 {
    8080
}

fn default_startup_seconds() -> i32 {
    600
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            images: default_images(),
            model_volume: ModelVolume::default(),
            port: default_port(),
            startup_timeout_seconds: default_startup_seconds(),
            image_pull_policy: None,
            gpu_resource: None,
            gpu_memory_resource: None,
        }
    }
}

/// Built-in images: llama.cpp's own server image (Vulkan build, which runs on the Strix Halo
/// iGPU and on CPU). FastFlowLM, Moonshine and Kokoro publish no image that speaks hal0's
/// argv; a Slot using them needs `images.<provider>` configured (else it is `Degraded`).
pub fn default_images() -> BTreeMap<ProviderKind, ProviderImage> {
    BTreeMap::from([(
        ProviderKind::LlamaCpp,
        ProviderImage {
            image: "ghcr.io/ggml-org/llama.cpp:server-vulkan".to_string(),
            command: Some(vec!["/app/llama-server".to_string()]),
            env: BTreeMap::new(),
        },
    )])
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read controller config {path}")]
    ReadFailed {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("controller config {path} is not valid")]
    ParseFailed {
        path: String,
        #[source]
        source: serde_yaml::Error,
    },
}

impl ClusterConfig {
    /// Parses YAML; configured images are merged over the defaults.
    pub fn from_yaml(text: &str, path: &str) -> Result<Self, ConfigError> {
        let mut cfg: ClusterConfig =
            serde_yaml::from_str(text).map_err(|source| ConfigError::ParseFailed {
                path: path.to_string(),
                source,
            })?;
        let mut images = default_images();
        images.append(&mut cfg.images);
        cfg.images = images;
        Ok(cfg)
    }

    /// Reads a config file, or the defaults when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = path else {
            return Ok(ClusterConfig::default());
        };
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFailed {
            path: shown.clone(),
            source,
        })?;
        Self::from_yaml(&text, &shown)
    }

    /// The provider overrides in the shape hal0.toml's `[providers."<name>"]` has, so the pod's
    /// command is built by the same code as a local process's.
    pub fn provider_overrides(&self) -> BTreeMap<ProviderKind, ProviderOverride> {
        self.images
            .iter()
            .map(|(k, img)| {
                (
                    *k,
                    ProviderOverride {
                        command: img.command.clone(),
                        env: img.env.clone(),
                    },
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_images_merge_over_the_defaults() {
        let cfg = ClusterConfig::from_yaml(
            "images:\n  kokoro:\n    image: example.invalid/kokoro:1\nmodelVolume:\n  claimName: models\n",
            "c.yaml",
        )
        .expect("valid");
        assert!(cfg.images.contains_key(&ProviderKind::LlamaCpp));
        assert_eq!(
            cfg.images[&ProviderKind::Kokoro].image,
            "example.invalid/kokoro:1"
        );
        assert_eq!(cfg.model_volume.claim_name.as_deref(), Some("models"));
        assert_eq!(cfg.model_volume.mount_path, "/models");
        assert_eq!(cfg.port, 8080);
    }

    #[test]
    fn unknown_keys_are_errors() {
        assert!(ClusterConfig::from_yaml("imagez: {}\n", "c.yaml").is_err());
    }
}
