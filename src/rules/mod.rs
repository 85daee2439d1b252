//! The slot rules, on the typed [`SlotSpec`] and on the set of slots. One home for them:
//! hal0.toml (the file source, the management API and the CLI all write through
//! `config::parse`), a Kubernetes `Slot` (the controller and the in-cluster gateway) and the
//! generated CRD schema (`crd::schema`, from the tables here) all check the same rules.
//!
//! Pure: typed values in, typed [`Violation`]s out. A violation names the slot and the part of
//! it at fault ([`At`]); each reader maps that back to where the user wrote it: the TOML reader
//! to a file, line and column (`slots.chat.memory`), a Slot to its field (`spec.memory`).
//!
//! What is NOT here: reading text into types (TOML syntax, types, unknown keys, enum names,
//! durations and sizes), which belongs to each reader, and the model-ref syntax, which belongs
//! to `providers`.
//!
//! Layout:
//! - `mod.rs`  [`Violation`], [`At`], the field tables the CRD schema is generated from
//! - `slot`    one slot: values (non-empty, URLs, ranges) and fields against each other
//! - `set`     the set of slots and the server settings: ports, memory budget, model names
//! - `url`     upstream URLs: scheme and host, no credentials; [`redact_url`]

mod set;
mod slot;
mod url;

#[cfg(test)]
mod tests;

use std::fmt;
use std::ops::RangeInclusive;

use crate::model::{BUILTIN_SLOTS, ProviderKind, Role, ServerSettings, SlotSpec};

pub use set::{Claim, check_set, claims};
pub use slot::{
    ENV_VAR_NAME_MESSAGE, ENV_VAR_PATTERN, check_slot, is_env_var_name, model_example, role_list,
};
pub use url::{REDACTED, redact_url};

/// Every field of a slot (`[slots.<name>]` keys, a Slot's `spec` fields besides `replicas`),
/// in the order hal0 writes them.
pub const SLOT_FIELDS: [&str; 20] = [
    "provider",
    "model",
    "role",
    "idle_timeout",
    "device",
    "args",
    "env",
    "aliases",
    "port",
    "autoload",
    "priority",
    "pinned",
    "min_residency",
    "sleep_after",
    "probe",
    "memory",
    "upstream",
    "api_key_env",
    "auth",
    "models",
];

/// The fields that are lists or maps: unset when empty.
pub const COLLECTION_FIELDS: [&str; 4] = ["args", "env", "aliases", "models"];

/// Fields that only mean something for providers that forward to an external API.
pub const UPSTREAM_ONLY: [&str; 4] = ["upstream", "api_key_env", "auth", "models"];

/// Fields that only mean something for providers that run a process.
pub const PROCESS_ONLY: [&str; 8] = [
    "port",
    "args",
    "env",
    "device",
    "memory",
    "min_residency",
    "sleep_after",
    "probe",
];

/// Fields a Slot may not set in a cluster, and why.
pub const CLUSTER_FORBIDDEN: [(&str, &str); 1] = [(
    "port",
    "not used in a cluster: every slot pod listens on the controller's port behind the \
     Slot's Service; remove it",
)];

/// The ports a slot may pin.
pub const PORT_RANGE: RangeInclusive<u16> = 1..=65535;

/// A slot's `priority`.
pub const PRIORITY_RANGE: RangeInclusive<u8> = 0..=100;

/// Whether `field` requires a value for `provider`: what [`check_slot`] reports as missing.
pub fn required(provider: ProviderKind, field: &str) -> bool {
    match field {
        "provider" => true,
        "model" => provider.needs_model(),
        "upstream" => !provider.runs_process(),
        _ => false,
    }
}

/// Whether `field` may be set for `provider` (required or optional).
pub fn applies(provider: ProviderKind, field: &str) -> bool {
    if provider.runs_process() {
        !UPSTREAM_ONLY.contains(&field)
    } else {
        !PROCESS_ONLY.contains(&field)
    }
}

/// Providers that can release their model and keep their process (`sleep_after`).
pub fn can_sleep(provider: ProviderKind) -> bool {
    provider == ProviderKind::LlamaCpp
}

/// The role a built-in slot name must serve, or `None` for any other name.
pub fn builtin_role(name: &str) -> Option<Role> {
    BUILTIN_SLOTS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, r)| *r)
}

