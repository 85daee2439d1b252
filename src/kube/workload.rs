//! Slot → Deployment and Service, as pure functions of the Slot and the cluster config. The
//! pod runs the argv that `providers::build_command_with` builds, the same code that builds a
//! local process's command; only the bind address (`0.0.0.0`, behind the Service) and where
//! model files live (the model volume) differ.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, HTTPGetAction, HostPathVolumeSource,
    PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
    SecurityContext, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;

use super::names;
use super::settings::ClusterConfig;
use crate::kube::crd::Slot;
use crate::model::{DesiredState, Device, LaunchSpec, ProviderKind, SlotName};
use crate::providers::{self, Command, ProviderError};

/// The device-plugin resource each device asks for.
pub fn device_resource(device: Device) -> Option<&'static str> {
    match device {
        Device::Cpu => None,
        Device::Igpu => Some("amd.com/gpu"),
        Device::Npu => Some("amd.com/npu"),
    }
}

/// A byte count as the Kubernetes quantity users write: `8Gi`, `512Mi`, else plain bytes.
pub fn memory_quantity(bytes: u64) -> Quantity {
    for (suffix, size) in [
        ("Ti", 1u64 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("T", 1_000_000_000_000),
        ("G", 1_000_000_000),
        ("M", 1_000_000),
        ("Ki", 1 << 10),
        ("k", 1_000),
    ] {
        if bytes >= size && bytes.is_multiple_of(size) {
            return Quantity(format!("{}{suffix}", bytes / size));
        }
    }
    Quantity(bytes.to_string())
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("the Slot has no metadata.uid or namespace yet (it was not read from the API server)")]
    NotStored,
    #[error("no image is configured for provider {0}; set images.\"{0}\" in the controller config")]
    NoImage(ProviderKind),
    #[error("cannot build the provider command")]
    Command(#[source] ProviderError),
}

/// The provider command a Slot's pod runs.
pub fn pod_command(
    name: &SlotName,
    slot: &Slot,
    cfg: &ClusterConfig,
) -> Result<Command, BuildError> {
    let desired = DesiredState {
        providers: cfg.provider_overrides(),
        ..DesiredState::default()
    };
    let launch = LaunchSpec::new(&desired, name, &slot.spec.slot, cfg.port);
    let models = Path::new(&cfg.model_volume.mount_path);
    providers::build_command_with(&launch, "0.0.0.0", |model_ref, _| {
        Ok(model_ref.local_path(models))
    })
    .map_err(BuildError::Command)
}

fn owned_meta(name: &SlotName, slot: &Slot) -> Result<ObjectMeta, BuildError> {
    let owner: OwnerReference = slot
        .controller_owner_ref(&())
        .ok_or(BuildError::NotStored)?;
    let namespace = slot
        .metadata
        .namespace
        .clone()
        .ok_or(BuildError::NotStored)?;
    Ok(ObjectMeta {
        name: Some(names::object_name(name)),
        namespace: Some(namespace),
        labels: Some(names::labels(name)),
        owner_references: Some(vec![owner]),
        ..ObjectMeta::default()
    })
}

fn probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_string()),
            port: IntOrString::String(names::PORT_NAME.to_string()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

fn resources(slot: &Slot, cfg: &ClusterConfig) -> Option<ResourceRequirements> {
    let spec = &slot.spec.slot;
    let device = spec.effective_device();
    // GPU memory in whole GiB, rounded up (an extended resource: the limit is the request).
    let gpu_memory = cfg
        .gpu_memory_resource
        .as_ref()
        .filter(|_| device == Device::Igpu)
        .zip(spec.memory)
        .map(|(r, m)| (r.clone(), Quantity(m.0.div_ceil(1 << 30).to_string())));
    let device_name = match (device, &cfg.gpu_resource) {
        (Device::Igpu, Some(name)) => Some(name.clone()),
        _ => device_resource(device).map(str::to_string),
    };
    let limits: BTreeMap<String, Quantity> = device_name
        .map(|r| (r, Quantity("1".to_string())))
        .into_iter()
        .chain(gpu_memory)
        .collect();
    let requests: BTreeMap<String, Quantity> = spec
        .memory
        .map(|m| ("memory".to_string(), memory_quantity(m.0)))
        .into_iter()
        .collect();
    (!limits.is_empty() || !requests.is_empty()).then(|| ResourceRequirements {
        limits: (!limits.is_empty()).then_some(limits),
        requests: (!requests.is_empty()).then_some(requests),
        ..ResourceRequirements::default()
    })
}

fn model_volume(cfg: &ClusterConfig) -> Option<(Volume, VolumeMount)> {
    let mv = &cfg.model_volume;
    let volume = if let Some(claim) = &mv.claim_name {
        Volume {
            name: "models".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.clone(),
                read_only: Some(true),
            }),
            ..Volume::default()
        }
    } else {
        Volume {
            name: "models".into(),
            host_path: Some(HostPathVolumeSource {
                path: mv.host_path.clone()?,
                type_: Some("DirectoryOrCreate".into()),
            }),
            ..Volume::default()
        }
    };
    let mount = VolumeMount {
        name: "models".into(),
        mount_path: mv.mount_path.clone(),
        read_only: Some(true),
        ..VolumeMount::default()
    };
    Some((volume, mount))
}

