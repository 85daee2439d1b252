//! The rules of the set of slots and the server settings they share: the port range and the
//! ports slots pin, the memory budget, and the model names clients send.

use std::collections::BTreeMap;

use super::{At, Violation};
use crate::model::{ServerSettings, SlotSpec};

/// Every rule across slots. `slots` in the order they were written: the first slot to pin a
/// port or claim a name keeps it, and later ones are reported.
pub fn check_set(server: &ServerSettings, slots: &[(&str, &SlotSpec)]) -> Vec<Violation> {
    let mut out = Vec::new();
    memory_fits(server, slots, &mut out);
    ports(server, slots, &mut out);
    model_names(slots, &mut out);
    out
}

/// A slot whose own estimate exceeds the whole budget could never load.
fn memory_fits(server: &ServerSettings, slots: &[(&str, &SlotSpec)], out: &mut Vec<Violation>) {
    let Some(budget) = server.memory_budget else {
        return;
    };
    for (name, spec) in slots {
        if let Some(mem) = spec.memory
            && mem > budget
        {
            out.push(Violation::slot(
                name,
                At::Value("memory"),
                format!(
                    "{mem} is more than server.memory_budget ({budget}), so this slot could \
                     never load; lower it or raise the budget"
                ),
            ));
        }
    }
}

/// The port of a `host:port` listen address (`[::1]:8080` included).
fn listen_port(listen: &str) -> Option<u16> {
    listen.rsplit_once(':')?.1.parse().ok()
}

/// The port range is ordered; hal0's own listener is outside it; pinned ports lie in it and
/// are pinned once; the slots that run a process fit in it.
fn ports(server: &ServerSettings, slots: &[(&str, &SlotSpec)], out: &mut Vec<Violation>) {
    let [lo, hi] = server.port_range;
    if lo > hi {
        out.push(Violation::server(
            "port_range",
            format!("is reversed: {lo} is above {hi}; write [low, high], like [{hi}, {lo}]"),
        ));
        return;
    }

    // hal0's own listener must not be handed to a slot. Blame listen if it was changed from
    // the default, else the range that was widened over the default listen port.
    if let Some(port) = listen_port(&server.listen)
        && (lo..=hi).contains(&port)
    {
        if server.listen != ServerSettings::default().listen {
            out.push(Violation::server(
                "listen",
                format!(
                    "port {port} lies inside server.port_range [{lo}, {hi}], which is reserved \
                     for slots; listen on a port outside the range"
                ),
            ));
        } else {
            out.push(Violation::server(
                "port_range",
                format!(
                    "[{lo}, {hi}] includes port {port}, where hal0 itself listens \
                     (server.listen); keep the range clear of it"
                ),
            ));
        }
    }

    let running: Vec<&(&str, &SlotSpec)> = slots
        .iter()
        .filter(|(_, s)| s.provider.runs_process())
        .collect();
    let mut pinned: BTreeMap<u16, &str> = BTreeMap::new();
    for (name, spec) in &running {
        let Some(port) = spec.port else { continue };
        if !(lo..=hi).contains(&port) {
            out.push(Violation::slot(
                name,
                At::Value("port"),
                format!(
                    "port {port} is outside server.port_range [{lo}, {hi}]; pin a port inside \
                     the range or widen the range"
                ),
            ));
        } else if let Some(first) = pinned.get(&port) {
            out.push(Violation::slot(
                name,
                At::Value("port"),
                format!(
                    "port {port} is already pinned by slot \"{first}\"; each slot needs its own \
                     port"
                ),
            ));
        } else {
            pinned.insert(port, name);
        }
    }

    let capacity = server.port_capacity();
    if let Some((name, _)) = running.get(capacity) {
        out.push(Violation::slot(
            name,
            At::Slot,
            format!(
                "slot \"{name}\" is slot number {} that runs a process, but server.port_range \
                 [{lo}, {hi}] holds only {capacity} port(s); widen port_range or remove slots \
                 (openai-compatible slots need no port)",
                capacity + 1
            ),
        ));
    }
}

/// One model name a slot claims: its own name, an alias, or an upstream model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub name: String,
    /// `slot name`, `alias` or `upstream model`.
    pub kind: &'static str,
    /// Where in the slot: `At::Name`, `At::Item("aliases", i)` or `At::Item("models", i)`.
    pub at: At,
}

/// The names a slot claims, its own name first. An alias or upstream model equal to the slot's
/// own name claims nothing more (it is harmless), so it is left out.
pub fn claims<'a>(
    name: &str,
    aliases: impl IntoIterator<Item = &'a str>,
    models: impl IntoIterator<Item = &'a str>,
) -> Vec<Claim> {
    let mut out = vec![Claim {
        name: name.to_string(),
        kind: "slot name",
        at: At::Name,
    }];
    let lists: [(&'static str, &'static str, Vec<&str>); 2] = [
        ("aliases", "alias", aliases.into_iter().collect()),
        ("models", "upstream model", models.into_iter().collect()),
    ];
    for (field, kind, items) in lists {
        for (i, item) in items.into_iter().enumerate() {
            if item != name {
                out.push(Claim {
                    name: item.to_string(),
                    kind,
                    at: At::Item(field, i),
                });
            }
        }
    }
    out
}

/// Each name a client may send as `model` routes to exactly one slot. Model ids are not
/// claims: two slots may serve the same model file (a chat slot and an embedding slot on one
/// GGUF); the gateway then picks the one whose role serves the endpoint, and the slot names and
/// aliases stay unambiguous. Slot names are claimed first: if an alias collides with a slot
/// name, the alias is wrong.
fn model_names(slots: &[(&str, &SlotSpec)], out: &mut Vec<Violation>) {
    let mut claimed: BTreeMap<String, (&str, &'static str)> = slots
        .iter()
        .map(|(name, _)| (name.to_string(), (*name, "slot name")))
        .collect();
    for (name, spec) in slots {
        let all = claims(
            name,
            spec.aliases.iter().map(String::as_str),
            spec.models.iter().map(String::as_str),
        );
        for c in all.into_iter().skip(1) {
            match claimed.get(&c.name) {
                // The same slot naming one name twice (an alias equal to its model) is harmless.
                Some((owner, _)) if owner == name => {}
                Some((owner, how)) => out.push(Violation::slot(
                    name,
                    c.at,
                    format!(
                        "{} {:?} is already claimed by slot \"{owner}\" (as its {how}); requests \
                         for this model name would be ambiguous, so give it to one slot only",
                        c.kind, c.name
                    ),
                )),
                None => {
                    claimed.insert(c.name, (name, c.kind));
                }
            }
        }
    }
}
