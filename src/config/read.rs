//! Reading the top level, `[server]` and `[providers."…"]` of a parsed document into the typed
//! model, remembering where each value was written so later rules can point at it.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::diagnostic::Sink;
use super::slot::{self, SlotRead};
use super::spans::{Field, KeySpans, Table, display_key};
use crate::core::suggest;
use crate::model::{
    DesiredState, HumanDuration, ProviderKind, ProviderOverride, ServerSettings, SlotName,
};

/// The keys allowed at the top level of hal0.toml.
pub(crate) const TOP_KEYS: [&str; 3] = ["server", "providers", "slots"];

/// The keys allowed in `[server]`; one per `ServerSettings` field.
pub(crate) const SERVER_KEYS: [&str; 24] = [
    "listen",
    "port_range",
    "models_dir",
    "memory_budget",
    "api_keys",
    "api_keys_file",
    "admin_token_env",
    "load_timeout",
    "stop_grace",
    "unload_idle",
    "max_queue",
    "max_wait",
    "max_body",
    "pull_on_load",
    "hf_endpoint",
    "state_dir",
    "allowed_hosts",
    "header_timeout",
    "body_timeout",
    "client_idle_timeout",
    "max_connections",
    "workers",
    "drain_timeout",
    "restart_drain",
];

/// The keys allowed in `[providers."<name>"]`; one per `ProviderOverride` field.
pub(crate) const PROVIDER_KEYS: [&str; 2] = ["command", "env"];

/// A document read as far as it could be: the typed state (holding only the slots that could
/// be read) and where things were written.
pub(crate) struct Document {
    pub state: DesiredState,
    /// Where each `[server]` key and value was written.
    pub server: BTreeMap<&'static str, KeySpans>,
    /// Every slot whose provider could be read (its name may be invalid), in file order.
    pub slots: Vec<SlotRead>,
}

/// Read a whole document. Problems go to `sink`; whatever could be read is returned so that the
/// cross-field rules can still look for more problems.
pub(crate) fn document(sink: &mut Sink<'_>, root: &Table<'_, '_>) -> Document {
    root.deny_unknown(sink, &TOP_KEYS);
    let mut doc = Document {
        state: DesiredState::default(),
        server: BTreeMap::new(),
        slots: Vec::new(),
    };
    if let Some(t) = sub_table(sink, root, "server") {
        server(sink, &t, &mut doc);
    }
    if let Some(t) = sub_table(sink, root, "providers") {
        doc.state.providers = providers(sink, &t);
    }
    if let Some(t) = sub_table(sink, root, "slots") {
        for (name, node) in t.in_file_order() {
            if let Some(read) = slot::read(sink, &t, name, node) {
                doc.slots.push(read);
            }
        }
    }
    doc.state.slots = doc
        .slots
        .iter()
        .filter_map(|s| Some((SlotName::parse(&s.name).ok()?, s.spec.clone())))
        .collect();
    doc
}

/// `root.key` as a table, if present (an error if it is not a table).
fn sub_table<'a, 'i>(
    sink: &mut Sink<'_>,
    root: &Table<'a, 'i>,
    key: &str,
) -> Option<Table<'a, 'i>> {
    let f = root.field(key)?;
    Table::of(sink, f.node, f.path)
}

