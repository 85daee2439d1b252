//! SlotSpec → Deployment and Service, pure.

use k8s_openapi::api::core::v1::Container;

use super::settings::{ClusterConfig, ModelVolume, ProviderImage};
use super::workload::{BuildError, deployment, service};
use crate::kube::crd::{Slot, SlotResourceSpec};
use crate::model::{ByteSize, DesiredState, Device, LaunchSpec, ProviderKind, SlotName, SlotSpec};
use crate::providers::build_command;

fn stored(name: &str, spec: SlotSpec, replicas: Option<i32>) -> Slot {
    let mut s = Slot::new(
        name,
        SlotResourceSpec {
            slot: spec,
            replicas,
        },
    );
    s.metadata.namespace = Some("ai".into());
    s.metadata.uid = Some("uid-1".into());
    s
}

fn n(s: &str) -> SlotName {
    SlotName::parse(s).expect("valid name")
}

fn container(slot: &Slot, cfg: &ClusterConfig) -> Container {
    let d = deployment(
        &n(&slot.metadata.name.clone().unwrap_or_default()),
        slot,
        cfg,
    )
    .expect("builds");
    d.spec.expect("spec").template.spec.expect("pod").containers[0].clone()
}

#[test]
fn the_pod_runs_the_same_argv_as_a_local_process() {
    let models = tempfile::tempdir().expect("tempdir");
    let file = models.path().join("org/repo/Small.gguf");
    std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
    std::fs::write(&file, b"gguf").expect("write");
    let mut spec = SlotSpec::new(ProviderKind::LlamaCpp, Some("hf:org/repo/Small.gguf"));
    spec.args = vec!["--ctx-size".into(), "4096".into()];
    spec.device = Some(Device::Igpu);
    let cfg = ClusterConfig::default();
    let local_desired = DesiredState {
        providers: cfg.provider_overrides(),
        ..DesiredState::default()
    };
    let launch = LaunchSpec::new(&local_desired, &n("fast"), &spec, cfg.port);
    let local = build_command(&launch, models.path()).expect("local command");
    let c = container(&stored("fast", spec, None), &cfg);
    let mut pod_argv = c.command.clone().expect("command");
    pod_argv.extend(c.args.clone().expect("args"));
    let models_dir = models.path().display().to_string();
    let expected: Vec<String> = local
        .argv()
        .into_iter()
        .map(|a| match a.as_str() {
            "127.0.0.1" => "0.0.0.0".to_string(),
            _ => a.replace(&models_dir, "/models"),
        })
        .collect();
    assert_eq!(pod_argv, expected);
    assert!(pod_argv.contains(&"--n-gpu-layers".to_string()));
    assert_eq!(pod_argv[0], "/app/llama-server");
}

#[test]
fn replicas_follow_the_slot() {
    let spec = SlotSpec::new(ProviderKind::LlamaCpp, Some("hf:o/r/m.gguf"));
    let cfg = ClusterConfig::default();
    for (replicas, want) in [(None, 0), (Some(1), 1), (Some(0), 0)] {
        let d =
            deployment(&n("fast"), &stored("fast", spec.clone(), replicas), &cfg).expect("builds");
        assert_eq!(d.spec.expect("spec").replicas, Some(want));
    }
}

#[test]
fn objects_are_owned_by_the_slot_and_labelled() {
    let spec = SlotSpec::new(ProviderKind::LlamaCpp, Some("hf:o/r/m.gguf"));
    let slot = stored("fast", spec, None);
    let cfg = ClusterConfig::default();
    let d = deployment(&n("fast"), &slot, &cfg).expect("deployment");
    let s = service(&n("fast"), &slot, &cfg).expect("service");
    for meta in [&d.metadata, &s.metadata] {
        assert_eq!(meta.name.as_deref(), Some("hal0-slot-fast"));
        assert_eq!(meta.namespace.as_deref(), Some("ai"));
        let owner = &meta.owner_references.as_ref().expect("owner")[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("Slot", "uid-1"));
        assert_eq!(owner.controller, Some(true));
        assert_eq!(
            meta.labels.as_ref().expect("labels")["hal0.dev/slot"],
            "fast"
        );
    }
    let spec = d.spec.expect("spec");
    assert_eq!(
        spec.strategy.and_then(|s| s.type_).as_deref(),
        Some("Recreate")
    );
    let svc = s.spec.expect("service spec");
    assert_eq!(svc.selector, spec.selector.match_labels);
    assert_eq!(svc.ports.expect("ports")[0].port, 8080);
}