/// Whether `field` is set in `spec`: present, and non-empty for lists and maps, `true` for
/// flags. Unknown field names are never set.
pub fn is_set(spec: &SlotSpec, field: &str) -> bool {
    match field {
        "provider" => true,
        "model" => spec.model.is_some(),
        "role" => spec.role.is_some(),
        "idle_timeout" => spec.idle_timeout.is_some(),
        "device" => spec.device.is_some(),
        "args" => !spec.args.is_empty(),
        "env" => !spec.env.is_empty(),
        "aliases" => !spec.aliases.is_empty(),
        "port" => spec.port.is_some(),
        "autoload" => spec.autoload,
        "priority" => spec.priority.is_some(),
        "pinned" => spec.pinned,
        "min_residency" => spec.min_residency.is_some(),
        "sleep_after" => spec.sleep_after.is_some(),
        "probe" => spec.probe.is_some(),
        "memory" => spec.memory.is_some(),
        "upstream" => spec.upstream.is_some(),
        "api_key_env" => spec.api_key_env.is_some(),
        "auth" => spec.auth.is_some(),
        "models" => !spec.models.is_empty(),
        _ => false,
    }
}

/// Where in a slot (or in the server settings) a rule is broken. Field names are the slot's
/// field names (`memory`), the same in hal0.toml and in a Slot's `spec`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum At {
    /// The slot's name.
    Name,
    /// The slot as a whole (one slot too many for the port range).
    Slot,
    /// A field the slot must set and does not.
    Missing(&'static str),
    /// A field the slot must not set: its presence is the problem, not its value.
    Key(&'static str),
    /// A field's value.
    Value(&'static str),
    /// One element of a list field: `aliases[2]`.
    Item(&'static str, usize),
    /// One entry of a table field: `probe.prompt`.
    Entry(&'static str, &'static str),
    /// A server setting (`server.port_range`): not part of any slot.
    Server(&'static str),
}

impl At {
    /// The field at fault, if the violation is about one field of a slot.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            At::Missing(f) | At::Key(f) | At::Value(f) | At::Item(f, _) | At::Entry(f, _) => {
                Some(f)
            }
            At::Name | At::Slot | At::Server(_) => None,
        }
    }

    /// The path below the slot: `memory`, `aliases[2]`, `probe.prompt`; empty for the slot
    /// itself and its name; `server.<key>` for a server setting.
    pub fn path(&self) -> String {
        match self {
            At::Name | At::Slot => String::new(),
            At::Missing(f) | At::Key(f) | At::Value(f) => f.to_string(),
            At::Item(f, i) => format!("{f}[{i}]"),
            At::Entry(f, k) => format!("{f}.{k}"),
            At::Server(k) => format!("server.{k}"),
        }
    }
}

/// One broken rule: which slot, where in it, and what is wrong and what to do instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The slot as named (the name itself may be what is wrong); `None` for server settings.
    pub slot: Option<String>,
    pub at: At,
    pub message: String,
}

impl Violation {
    fn slot(name: &str, at: At, message: impl Into<String>) -> Self {
        Violation {
            slot: Some(name.to_string()),
            at,
            message: message.into(),
        }
    }

    fn server(key: &'static str, message: impl Into<String>) -> Self {
        Violation {
            slot: None,
            at: At::Server(key),
            message: message.into(),
        }
    }

    /// How a Kubernetes Slot names the part at fault: `spec.memory`, `metadata.name`, `spec`.
    pub fn spec_path(&self) -> String {
        match &self.at {
            At::Name => "metadata.name".to_string(),
            At::Slot => "spec".to_string(),
            at => format!("spec.{}", at.path()),
        }
    }
}

/// `slots.chat.memory: message` (the hal0.toml path; readers add where it was written).
impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.at.path();
        match (&self.slot, path.is_empty()) {
            (Some(s), true) => write!(f, "slots.{s}: {}", self.message),
            (Some(s), false) => write!(f, "slots.{s}.{path}: {}", self.message),
            (None, _) => write!(f, "{path}: {}", self.message),
        }
    }
}

/// Every rule for a whole configuration: each slot on its own, then the set. `slots` in the
/// order they were written (the first to pin a port or claim a name keeps it).
pub fn check_all(server: &ServerSettings, slots: &[(&str, &SlotSpec)]) -> Vec<Violation> {
    let mut out: Vec<Violation> = slots
        .iter()
        .flat_map(|(name, spec)| check_slot(name, spec))
        .collect();
    out.extend(check_set(server, slots));
    out
}

/// The rules for a Kubernetes Slot: the slot's own rules (its name is `metadata.name`), plus
/// the fields a cluster has no use for ([`CLUSTER_FORBIDDEN`]). Rules on the set of slots do
/// not apply one by one (Slots claiming one name are handled across the namespace).
pub fn check_in_cluster(name: &str, spec: &SlotSpec) -> Vec<Violation> {
    let mut out = check_slot(name, spec);
    for (field, why) in CLUSTER_FORBIDDEN {
        if is_set(spec, field) {
            out.retain(|v| v.at.field() != Some(field));
            out.push(Violation::slot(name, At::Key(field), why));
        }
    }
    out
}