fn server(sink: &mut Sink<'_>, t: &Table<'_, '_>, doc: &mut Document) {
    t.deny_unknown(sink, &SERVER_KEYS);
    let s: &mut ServerSettings = &mut doc.state.server;
    for key in SERVER_KEYS {
        let Some(f) = t.field(key) else { continue };
        doc.server.insert(key, f.spans());
        match key {
            "listen" => set(&mut s.listen, listen(sink, &f)),
            "port_range" => set(&mut s.port_range, port_range(sink, &f)),
            "models_dir" => set(&mut s.models_dir, f.non_empty_string(sink)),
            "memory_budget" => s.memory_budget = f.byte_size(sink),
            "api_keys" => set(&mut s.api_keys, api_keys(sink, &f)),
            "api_keys_file" => s.api_keys_file = f.non_empty_string(sink),
            "admin_token_env" => s.admin_token_env = f.env_var_name(sink),
            "load_timeout" => set(&mut s.load_timeout, load_timeout(sink, &f)),
            "stop_grace" => set(&mut s.stop_grace, f.duration(sink)),
            "unload_idle" => set(&mut s.unload_idle, f.bool(sink)),
            "max_queue" => set(
                &mut s.max_queue,
                f.integer_in(sink, 1, 100_000).map(|n| n as u32),
            ),
            "max_wait" => set(&mut s.max_wait, f.duration(sink)),
            "max_body" => set(&mut s.max_body, f.byte_size(sink)),
            "pull_on_load" => set(&mut s.pull_on_load, f.bool(sink)),
            "hf_endpoint" => s.hf_endpoint = f.non_empty_string(sink),
            "state_dir" => s.state_dir = f.non_empty_string(sink),
            "allowed_hosts" => set(&mut s.allowed_hosts, allowed_hosts(sink, &f)),
            "header_timeout" => set(&mut s.header_timeout, positive_duration(sink, &f)),
            "body_timeout" => set(&mut s.body_timeout, positive_duration(sink, &f)),
            "client_idle_timeout" => set(&mut s.client_idle_timeout, positive_duration(sink, &f)),
            "max_connections" => set(
                &mut s.max_connections,
                f.integer_in(sink, 1, 1_000_000).map(|n| n as u32),
            ),
            "workers" => {
                if let Some(n) = f.integer_or_auto(sink, 1, 1024) {
                    s.workers = n.map(|n| n as u32);
                }
            }
            "drain_timeout" => set(&mut s.drain_timeout, f.duration(sink)),
            "restart_drain" => set(&mut s.restart_drain, f.duration(sink)),
            _ => {}
        }
    }
}

/// Overwrite a default only with a value that was read successfully.
fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

fn listen(sink: &mut Sink<'_>, f: &Field<'_, '_>) -> Option<String> {
    let s = f.string(sink)?;
    if s.parse::<SocketAddr>().is_err() {
        f.error(
            sink,
            format!(
                "{s:?} is not a socket address; write an IP address and a port, like \
                 \"127.0.0.1:8080\", \"0.0.0.0:8080\" or \"[::1]:8080\""
            ),
        );
        return None;
    }
    Some(s)
}

/// A zero load timeout would fail every load at once.
fn load_timeout(sink: &mut Sink<'_>, f: &Field<'_, '_>) -> Option<HumanDuration> {
    let d = f.duration(sink)?;
    if d.as_duration().is_zero() {
        f.error(
            sink,
            "must be longer than 0s: every load would time out at once",
        );
        return None;
    }
    Some(d)
}

/// A timeout of 0s would cut every connection at once.
fn positive_duration(sink: &mut Sink<'_>, f: &Field<'_, '_>) -> Option<HumanDuration> {
    let d = f.duration(sink)?;
    if d.as_duration().is_zero() {
        f.error(sink, "must be longer than 0s");
        return None;
    }
    Some(d)
}

/// Host names: letters, digits, `-`, `.`, optionally starting with `*.`; no port, no scheme.
fn allowed_hosts(sink: &mut Sink<'_>, f: &Field<'_, '_>) -> Option<Vec<String>> {
    let names = f.string_array(sink)?;
    let mut ok = true;
    for (i, n) in names.iter().enumerate() {
        let name = n.value.strip_prefix("*.").unwrap_or(&n.value);
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !valid {
            ok = false;
            sink.error(
                n.span.clone(),
                format!("{}[{i}]", f.path),
                format!(
                    "{:?} is not a host name; write a name like \"hal0.lan\" or \"*.example.org\" \
                     (no scheme, no port)",
                    n.value
                ),
            );
        }
    }
    ok.then(|| {
        names
            .into_iter()
            .map(|n| n.value.to_ascii_lowercase())
            .collect()
    })
}