#[test]
fn probes_use_the_providers_health_path() {
    let cfg = ClusterConfig::default();
    let c = container(
        &stored(
            "fast",
            SlotSpec::new(ProviderKind::LlamaCpp, Some("hf:o/r/m.gguf")),
            None,
        ),
        &cfg,
    );
    let path = |p: Option<k8s_openapi::api::core::v1::Probe>| {
        p.and_then(|p| p.http_get).and_then(|g| g.path)
    };
    assert_eq!(path(c.readiness_probe.clone()).as_deref(), Some("/health"));
    assert_eq!(path(c.startup_probe.clone()).as_deref(), Some("/health"));
    assert_eq!(c.startup_probe.and_then(|p| p.failure_threshold), Some(120));
}

#[test]
fn devices_request_device_plugin_resources() {
    let mut cfg = ClusterConfig::default();
    cfg.images.insert(
        ProviderKind::Flm,
        ProviderImage {
            image: "example.invalid/flm:1".into(),
            command: None,
            env: Default::default(),
        },
    );
    let mut gpu = SlotSpec::new(ProviderKind::LlamaCpp, Some("hf:o/r/m.gguf"));
    gpu.device = Some(Device::Igpu);
    gpu.memory = Some(ByteSize::gib(8));
    let c = container(&stored("gpu", gpu.clone(), None), &cfg);
    let res = c.resources.expect("resources");
    assert_eq!(res.limits.expect("limits")["amd.com/gpu"].0, "1");
    assert_eq!(res.requests.expect("requests")["memory"].0, "8Gi");
    assert!(c.security_context.is_none());
    let limits = container(&stored("gpu", gpu, None), &cfg)
        .resources
        .and_then(|r| r.limits)
        .expect("limits");
    assert!(!limits.contains_key("amd.com/gpu-memory"), "not configured");

    let mut npu = SlotSpec::new(ProviderKind::Flm, Some("flm:llama3.2:1b"));
    npu.device = Some(Device::Npu);
    let c = container(&stored("npu", npu, None), &cfg);
    assert_eq!(
        c.resources.expect("resources").limits.expect("limits")["amd.com/npu"].0,
        "1"
    );
    let caps = c
        .security_context
        .and_then(|s| s.capabilities)
        .and_then(|c| c.add);
    assert_eq!(caps, Some(vec!["IPC_LOCK".to_string()]));
    assert_eq!(c.image.as_deref(), Some("example.invalid/flm:1"));

    let cpu = SlotSpec::new(ProviderKind::LlamaCpp, Some("hf:o/r/m.gguf"));
    assert!(
        container(&stored("cpu", cpu, None), &cfg)
            .resources
            .is_none()
    );
}

#[test]
fn igpu_slots_request_their_memory_in_gib_of_the_gpu_memory_resource() {
    let cfg = ClusterConfig {
        gpu_memory_resource: Some("amd.com/gpu-memory".into()),
        ..ClusterConfig::default()
    };
    let limits = |device: Device, memory: Option<ByteSize>| {
        let mut s = SlotSpec::new(ProviderKind::LlamaCpp, Some("hf:o/r/m.gguf"));
        s.device = Some(device);
        s.memory = memory;
        container(&stored("s", s, None), &cfg)
            .resources
            .and_then(|r| r.limits)
            .unwrap_or_default()
    };
    let l = limits(Device::Igpu, Some(ByteSize::gib(8)));
    assert_eq!(l["amd.com/gpu-memory"].0, "8");
    assert_eq!(l["amd.com/gpu"].0, "1");
    // Rounded up to whole GiB: 700MiB needs one.
    let l = limits(Device::Igpu, Some(ByteSize::mib(700)));
    assert_eq!(l["amd.com/gpu-memory"].0, "1");
    // No declared memory, or not on the iGPU: nothing to count.
    assert!(!limits(Device::Igpu, None).contains_key("amd.com/gpu-memory"));
    assert!(!limits(Device::Cpu, Some(ByteSize::gib(8))).contains_key("amd.com/gpu-memory"));

    // The device resource's name is configurable too (ROCm's plugin owns amd.com/gpu).
    let cfg = ClusterConfig {
        gpu_resource: Some("hal0.dev/igpu".into()),
        ..cfg
    };
    let mut s = SlotSpec::new(ProviderKind::LlamaCpp, Some("hf:o/r/m.gguf"));
    s.device = Some(Device::Igpu);
    let l = container(&stored("s", s, None), &cfg)
        .resources
        .and_then(|r| r.limits)
        .unwrap_or_default();
    assert_eq!(l["hal0.dev/igpu"].0, "1");
    assert!(!l.contains_key("amd.com/gpu"));
}

