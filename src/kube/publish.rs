//! The kube source for the in-cluster gateway: a reflector over the Slots of one namespace,
//! projected into the same `RoutingTable` and statuses the gateway reads on one box. The
//! projection reuses the core's `routing_table` and `statuses`; only the targets differ (a
//! Slot's Service instead of a local port).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use std::collections::HashMap;

use futures_util::StreamExt;
use kube::api::DynamicObject;
use kube::runtime::reflector::store::Writer;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Resource, ResourceExt};
use tokio::sync::watch;

use crate::core::{self, ObservedSlot, StatusMap};
use crate::kube::crd::{Slot, conditions};
use crate::kube::names;
use crate::kube::validate::validate;
use crate::model::{DesiredState, Phase, RoutingTable, SlotName, Target, UpstreamAuth};

/// What a Slot's status means to the gateway.
fn observed(slot: &Slot) -> ObservedSlot {
    let status = slot.status.as_ref();
    let degraded = status
        .and_then(|s| s.condition(conditions::DEGRADED))
        .filter(|c| c.status == "True");
    let mut phase = status.and_then(|s| s.phase).unwrap_or(Phase::Stopped);
    if degraded.is_some() && slot.spec.desired_replicas() > 0 {
        // Parked until a human fixes it: fail requests at once instead of waiting for a load.
        phase = Phase::CrashLoop;
    }
    // Pods still running after a scale to zero do not serve new requests: wake them again.
    if phase == Phase::Unloading {
        phase = Phase::Stopped;
    }
    ObservedSlot {
        phase,
        last_error: degraded.map(|c| format!("{}: {}", c.reason, c.message)),
        ..ObservedSlot::default()
    }
}

/// Decodes watched Slots one at a time, remembering each result per resourceVersion: a Slot
/// that does not decode is left out (and logged once), never the whole list.
#[derive(Default)]
pub struct Decoder {
    cache: HashMap<String, (Option<String>, Option<Arc<Slot>>)>,
}

impl Decoder {
    pub fn decode_all(&mut self, objects: &[Arc<DynamicObject>]) -> Vec<Arc<Slot>> {
        let mut seen = HashMap::with_capacity(objects.len());
        let mut out = Vec::with_capacity(objects.len());
        for obj in objects {
            let key = obj.uid().unwrap_or_else(|| obj.name_any());
            let version = obj.meta().resource_version.clone();
            let entry = match self.cache.remove(&key) {
                Some(hit) if hit.0 == version => hit,
                _ => {
                    let value = serde_json::to_value(&**obj).map_err(|e| e.to_string());
                    let decoded = value.and_then(crate::kube::crd::read);
                    match decoded {
                        Ok(slot) => (version, Some(Arc::new(slot))),
                        Err(e) => {
                            tracing::warn!(slot = %obj.name_any(), error = %e, "Slot cannot be read; not routed (the controller marks it Degraded)");
                            (version, None)
                        }
                    }
                }
            };
            if let Some(slot) = &entry.1 {
                out.push(slot.clone());
            }
            seen.insert(key, entry);
        }
        self.cache = seen;
        out
    }
}

/// Projects Slots into the gateway's routing table and statuses. Slots whose spec is invalid
/// are left out (the controller marks them Degraded). `port` is the slot Service port used
/// when a Slot has no `status.endpoint` yet.
pub fn views(slots: &[Arc<Slot>], namespace: &str, port: u16) -> (RoutingTable, StatusMap) {
    let mut desired = DesiredState::default();
    let mut obs: BTreeMap<SlotName, ObservedSlot> = BTreeMap::new();
    let mut endpoints: BTreeMap<SlotName, String> = BTreeMap::new();
    let taken = crate::kube::claims::ambiguous(slots.iter().map(|s| {
        crate::rules::claims(
            s.metadata.name.as_deref().unwrap_or_default(),
            s.spec.slot.aliases.iter().map(String::as_str),
            s.spec.slot.models.iter().map(String::as_str),
        )
    }));
    for slot in slots {
        let Ok(name) = validate(slot) else {
            continue;
        };
        let ns = slot.metadata.namespace.as_deref().unwrap_or(namespace);
        let endpoint = slot
            .status
            .as_ref()
            .and_then(|s| s.endpoint.clone())
            .filter(|e| e.starts_with("http://"))
            .unwrap_or_else(|| names::endpoint(&name, ns, port));
        endpoints.insert(name.clone(), endpoint);
        obs.insert(name.clone(), observed(slot));
        let mut spec = slot.spec.slot.clone();
        // A name two Slots claim routes by neither's alias (the controller marks both Degraded).
        spec.aliases.retain(|a| !taken.contains(a));
        spec.models.retain(|m| !taken.contains(m));
        desired.slots.insert(name, spec);
    }
    let ports: BTreeMap<SlotName, u16> = desired.slots.keys().map(|n| (n.clone(), port)).collect();
    let mut table = core::routing_table(&desired, &obs, &ports);
    for route in table.routes.values_mut() {
        if let (Target::Local { .. }, Some(endpoint)) = (&route.target, endpoints.get(&route.slot))
        {
            route.target = Target::Upstream {
                base_url: format!("{}/v1", endpoint.trim_end_matches('/')),
                api_key_env: None,
                auth: UpstreamAuth::default(),
            };
        }
    }
    let mut statuses = core::statuses(&desired, &obs, &BTreeMap::new(), core::Time::ZERO, 0);
    for (name, status) in statuses.iter_mut() {
        if let Some(slot) = slots
            .iter()
            .find(|s| s.metadata.name.as_deref() == Some(name.as_str()))
        {
            status.last_request_unix_ms = slot
                .status
                .as_ref()
                .and_then(|s| s.last_activity.as_ref())
                .and_then(|t| u64::try_from(t.0.as_millisecond()).ok());
        }
    }
    (table, statuses)
}