fn port_range(sink: &mut Sink<'_>, f: &Field<'_, '_>) -> Option<[u16; 2]> {
    let ports = f.array(
        sink,
        "an array of two ports, like [8081, 8099]",
        |sink, node, path| {
            super::spans::integer_in(sink, node, &path, 1, 65535)
                .and_then(|n| u16::try_from(n).ok())
        },
    )?;
    match ports[..] {
        [lo, hi] => Some([lo, hi]),
        _ => {
            f.error(
                sink,
                format!(
                    "expected two ports [low, high], like [8081, 8099], found {} value(s)",
                    ports.len()
                ),
            );
            None
        }
    }
}

fn api_keys(sink: &mut Sink<'_>, f: &Field<'_, '_>) -> Option<Vec<String>> {
    let names = f.string_array(sink)?;
    let mut ok = true;
    for (i, n) in names.iter().enumerate() {
        let path = format!("{}[{i}]", f.path);
        ok &= super::spans::check_env_var_name(sink, &n.value, n.span.clone(), &path);
    }
    ok.then(|| names.into_iter().map(|n| n.value).collect())
}

fn providers(sink: &mut Sink<'_>, t: &Table<'_, '_>) -> BTreeMap<ProviderKind, ProviderOverride> {
    let mut out = BTreeMap::new();
    for (name, node) in t.in_file_order() {
        let path = format!("providers.{}", display_key(name.value));
        let Some(kind) = ProviderKind::from_name(name.value) else {
            let names = ProviderKind::ALL.map(ProviderKind::as_str);
            sink.error(
                name.span.clone(),
                path,
                format!(
                    "unknown provider {:?}; expected one of: {}{}",
                    name.value,
                    names.join(", "),
                    suggest::did_you_mean(name.value, names)
                ),
            );
            continue;
        };
        if !kind.runs_process() {
            sink.error(
                name.span.clone(),
                path,
                format!(
                    "provider {:?} runs no process, so there is nothing to override; \
                     configure each upstream in its slot (upstream, api_key_env)",
                    kind.as_str()
                ),
            );
            continue;
        }
        let Some(table) = Table::of(sink, node, path) else {
            continue;
        };
        out.insert(kind, provider_override(sink, &table));
    }
    out
}

fn provider_override(sink: &mut Sink<'_>, t: &Table<'_, '_>) -> ProviderOverride {
    t.deny_unknown(sink, &PROVIDER_KEYS);
    let mut o = ProviderOverride::default();
    if let Some(f) = t.field("command") {
        o.command = command(sink, &f);
    }
    if let Some(f) = t.field("env") {
        o.env = f.string_map(sink).unwrap_or_default();
    }
    o
}

/// An argv prefix: at least the program.
fn command(sink: &mut Sink<'_>, f: &Field<'_, '_>) -> Option<Vec<String>> {
    let argv = f.string_array(sink)?;
    if argv.is_empty() {
        f.error(
            sink,
            "is empty; give at least the program to run, like [\"/opt/llama.cpp/bin/llama-server\"], \
             or remove the key to use the default",
        );
        return None;
    }
    Some(argv.into_iter().map(|a| a.value).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::spans::schema_properties;

    #[test]
    fn key_lists_match_the_model_fields() {
        for (keys, schema) in [
            (&SERVER_KEYS[..], schemars::schema_for!(ServerSettings)),
            (&PROVIDER_KEYS[..], schemars::schema_for!(ProviderOverride)),
            (&TOP_KEYS[..], schemars::schema_for!(DesiredState)),
        ] {
            let mut keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
            keys.sort();
            assert_eq!(keys, schema_properties(&schema));
        }
    }
}
