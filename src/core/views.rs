//! Pure projections of (desired, observed) for the outside: the status of every slot and the
//! gateway's routing table.

use std::collections::{BTreeMap, HashMap};

use crate::model::{
    DesiredState, Phase, ProviderKind, PullProgress, Route, RoutingTable, SlotName, SlotSpec,
    SlotStatus, Target,
};

use super::{ObservedSlot, Time};

/// Every declared slot's status, keyed by name.
pub type StatusMap = BTreeMap<SlotName, SlotStatus>;

/// The phase a slot shows: upstreams are always ready; a slot never observed is stopped.
fn phase_of(spec: &SlotSpec, obs: Option<&ObservedSlot>) -> Phase {
    if !spec.provider.runs_process() {
        return Phase::Ready;
    }
    obs.map_or(Phase::Stopped, |o| o.phase)
}

/// Builds the status of every declared slot. `epoch_unix_ms` is the wall-clock time (ms since
/// the Unix epoch) at `Time` zero, to express activity as wall-clock times.
pub fn statuses(
    desired: &DesiredState,
    observed: &BTreeMap<SlotName, ObservedSlot>,
    ports: &BTreeMap<SlotName, u16>,
    now: Time,
    epoch_unix_ms: u64,
) -> StatusMap {
    let default = ObservedSlot::default();
    desired
        .slots
        .iter()
        .map(|(name, spec)| {
            let obs = observed.get(name);
            let o = obs.unwrap_or(&default);
            let status = SlotStatus {
                name: name.clone(),
                phase: phase_of(spec, obs),
                provider: spec.provider,
                role: spec.effective_role(name.builtin_role()),
                model: spec.model.clone(),
                port: ports.get(name).copied(),
                pid: o.pid,
                memory_estimate: (o.memory_estimate > 0).then_some(o.memory_estimate),
                memory_rss: o.memory_rss,
                memory_peak: o.memory_peak,
                in_flight: o.in_flight,
                waiting: o.waiting,
                waiting_since_unix_ms: o
                    .waiting_since
                    .map(|t| epoch_unix_ms + t.as_millis() as u64),
                draining_for: o.draining.clone(),
                swaps: o.swaps,
                last_residency_ms: o.last_residency.map(|d| d.as_millis() as u64),
                last_request_unix_ms: o.last_request.map(|t| epoch_unix_ms + t.as_millis() as u64),
                restarts: o.restarts,
                evictions: o.evictions,
                load_failures: o.load_failures,
                refused: o.refused,
                last_error: o.last_error.clone(),
                retry_in_ms: o.retry_at.map(|t| t.saturating_sub(now).as_millis() as u64),
                pull: o
                    .pull
                    .map(|(downloaded, total)| PullProgress { downloaded, total }),
                last_load_ms: o.last_load.map(|d| d.as_millis() as u64),
                restarting: o.held_since.is_some(),
            };
            (name.clone(), status)
        })
        .collect()
}

