//! Rules that relate fields or slots to each other: built-in roles, provider capabilities,
//! required and misplaced keys, ports, memory and ambiguous model names. Each rule reports at
//! the most specific span it has: the offending value, else the offending key, else the slot.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::Range;

use super::diagnostic::Sink;
use super::read::Document;
use super::slot::SlotRead;
use crate::model::{ProviderKind, Role};

/// Keys that only mean something for `openai-compatible` slots.
pub(crate) const UPSTREAM_ONLY: [&str; 4] = ProviderKind::UPSTREAM_ONLY_FIELDS;

/// Keys that only mean something for slots that run a process.
pub(crate) const PROCESS_ONLY: [&str; 8] = ProviderKind::PROCESS_ONLY_FIELDS;

/// Check every cross-field and cross-slot rule.
pub(crate) fn check(sink: &mut Sink<'_>, doc: &Document) {
    for slot in &doc.slots {
        roles(sink, slot);
        required_keys(sink, slot);
        misplaced_keys(sink, slot);
        probe_role(sink, slot);
        sleep_provider(sink, slot);
        memory_fits(sink, doc, slot);
    }
    ports(sink, doc);
    model_names(sink, doc);
}

fn provider_list(role: Role) -> String {
    ProviderKind::ALL
        .into_iter()
        .filter(|p| p.roles().contains(&role))
        .map(ProviderKind::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

fn role_list(p: ProviderKind) -> String {
    p.roles()
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A built-in slot serves its built-in role with a provider that can; any slot's `role` must
/// be one its provider serves.
fn roles(sink: &mut Sink<'_>, slot: &SlotRead) {
    let provider = slot.spec.provider;
    let builtin = slot.builtin_role();
    if let Some(role) = builtin
        && !provider.roles().contains(&role)
    {
        sink.error(
            slot.value_span("provider"),
            slot.field_path("provider"),
            format!(
                "\"{}\" is the built-in {role} slot, and provider {:?} cannot serve {role} \
                 (it serves: {}); use one of: {}, or give this slot another name",
                slot.name,
                provider.as_str(),
                role_list(provider),
                provider_list(role)
            ),
        );
    }
    let Some(role) = slot.spec.role else { return };
    match builtin {
        Some(b) if b != role => sink.error(
            slot.value_span("role"),
            slot.field_path("role"),
            format!(
                "\"{}\" is the built-in {b} slot and always serves {b}; remove role or set it \
                 to {:?} (for a {role} slot, use another name)",
                slot.name,
                b.as_str()
            ),
        ),
        Some(_) => {}
        None if !provider.roles().contains(&role) => sink.error(
            slot.value_span("role"),
            slot.field_path("role"),
            format!(
                "provider {:?} cannot serve {role}; it serves: {} (providers that serve {role}: {})",
                provider.as_str(),
                role_list(provider),
                provider_list(role)
            ),
        ),
        None => {}
    }
}

/// `model` where the provider runs one; `upstream` for an external upstream.
fn required_keys(sink: &mut Sink<'_>, slot: &SlotRead) {
    let provider = slot.spec.provider;
    if provider.needs_model() && !slot.has("model") {
        sink.error(
            slot.name_span.clone(),
            slot.path.clone(),
            format!(
                "missing required key \"model\": provider {:?} needs a model to serve, like {}",
                provider.as_str(),
                model_example(provider)
            ),
        );
    }
    if !provider.runs_process() && !slot.has("upstream") {
        sink.error(
            slot.name_span.clone(),
            slot.path.clone(),
            format!(
                "missing required key \"upstream\": provider {:?} forwards to an external API; \
                 give its base URL, like \"https://openrouter.ai/api/v1\"",
                provider.as_str()
            ),
        );
    }
}

fn model_example(p: ProviderKind) -> &'static str {
    match p {
        ProviderKind::LlamaCpp => "\"hf:org/repo/file.gguf\" or \"file:/path/to/model.gguf\"",
        ProviderKind::Flm => "\"flm:llama3.2:1b\"",
        ProviderKind::Moonshine => "\"moonshine/base\"",
        ProviderKind::Kokoro => "\"kokoro-82m\"",
        ProviderKind::OpenAiCompatible => "\"gpt-4o-mini\"",
    }
}

/// Upstream settings on a local slot, or process settings on an upstream, are mistakes.
fn misplaced_keys(sink: &mut Sink<'_>, slot: &SlotRead) {
    let provider = slot.spec.provider;
    let (misplaced, why): (&[&str], String) = if provider.runs_process() {
        (
            &UPSTREAM_ONLY,
            format!(
                "only applies to provider \"openai-compatible\"; this slot's provider is {:?}",
                provider.as_str()
            ),
        )
    } else {
        (
            &PROCESS_ONLY,
            format!(
                "only applies to slots that run a process; provider {:?} runs none",
                provider.as_str()
            ),
        )
    };
    for key in misplaced {
        if let Some(spans) = slot.fields.get(key) {
            sink.error(spans.key.clone(), slot.field_path(key), why.clone());
        }
    }
}

/// Only llama.cpp can release its weights and keep its process.
fn sleep_provider(sink: &mut Sink<'_>, slot: &SlotRead) {
    let provider = slot.spec.provider;
    if slot.has("sleep_after") && provider.runs_process() && provider != ProviderKind::LlamaCpp {
        sink.error(
            slot.value_span("sleep_after"),
            slot.field_path("sleep_after"),
            format!(
                "provider {:?} cannot sleep (release its model and keep its process); only \
                 llama.cpp can. Remove sleep_after, or use idle_timeout with unload_idle",
                provider.as_str()
            ),
        );
    }
}

/// The answer check sends a chat completion: only chat slots can take it.
fn probe_role(sink: &mut Sink<'_>, slot: &SlotRead) {
    let role = slot.spec.effective_role(slot.builtin_role());
    if slot.has("probe") && slot.spec.provider.runs_process() && role != Role::Chat {
        sink.error(
            slot.value_span("probe"),
            slot.field_path("probe"),
            format!(
                "the answer check sends a chat completion, and this slot serves {role}; remove                  probe (it only applies to chat slots)"
            ),
        );
    }
}

/// A slot whose own estimate exceeds the whole budget could never load.
fn memory_fits(sink: &mut Sink<'_>, doc: &Document, slot: &SlotRead) {
    let (Some(mem), Some(budget)) = (slot.spec.memory, doc.state.server.memory_budget) else {
        return;
    };
    if mem > budget {
        sink.error(
            slot.value_span("memory"),
            slot.field_path("memory"),
            format!(
                "{mem} is more than server.memory_budget ({budget}), so this slot could never \
                 load; lower it or raise the budget"
            ),
        );
    }
}

/// The port range is ordered; pinned ports lie in it and are pinned once; the slots that run a
/// process fit in it.
fn ports(sink: &mut Sink<'_>, doc: &Document) {
    let server = &doc.state.server;
    let [lo, hi] = server.port_range;
    let range_span = doc
        .server
        .get("port_range")
        .map(|s| s.value.clone())
        .unwrap_or_default();
    if lo > hi {
        sink.error(
            range_span,
            "server.port_range",
            format!("is reversed: {lo} is above {hi}; write [low, high], like [{hi}, {lo}]"),
        );
        return;
    }

    // hal0's own listener must not be handed to a slot. Blame listen if the file sets it,
    // else the range that was widened over the default listen port.
    if let Ok(addr) = server.listen.parse::<SocketAddr>()
        && (lo..=hi).contains(&addr.port())
    {
        let port = addr.port();
        let (key, message) = if doc.server.contains_key("listen") {
            (
                "listen",
                format!(
                    "port {port} lies inside server.port_range [{lo}, {hi}], which is reserved \
                     for slots; listen on a port outside the range"
                ),
            )
        } else {
            (
                "port_range",
                format!(
                    "[{lo}, {hi}] includes port {port}, where hal0 itself listens \
                     (server.listen); keep the range clear of it"
                ),
            )
        };
        sink.error(
            doc.server
                .get(key)
                .map(|s| s.value.clone())
                .unwrap_or_default(),
            format!("server.{key}"),
            message,
        );
    }

    let mut pinned: BTreeMap<u16, &SlotRead> = BTreeMap::new();
    for slot in doc.slots.iter().filter(|s| s.spec.provider.runs_process()) {
        let Some(port) = slot.spec.port else { continue };
        let span = slot.value_span("port");
        if !(lo..=hi).contains(&port) {
            sink.error(
                span,
                slot.field_path("port"),
                format!(
                    "port {port} is outside server.port_range [{lo}, {hi}]; pin a port inside \
                     the range or widen the range"
                ),
            );
        } else if let Some(first) = pinned.get(&port) {
            sink.error(
                span,
                slot.field_path("port"),
                format!(
                    "port {port} is already pinned by slot \"{}\"; each slot needs its own port",
                    first.name
                ),
            );
        } else {
            pinned.insert(port, slot);
        }
    }

    let capacity = server.port_capacity();
    let over = doc
        .slots
        .iter()
        .filter(|s| s.spec.provider.runs_process())
        .enumerate()
        .find(|(i, _)| *i >= capacity);
    if let Some((i, slot)) = over {
        sink.error(
            slot.name_span.clone(),
            slot.path.clone(),
            format!(
                "slot \"{}\" is slot number {} that runs a process, but server.port_range \
                 [{lo}, {hi}] holds only {capacity} port(s); widen port_range or remove slots \
                 (openai-compatible slots need no port)",
                slot.name,
                i + 1
            ),
        );
    }
}

/// Each name a client may send as `model` routes to exactly one slot. Model ids are not
/// claims: two slots may serve the same model file (a chat slot and an embedding slot on one
/// GGUF); the gateway then picks the one whose role serves the endpoint, and the slot names and
/// aliases stay unambiguous.
fn model_names(sink: &mut Sink<'_>, doc: &Document) {
    // Slot names are claimed first: if an alias collides with a slot name, the alias is wrong.
    let mut claimed: BTreeMap<String, (&SlotRead, &'static str)> = doc
        .slots
        .iter()
        .map(|s| (s.name.clone(), (s, "slot name")))
        .collect();

    struct Claim<'a> {
        slot: &'a SlotRead,
        name: String,
        kind: &'static str,
        span: Range<usize>,
        path: String,
    }
    let mut claims: Vec<Claim<'_>> = Vec::new();
    for slot in &doc.slots {
        for (key, kind, list) in [
            ("aliases", "alias", &slot.aliases),
            ("models", "upstream model", &slot.models),
        ] {
            for (i, item) in list.iter().enumerate() {
                claims.push(Claim {
                    slot,
                    name: item.value.clone(),
                    kind,
                    span: item.span.clone(),
                    path: format!("{}[{i}]", slot.field_path(key)),
                });
            }
        }
    }
    claims.sort_by_key(|c| c.span.start);

    for c in claims {
        match claimed.get(&c.name) {
            // The same slot naming itself twice (an alias equal to its model id) is harmless.
            Some((owner, _)) if owner.name == c.slot.name => {}
            Some((owner, how)) => sink.error(
                c.span,
                c.path,
                format!(
                    "{} {:?} is already claimed by slot \"{}\" (as its {how}); requests for \
                     this model name would be ambiguous, so give it to one slot only",
                    c.kind, c.name, owner.name
                ),
            ),
            None => {
                claimed.insert(c.name, (c.slot, c.kind));
            }
        }
    }
}