/// Where the gateway finds the Slots and how it reaches them.
#[derive(Debug, Clone)]
pub struct Options {
    pub namespace: String,
    /// The slot Service port, used until a Slot shows its endpoint.
    pub port: u16,
    /// Test-only: send every slot's traffic to this base URL (`http://127.0.0.1:PORT`)
    /// instead of its Service, for control planes without a kubelet or cluster DNS.
    pub endpoint_override: Option<String>,
}

/// Watches the Slots of `api` and publishes the routing table and statuses on every change,
/// until `shutdown` resolves. The watcher retries with backoff; the last views stay meanwhile.
pub async fn run(
    api: Api<DynamicObject>,
    opts: Options,
    routes: watch::Sender<Arc<RoutingTable>>,
    statuses: watch::Sender<Arc<StatusMap>>,
    shutdown: impl Future<Output = ()>,
) {
    let Options {
        namespace,
        port,
        endpoint_override,
    } = opts;
    let writer = Writer::<DynamicObject>::new(crate::kube::reconcile::slot_resource());
    let reader = writer.as_reader();
    let mut decoder = Decoder::default();
    // Every event, not only touched objects: the store swaps in the initial list at InitDone.
    let stream = reflector(
        writer,
        watcher(api, watcher::Config::default())
            .backoff(crate::kube::watches::WatchBackoff::default()),
    );
    let publish = async {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            if let Err(e) = event {
                tracing::warn!(error = %e, "watching Slots failed; retrying");
                continue;
            }
            let slots = decoder.decode_all(&reader.state());
            let (mut table, status) = views(&slots, &namespace, port);
            if let Some(base) = &endpoint_override {
                for route in table.routes.values_mut() {
                    if let Target::Upstream { base_url, .. } = &mut route.target
                        && base_url.contains(".svc")
                    {
                        *base_url = format!("{}/v1", base.trim_end_matches('/'));
                    }
                }
            }
            routes.send_if_modified(|cur| {
                let changed = **cur != table;
                if changed {
                    *cur = Arc::new(table);
                }
                changed
            });
            statuses.send_if_modified(|cur| {
                let changed = **cur != status;
                if changed {
                    *cur = Arc::new(status);
                }
                changed
            });
        }
    };
    tokio::select! {
        () = publish => {}
        () = shutdown => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::crd::{SlotResourceSpec, SlotStatus};
    use crate::model::{ProviderKind, Resolution, Role, SlotSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
    use k8s_openapi::jiff::Timestamp;

    fn slot(name: &str, phase: Phase, endpoint: Option<&str>) -> Arc<Slot> {
        let mut spec = SlotSpec::new(ProviderKind::LlamaCpp, Some("hf:o/r/Small.gguf"));
        spec.aliases = vec!["quick".into()];
        let mut s = Slot::new(
            name,
            SlotResourceSpec {
                slot: spec,
                replicas: Some(1),
            },
        );
        s.metadata.namespace = Some("ai".into());
        s.status = Some(SlotStatus {
            phase: Some(phase),
            endpoint: endpoint.map(str::to_string),
            ..SlotStatus::default()
        });
        Arc::new(s)
    }

    fn n(s: &str) -> SlotName {
        SlotName::parse(s).expect("valid")
    }

    #[test]
    fn slots_route_to_their_service_by_name_alias_and_model_id() {
        let (table, statuses) = views(
            &[slot("fast", Phase::Ready, Some("http://svc.ai.svc:8080/"))],
            "ai",
            8080,
        );
        for model in ["fast", "quick", "Small"] {
            let Resolution::Found(r) = table.resolve(model, Some(Role::Chat)) else {
                panic!("{model} does not resolve");
            };
            assert_eq!(
                r.target,
                Target::Upstream {
                    base_url: "http://svc.ai.svc:8080/v1".into(),
                    api_key_env: None,
                    auth: UpstreamAuth::Bearer,
                }
            );
        }
        assert_eq!(statuses[&n("fast")].phase, Phase::Ready);
    }

    #[test]
    fn without_an_endpoint_the_service_name_is_used() {
        let (table, _) = views(&[slot("fast", Phase::Stopped, None)], "ai", 8080);
        assert!(matches!(&table.routes[&n("fast")].target,
            Target::Upstream { base_url, .. } if base_url == "http://hal0-slot-fast.ai.svc:8080/v1"));
    }

    #[test]
    fn degraded_slots_are_parked_and_invalid_ones_left_out() {
        let mut bad = (*slot("fast", Phase::Loading, None)).clone();
        if let Some(st) = bad.status.as_mut() {
            st.conditions = vec![Condition {
                type_: "Degraded".into(),
                status: "True".into(),
                reason: "ProgressDeadlineExceeded".into(),
                message: "ImagePullBackOff".into(),
                observed_generation: None,
                last_transition_time: Time(Timestamp::UNIX_EPOCH),
            }];
        }
        let mut invalid = (*slot("other", Phase::Ready, None)).clone();
        invalid.spec.slot.port = Some(9000);
        let (table, statuses) = views(&[Arc::new(bad), Arc::new(invalid)], "ai", 8080);
        let s = &statuses[&n("fast")];
        assert_eq!(s.phase, Phase::CrashLoop);
        assert!(
            s.last_error
                .as_deref()
                .is_some_and(|e| e.contains("ImagePullBackOff"))
        );
        assert!(!table.routes.contains_key(&n("other")));
    }

    #[test]
    fn pods_still_unloading_are_woken_again() {
        let (_, statuses) = views(&[slot("fast", Phase::Unloading, None)], "ai", 8080);
        assert_eq!(statuses[&n("fast")].phase, Phase::Stopped);
    }
}