/// Builds the routing table: each slot answers to its name, its aliases (an upstream also to
/// its `models`), and its model id. When names collide, the slot of that name comes first, then
/// aliases, then model ids; the gateway then picks the first that serves the endpoint.
pub fn routing_table(
    desired: &DesiredState,
    observed: &BTreeMap<SlotName, ObservedSlot>,
    ports: &BTreeMap<SlotName, u16>,
) -> RoutingTable {
    let mut routes = BTreeMap::new();
    let mut names: HashMap<String, Vec<(u8, SlotName)>> = HashMap::new();
    for (name, spec) in &desired.slots {
        let target = match spec.provider {
            ProviderKind::OpenAiCompatible => Target::Upstream {
                base_url: spec
                    .upstream
                    .clone()
                    .unwrap_or_default()
                    .trim_end_matches('/')
                    .to_string(),
                api_key_env: spec.api_key_env.clone(),
                auth: spec.auth.unwrap_or_default(),
            },
            _ => match ports.get(name) {
                Some(&port) => Target::Local { port },
                None => continue,
            },
        };
        let roles = if spec.provider == ProviderKind::OpenAiCompatible && spec.role.is_none() {
            spec.provider.roles().to_vec()
        } else {
            let role = spec.effective_role(name.builtin_role());
            // A chat model also serves plain completions; those share the chat role.
            vec![role]
        };
        let mut aliases = spec.aliases.clone();
        aliases.extend(spec.models.iter().cloned());
        let model_id = spec.model_id();
        names
            .entry(name.to_string())
            .or_default()
            .push((0, name.clone()));
        for a in &aliases {
            names.entry(a.clone()).or_default().push((1, name.clone()));
        }
        if let Some(id) = &model_id {
            names.entry(id.clone()).or_default().push((2, name.clone()));
        }
        if let Some(m) = &spec.model
            && Some(m) != model_id.as_ref()
        {
            names.entry(m.clone()).or_default().push((2, name.clone()));
        }
        routes.insert(
            name.clone(),
            Route {
                slot: name.clone(),
                provider: spec.provider,
                roles,
                phase: phase_of(spec, observed.get(name)),
                target,
                model_id,
                aliases,
                upstream_models: spec.models.clone(),
            },
        );
    }
    let by_model = names
        .into_iter()
        .map(|(k, mut v)| {
            v.sort();
            v.dedup_by(|a, b| a.1 == b.1);
            (k, v.into_iter().map(|(_, s)| s).collect())
        })
        .collect();
    RoutingTable { routes, by_model }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Resolution, Role};

    fn n(s: &str) -> SlotName {
        SlotName::parse(s).unwrap()
    }

    fn table() -> RoutingTable {
        let mut d = DesiredState::default();
        let mut chat = SlotSpec::new(ProviderKind::LlamaCpp, Some("file:/m/Small.gguf"));
        chat.aliases = vec!["fast".into()];
        d.slots.insert(n("primary"), chat);
        d.slots.insert(
            n("embed"),
            SlotSpec::new(ProviderKind::LlamaCpp, Some("file:/m/Small.gguf")),
        );
        let mut up = SlotSpec::new(ProviderKind::OpenAiCompatible, None);
        up.upstream = Some("https://example.invalid/v1/".into());
        up.models = vec!["vendor/model".into()];
        d.slots.insert(n("cloud"), up);
        let ports = BTreeMap::from([(n("primary"), 9001), (n("embed"), 9002)]);
        routing_table(&d, &BTreeMap::new(), &ports)
    }

    #[test]
    fn names_aliases_and_model_ids_route() {
        let t = table();
        let slot = |m, role| match t.resolve(m, role) {
            Resolution::Found(r) => Some(r.slot.to_string()),
            _ => None,
        };
        assert_eq!(
            slot("primary", Some(Role::Chat)).as_deref(),
            Some("primary")
        );
        assert_eq!(slot("fast", Some(Role::Chat)).as_deref(), Some("primary"));
        assert_eq!(
            slot("vendor/model", Some(Role::Chat)).as_deref(),
            Some("cloud")
        );
        assert_eq!(slot("nope", None), None);
    }

    #[test]
    fn a_shared_model_id_resolves_by_the_endpoints_role() {
        let t = table();
        let Resolution::Found(r) = t.resolve("Small", Some(Role::Embeddings)) else {
            panic!()
        };
        assert_eq!(r.slot, n("embed"));
        let Resolution::Found(r) = t.resolve("Small", Some(Role::Chat)) else {
            panic!()
        };
        assert_eq!(r.slot, n("primary"));
    }

    #[test]
    fn a_slot_asked_for_another_role_is_a_wrong_role() {
        let t = table();
        assert!(matches!(
            t.resolve("primary", Some(Role::TextToSpeech)),
            Resolution::WrongRole(_)
        ));
    }

    #[test]
    fn upstream_base_urls_lose_their_trailing_slash() {
        let t = table();
        assert!(
            matches!(&t.routes[&n("cloud")].target, Target::Upstream { base_url, .. } if base_url == "https://example.invalid/v1")
        );
    }
}