#[test]
fn the_model_volume_is_a_claim_or_a_host_path() {
    let spec = SlotSpec::new(ProviderKind::LlamaCpp, Some("hf:o/r/m.gguf"));
    let slot = stored("fast", spec, None);
    let pod = |cfg: &ClusterConfig| {
        deployment(&n("fast"), &slot, cfg)
            .expect("builds")
            .spec
            .expect("spec")
            .template
            .spec
            .expect("pod")
    };
    let host = pod(&ClusterConfig::default());
    let v = &host.volumes.expect("volumes")[0];
    assert_eq!(
        v.host_path.as_ref().map(|h| h.path.as_str()),
        Some("/var/lib/hal0/models")
    );
    let cfg = ClusterConfig {
        model_volume: ModelVolume {
            mount_path: "/data".into(),
            host_path: None,
            claim_name: Some("models".into()),
        },
        ..ClusterConfig::default()
    };
    let claim = pod(&cfg);
    let v = &claim.volumes.expect("volumes")[0];
    assert_eq!(
        v.persistent_volume_claim
            .as_ref()
            .map(|c| c.claim_name.as_str()),
        Some("models")
    );
    let c = &claim.containers[0];
    assert_eq!(
        c.volume_mounts.as_ref().expect("mounts")[0].mount_path,
        "/data"
    );
    assert!(
        c.args
            .as_ref()
            .expect("args")
            .contains(&"/data/o/r/m.gguf".to_string())
    );
}

#[test]
fn env_merges_provider_then_slot() {
    let mut cfg = ClusterConfig::default();
    if let Some(img) = cfg.images.get_mut(&ProviderKind::LlamaCpp) {
        img.env.insert("A".into(), "provider".into());
        img.env.insert("B".into(), "provider".into());
    }
    let mut spec = SlotSpec::new(ProviderKind::LlamaCpp, Some("hf:o/r/m.gguf"));
    spec.env.insert("B".into(), "slot".into());
    let env: Vec<(String, String)> = container(&stored("fast", spec, None), &cfg)
        .env
        .expect("env")
        .into_iter()
        .map(|e| (e.name, e.value.unwrap_or_default()))
        .collect();
    let (hal0, env): (Vec<_>, Vec<_>) = env.into_iter().partition(|(k, _)| k.starts_with("HAL0_"));
    assert_eq!(
        env,
        vec![("A".into(), "provider".into()), ("B".into(), "slot".into())]
    );
    // Every provider also learns its model from the environment, as on one box.
    assert!(
        hal0.contains(&("HAL0_MODEL_ID".into(), "m".into())),
        "{hal0:?}"
    );
}

#[test]
fn a_provider_without_an_image_and_an_unstored_slot_are_errors() {
    let cfg = ClusterConfig::default();
    let spec = SlotSpec::new(ProviderKind::Kokoro, Some("kokoro-82m"));
    assert_eq!(
        deployment(&n("tts"), &stored("tts", spec.clone(), None), &cfg).err(),
        Some(BuildError::NoImage(ProviderKind::Kokoro))
    );
    let fresh = Slot::new(
        "fast",
        SlotResourceSpec {
            slot: SlotSpec::new(ProviderKind::LlamaCpp, Some("hf:o/r/m.gguf")),
            replicas: None,
        },
    );
    assert_eq!(
        deployment(&n("fast"), &fresh, &cfg).err(),
        Some(BuildError::NotStored)
    );
}