/// The Deployment of a Slot: one pod (or none when scaled to zero) running the provider.
pub fn deployment(
    name: &SlotName,
    slot: &Slot,
    cfg: &ClusterConfig,
) -> Result<Deployment, BuildError> {
    let spec = &slot.spec.slot;
    let image = cfg
        .images
        .get(&spec.provider)
        .ok_or(BuildError::NoImage(spec.provider))?;
    let cmd = pod_command(name, slot, cfg)?;
    let health = providers::health_path(spec.provider);
    let startup_failures = (cfg.startup_timeout_seconds / 5).max(1);
    let (volumes, mounts) =
        model_volume(cfg).map_or((None, None), |(v, m)| (Some(vec![v]), Some(vec![m])));
    let security_context = (spec.effective_device() == Device::Npu).then(|| SecurityContext {
        // The XDNA driver pins buffers: the NPU pod needs to lock memory past RLIMIT_MEMLOCK.
        capabilities: Some(Capabilities {
            add: Some(vec!["IPC_LOCK".into()]),
            drop: None,
        }),
        ..SecurityContext::default()
    });
    let container = Container {
        name: names::CONTAINER.into(),
        image: Some(image.image.clone()),
        image_pull_policy: cfg.image_pull_policy.clone(),
        command: Some(vec![cmd.program]),
        args: Some(cmd.args),
        env: (!cmd.env.is_empty()).then(|| {
            cmd.env
                .into_iter()
                .map(|(name, value)| EnvVar {
                    name,
                    value: Some(value),
                    value_from: None,
                })
                .collect()
        }),
        ports: Some(vec![ContainerPort {
            name: Some(names::PORT_NAME.into()),
            container_port: i32::from(cfg.port),
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        readiness_probe: Some(probe(health, 5, 3)),
        startup_probe: Some(probe(health, 5, startup_failures)),
        resources: resources(slot, cfg),
        security_context,
        volume_mounts: mounts,
        ..Container::default()
    };
    Ok(Deployment {
        metadata: owned_meta(name, slot)?,
        spec: Some(DeploymentSpec {
            replicas: Some(slot.spec.desired_replicas()),
            selector: LabelSelector {
                match_labels: Some(names::selector(name)),
                match_expressions: None,
            },
            // One pod at a time: a device and the model's memory cannot be shared by two.
            strategy: Some(DeploymentStrategy {
                type_: Some("Recreate".into()),
                rolling_update: None,
            }),
            progress_deadline_seconds: Some(cfg.startup_timeout_seconds + 120),
            revision_history_limit: Some(2),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(names::labels(name)),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    volumes,
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    })
}

/// The Service of a Slot: a stable in-cluster address for the gateway.
pub fn service(name: &SlotName, slot: &Slot, cfg: &ClusterConfig) -> Result<Service, BuildError> {
    Ok(Service {
        metadata: owned_meta(name, slot)?,
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(names::selector(name)),
            ports: Some(vec![ServicePort {
                name: Some(names::PORT_NAME.into()),
                port: i32::from(cfg.port),
                target_port: Some(IntOrString::String(names::PORT_NAME.into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    })
}
