//! The `Slot` custom resource (`hal0.dev/v1alpha1`, namespaced): its `spec` is the same
//! [`SlotSpec`] as a `[slots.<name>]` table of hal0.toml, plus `replicas` for the scale
//! subresource; its status is Kubernetes-style (`phase`, `conditions`, `observedGeneration`).
//!
//! # Why `#[serde(flatten)]` and what it costs
//!
//! A wrapper keeps ONE type for both sources: the spec's fields are
//! `SlotSpec`'s fields, flattened, next to `replicas`. serde's `flatten` does not honour
//! `deny_unknown_fields` on the inner type, so an unknown spec key is not an error when *hal0*
//! deserializes a Slot. That is deliberate and safe here: the API server validates every Slot
//! against the generated structural schema first (kubectl's default `--validate=strict` rejects
//! unknown fields, and anything else is pruned), and a lenient reader means an older controller
//! keeps working while a newer CRD adds fields. The TOML reader is unchanged and still strict.
//!
//! # Fields that make no sense in a cluster
//!
//! - `port`: rejected (the Slot is `Degraded` with reason `InvalidSpec`): every slot pod listens
//!   on the controller's container port and is reached through its Service.
//! - `priority`: ignored: eviction by priority is a one-box memory policy; use a
//!   `PriorityClass` in the cluster.
//! - `memory`: becomes the container's memory request (the scheduler's admission).
//! - `autoload`: the initial `replicas` when `spec.replicas` is unset (1 if set, else 0).
//! - `pinned`: never scaled to zero for idleness.

pub mod schema;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use kube::CustomResourceExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::{Phase, SlotSpec};

/// API group of the Slot resource.
pub const GROUP: &str = "hal0.dev";
/// API version of the Slot resource.
pub const VERSION: &str = "v1alpha1";

/// The desired state of one Slot: the hal0.toml slot fields plus `replicas`.
// clippy reads the repeated `type_ = "string"` inside the printcolumn(...) entries as
// duplicated attributes; they are separate columns.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "hal0.dev",
    version = "v1alpha1",
    kind = "Slot",
    namespaced,
    status = "SlotStatus",
    derive = "PartialEq",
    category = "hal0",
    doc = "A hal0 slot: one model server serving one model, routed by name by the hal0 gateway.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Provider", type_ = "string", json_path = ".spec.provider"),
    printcolumn(name = "Model", type_ = "string", json_path = ".spec.model"),
    printcolumn(name = "Endpoint", type_ = "string", json_path = ".status.endpoint"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
pub struct SlotResourceSpec {
    /// The same fields as a `[slots.<name>]` table of hal0.toml.
    #[serde(flatten)]
    pub slot: SlotSpec,

    /// 0 (scaled to zero) or 1 (loaded). Written by the gateway (wake) and the controller
    /// (idle) through the scale subresource; leave it out of your manifests. Unset means
    /// 1 when `autoload` is set, else 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1))]
    pub replicas: Option<i32>,
}

impl SlotResourceSpec {
    /// The replica count the Slot asks for: `replicas`, else 1 for `autoload`, else 0.
    pub fn desired_replicas(&self) -> i32 {
        self.replicas
            .unwrap_or(i32::from(self.slot.autoload))
            .clamp(0, 1)
    }
}

/// What the controller (and, for `lastActivity`, the gateway) observed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SlotStatus {
    /// The slot lifecycle phase, as on one box (`stopped`, `loading`, `ready`, `failed`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,

    /// `Ready`, `Loaded` and `Degraded`, with reasons from [`reasons`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Where the slot is served in the cluster: `http://<service>.<namespace>.svc:<port>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,

    /// When the gateway last saw a request for this slot (written at most every 30 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_activity: Option<Time>,

    /// Pods running for this slot (the scale subresource's status replicas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
}

impl SlotStatus {
    /// The condition of `type_`, if present.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }
}

/// Condition types of a Slot.
pub mod conditions {
    /// The Slot is reconciled: its Deployment and Service exist and match the spec. A slot
    /// scaled to zero is still Ready: a request wakes it.
    pub const READY: &str = "Ready";
    /// A pod serves the model right now.
    pub const LOADED: &str = "Loaded";
    /// Something needs a human: an invalid spec, a rollout that cannot progress.
    pub const DEGRADED: &str = "Degraded";
}

/// Condition reasons of a Slot.
pub mod reasons {
    /// Deployment and Service match the spec.
    pub const RECONCILED: &str = "Reconciled";
    /// The spec breaks a rule; nothing is applied.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// Writing the Deployment or the Service failed.
    pub const APPLY_FAILED: &str = "ApplyFailed";
    /// An external upstream: no pod, only a route.
    pub const EXTERNAL_UPSTREAM: &str = "ExternalUpstream";
    /// At least one pod is ready.
    pub const POD_READY: &str = "PodReady";
    /// A pod is starting or loading its model.
    pub const LOADING: &str = "Loading";
    /// Pods are going away after a scale to zero.
    pub const UNLOADING: &str = "Unloading";
    /// `replicas` is 0: a request wakes it.
    pub const SCALED_TO_ZERO: &str = "ScaledToZero";
    /// The Deployment's rollout passed its progress deadline (crash loops, image pulls...).
    pub const PROGRESS_DEADLINE_EXCEEDED: &str = "ProgressDeadlineExceeded";
    /// The Deployment could not create pods (quota, admission).
    pub const REPLICA_FAILURE: &str = "ReplicaFailure";
    /// Nothing is wrong.
    pub const AS_EXPECTED: &str = "AsExpected";
    /// A name the Slot claims (its name, an alias, an upstream model) is claimed by another
    /// Slot of the namespace too; the gateway routes that name to neither.
    pub const NAME_CONFLICT: &str = "NameConflict";
}

/// Reads a Slot out of its JSON. serde names no field when a flattened spec fails to read, so
/// the error names the first `spec.<field>` that cannot be read on its own.
pub fn read(value: serde_json::Value) -> Result<Slot, String> {
    match serde_json::from_value::<Slot>(value.clone()) {
        Ok(slot) => Ok(slot),
        Err(e) => Err(match unreadable_field(&value["spec"]) {
            Some((field, why)) => format!("spec.{field}: {why}"),
            None => e.to_string(),
        }),
    }
}

/// The first spec field that does not read as its type, and why.
fn unreadable_field(spec: &serde_json::Value) -> Option<(String, String)> {
    let fields = spec.as_object()?;
    for (field, value) in fields {
        let alone = match field.as_str() {
            "replicas" => serde_json::from_value::<i32>(value.clone()).map(|_| ()),
            "provider" => {
                serde_json::from_value::<crate::model::ProviderKind>(value.clone()).map(|_| ())
            }
            // Unknown fields are ignored when a Slot is read (see the module doc), so they are
            // never what failed.
            f if !crate::rules::SLOT_FIELDS.contains(&f) => continue,
            // Each field next to a provider that reads, so only this field can fail.
            _ => serde_json::from_value::<SlotSpec>(serde_json::json!({
                "provider": "llama.cpp",
                field: value,
            }))
            .map(|_| ()),
        };
        if let Err(e) = alone {
            return Some((field.clone(), e.to_string()));
        }
    }
    None
}

/// The Slot CustomResourceDefinition: the schema derived from the types, hardened by
/// [`schema::harden`] with the slot rules (`crate::rules`) as patterns and CEL rules.
pub fn definition() -> Result<CustomResourceDefinition, serde_json::Error> {
    let mut crd = Slot::crd();
    for version in &mut crd.spec.versions {
        if let Some(s) = version.schema.as_mut()
            && let Some(props) = s.open_api_v3_schema.take()
        {
            let mut json = serde_json::to_value(props)?;
            schema::harden(&mut json);
            s.open_api_v3_schema = Some(serde_json::from_value(json)?);
        }
    }
    Ok(crd)
}

/// The CustomResourceDefinition YAML, as `hal0 crd` prints it and `crds/slot.yaml` holds it.
pub fn crd_yaml() -> Result<String, CrdError> {
    let body = serde_yaml::to_string(&definition()?)?;
    Ok(format!(
        "# Generated by `hal0 crd` from src/kube/crd/: do not edit; regenerate with\n# `cargo run -- crd > crds/slot.yaml`.\n{body}"
    ))
}

/// Why the CRD cannot be rendered.
#[derive(Debug, thiserror::Error)]
pub enum CrdError {
    #[error("cannot harden the schema: {0}")]
    Schema(#[from] serde_json::Error),
    #[error("cannot write YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ProviderKind;

    fn spec_json(v: serde_json::Value) -> SlotResourceSpec {
        serde_json::from_value(v).expect("valid spec")
    }

    #[test]
    fn spec_fields_are_the_slot_fields_plus_replicas() {
        let s = spec_json(serde_json::json!({
            "provider": "llama.cpp",
            "model": "hf:org/repo/m.gguf",
            "idle_timeout": "5m",
            "args": ["--ctx-size", "4096"],
            "replicas": 1
        }));
        assert_eq!(s.slot.provider, ProviderKind::LlamaCpp);
        assert_eq!(s.slot.args, vec!["--ctx-size", "4096"]);
        assert_eq!(s.replicas, Some(1));
        let back = serde_json::to_value(&s).expect("serializes");
        assert_eq!(back["idle_timeout"], "5m");
        assert_eq!(back["replicas"], 1);
    }

    #[test]
    fn a_spec_that_cannot_be_read_names_its_field() {
        let slot = |spec: serde_json::Value| {
            serde_json::json!({
                "apiVersion": "hal0.dev/v1alpha1", "kind": "Slot",
                "metadata": {"name": "a"}, "spec": spec,
            })
        };
        let ok = read(slot(
            serde_json::json!({"provider": "flm", "model": "flm:x"}),
        ));
        assert!(ok.is_ok(), "{ok:?}");
        for (spec, field) in [
            (
                serde_json::json!({"provider": "flm", "idle_timeout": "soon"}),
                "spec.idle_timeout: ",
            ),
            (serde_json::json!({"provider": "vllm"}), "spec.provider: "),
            (
                serde_json::json!({"provider": "flm", "memory": "lots"}),
                "spec.memory: ",
            ),
            (
                serde_json::json!({"provider": "flm", "replicas": "one"}),
                "spec.replicas: ",
            ),
            (
                serde_json::json!({"provider": "flm", "a_field_of_a_newer_crd": 1, "port": -1}),
                "spec.port: ",
            ),
        ] {
            let err = read(slot(spec)).expect_err("unreadable");
            assert!(err.starts_with(field), "{err}");
        }
    }

    #[test]
    fn replicas_default_from_autoload() {
        let mut s = spec_json(serde_json::json!({"provider": "flm", "model": "flm:x"}));
        assert_eq!(s.desired_replicas(), 0);
        s.slot.autoload = true;
        assert_eq!(s.desired_replicas(), 1);
        s.replicas = Some(0);
        assert_eq!(s.desired_replicas(), 0);
    }

    #[test]
    fn the_crd_has_scale_status_and_printer_columns() {
        let crd = Slot::crd();
        assert_eq!(crd.spec.group, GROUP);
        let v = &crd.spec.versions[0];
        assert_eq!(v.name, VERSION);
        let sub = v.subresources.as_ref().expect("subresources");
        assert!(sub.status.is_some());
        let scale = sub.scale.as_ref().expect("scale subresource");
        assert_eq!(scale.spec_replicas_path, ".spec.replicas");
        let cols: Vec<&str> = v
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(cols, ["Phase", "Provider", "Model", "Endpoint", "Age"]);
    }
}
