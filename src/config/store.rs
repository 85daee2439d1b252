//! The one way hal0 itself writes `hal0.toml` (the API, the dashboard, `hal0 slot add`): edit a
//! slot table with `toml_edit` so the user's comments, ordering and formatting stay, validate the
//! result with [`super::parse`] (the same rules as every read), and replace the file atomically
//! (temp file + fsync + exchange + fsync of the directory; see [`super::replace`]).
//!
//! Optimistic concurrency: a [`Revision`] is a hash of the file's bytes, so it changes with any
//! edit, by hand or by hal0, and means the same to every process. A write names the revision it
//! was based on; if the file changed since, the write fails with [`StoreError::Stale`] and the
//! caller re-reads instead of overwriting someone's edit. The caller (the API) applies the
//! validated result at once; the file watcher then sees a file it already applied.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use sha2::{Digest, Sha256};
use toml_edit::{Array, DocumentMut, InlineTable, Item, Table, Value};

use super::ConfigErrors;
use super::replace::{self, Replaced};
use super::show::REDACTED;
use super::slot::SLOT_KEYS;
use crate::model::{DesiredState, NameError, SlotName};

/// A hash of the config file's bytes: equal revisions mean identical files.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Revision(pub String);

impl Revision {
    pub fn of(text: &str) -> Self {
        let digest = Sha256::digest(text.as_bytes());
        let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        Revision(hex)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The file as it is now.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub text: String,
    pub revision: Revision,
}

/// A change to one `[slots.<name>]` table. Fields are the slot's TOML keys with JSON values
/// (strings, numbers, booleans, arrays, objects for `env`).
#[derive(Debug, Clone)]
pub enum SlotChange {
    /// Add a slot that does not exist yet.
    Create { fields: Map<String, Json> },
    /// Replace every field of an existing slot (keys not given are removed); a key that stays
    /// keeps its comment.
    Replace { fields: Map<String, Json> },
    /// Change only the given fields; `null` removes a key.
    Merge { fields: Map<String, Json> },
    /// Remove the slot's table (with the comment above it).
    Delete,
}

/// What a successful write produced.
#[derive(Debug, Clone)]
pub struct Written {
    pub revision: Revision,
    /// The file's new text.
    pub text: String,
    /// The validated new contents, as the file source will read them.
    pub state: DesiredState,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{}: cannot read the config file: {source}", path.display())]
    ReadFailed {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: cannot write the config file: {source}", path.display())]
    WriteFailed {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the config file changed since revision {expected} (it is now {current}); reload and try again"
    )]
    Stale {
        expected: Revision,
        current: Revision,
    },
    #[error("{0}")]
    InvalidName(#[from] NameError),
    #[error("a slot named {0:?} already exists")]
    SlotExists(String),
    #[error("no slot named {0:?} in the config file")]
    SlotNotFound(String),
    #[error("{field}: {message}")]
    BadField { field: String, message: String },
    /// The edit would leave the file invalid (or it already is and the edit does not fix it).
    #[error("the change would make the config invalid:\n{0}")]
    Invalid(ConfigErrors),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Reads and writes one config file.
#[derive(Debug)]
pub struct ConfigStore {
    /// The file as named to hal0 (messages, validation).
    path: PathBuf,
    /// Serialises writes from this process: compare-revision-then-rename must not interleave.
    /// A std `Mutex`: writes are short blocking file operations, never held across an await.
    lock: Mutex<()>,
}

impl ConfigStore {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        ConfigStore {
            path: path.into(),
            lock: Mutex::new(()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn read(&self) -> Result<Snapshot> {
        let text =
            std::fs::read_to_string(&self.path).map_err(|source| StoreError::ReadFailed {
                path: self.path.clone(),
                source,
            })?;
        let revision = Revision::of(&text);
        Ok(Snapshot { text, revision })
    }

    /// Applies `change` to slot `name` if the file is still at `expected` (any revision when
    /// `None`), validates the result and writes it atomically.
    ///
    /// An edit by hand that lands between the read and the write is never overwritten: the
    /// replace is an exchange that shows what it displaced, and a displaced edit is put back.
    /// The change is then tried again on the new text (or refused as stale when the caller named
    /// a revision, which the file no longer is at).
    pub fn apply(
        &self,
        name: &str,
        change: &SlotChange,
        expected: Option<&Revision>,
    ) -> Result<Written> {
        SlotName::parse(name)?;
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut last = None;
        for _ in 0..MAX_ATTEMPTS {
            let before = self.read()?;
            check_revision(expected, &before.revision)?;
            let text = edit(&self.path, &before.text, name, change)?;
            let state = super::parse(&self.path, &text).map_err(StoreError::Invalid)?;
            let replaced = replace::replace_if_unchanged(&self.path, &before.text, &text).map_err(
                |source| StoreError::WriteFailed {
                    path: self.path.clone(),
                    source,
                },
            )?;
            if replaced == Replaced::Done {
                return Ok(Written {
                    revision: Revision::of(&text),
                    text,
                    state,
                });
            }
            tracing::info!(
                "{}: edited by someone else while hal0 was writing it; trying again on the new text",
                self.path.display()
            );
            last = Some(before.revision);
        }
        let current = self.read()?.revision;
        Err(StoreError::Stale {
            expected: last.unwrap_or_else(|| current.clone()),
            current,
        })
    }
}

/// How often a write is tried against a file that keeps changing under it before it gives up
/// with [`StoreError::Stale`].
const MAX_ATTEMPTS: usize = 8;

fn check_revision(expected: Option<&Revision>, current: &Revision) -> Result<()> {
    match expected {
        Some(e) if e != current => Err(StoreError::Stale {
            expected: e.clone(),
            current: current.clone(),
        }),
        _ => Ok(()),
    }
}

/// The new file text after `change`; pure (no I/O), so it is unit-tested on strings.
pub fn edit(path: &Path, text: &str, name: &str, change: &SlotChange) -> Result<String> {
    let mut doc: DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| {
        // Report the syntax errors the way every read does.
        match super::parse(path, text) {
            Err(errors) => StoreError::Invalid(errors),
            Ok(_) => StoreError::BadField {
                field: String::new(),
                message: format!("cannot edit the file: {e}"),
            },
        }
    })?;
    let slots = slots_table(&mut doc)?;
    let exists = slots.contains_key(name);
    match change {
        SlotChange::Create { fields } => {
            if exists {
                return Err(StoreError::SlotExists(name.to_string()));
            }
            let mut table = Table::new();
            table.decor_mut().set_prefix("\n");
            for (key, value) in ordered(fields) {
                if let Some(v) = to_toml(&format!("{name}.{key}"), value)? {
                    table.insert(key, Item::Value(v));
                }
            }
            slots.insert(name, Item::Table(table));
        }
        SlotChange::Replace { fields } | SlotChange::Merge { fields } => {
            let merge = matches!(change, SlotChange::Merge { .. });
            let table = slots
                .get_mut(name)
                .and_then(Item::as_table_like_mut)
                .ok_or_else(|| StoreError::SlotNotFound(name.to_string()))?;
            let fields = &keep_redacted_env(name, &*table, fields)?;
            if !merge {
                let gone: Vec<String> = table
                    .iter()
                    .map(|(k, _)| k.to_string())
                    .filter(|k| fields.get(k).is_none_or(|v| v.is_null()))
                    .collect();
                for k in gone {
                    table.remove(&k);
                }
            }
            for (key, value) in ordered(fields) {
                match to_toml(&format!("{name}.{key}"), value)? {
                    None => {
                        table.remove(key);
                    }
                    Some(mut v) => match table.get_mut(key) {
                        Some(Item::Value(old)) => {
                            *v.decor_mut() = old.decor().clone();
                            *old = v;
                        }
                        _ => {
                            table.insert(key, Item::Value(v));
                        }
                    },
                }
            }
        }
        SlotChange::Delete => {
            if slots.remove(name).is_none() {
                return Err(StoreError::SlotNotFound(name.to_string()));
            }
        }
    }
    Ok(doc.to_string())
}

/// Views show every `env` value as [`REDACTED`]; a write that sends such a value back (a
/// dashboard saving what it read) keeps the value the file has.
fn keep_redacted_env(
    name: &str,
    table: &dyn toml_edit::TableLike,
    fields: &Map<String, Json>,
) -> Result<Map<String, Json>> {
    let mut fields = fields.clone();
    let Some(Json::Object(env)) = fields.get_mut("env") else {
        return Ok(fields);
    };
    let old = table.get("env").and_then(Item::as_table_like);
    for (key, value) in env.iter_mut() {
        if value.as_str() != Some(REDACTED) {
            continue;
        }
        let kept = old.and_then(|t| t.get(key)).and_then(Item::as_str);
        match kept {
            Some(v) => *value = Json::String(v.to_string()),
            None => {
                return Err(StoreError::BadField {
                    field: format!("{name}.env.{key}"),
                    message: format!(
                        "{REDACTED:?} stands for the value the file already has, and it has none"
                    ),
                });
            }
        }
    }
    Ok(fields)
}

/// `[slots]`, created (as an implicit table, so no bare `[slots]` header appears) if missing.
fn slots_table(doc: &mut DocumentMut) -> Result<&mut Table> {
    if !doc.contains_key("slots") {
        let mut t = Table::new();
        t.set_implicit(true);
        doc.insert("slots", Item::Table(t));
    }
    doc.get_mut("slots")
        .and_then(Item::as_table_mut)
        .ok_or_else(|| StoreError::BadField {
            field: "slots".into(),
            message: "is not a table of [slots.<name>] tables; hal0 cannot edit it".into(),
        })
}

/// Fields in the order `hal0.toml` documents them (provider, model, …), unknown keys last (the
/// validation then names them).
fn ordered(fields: &Map<String, Json>) -> Vec<(&str, &Json)> {
    let rank = |k: &str| SLOT_KEYS.iter().position(|s| *s == k).unwrap_or(usize::MAX);
    let mut v: Vec<(&str, &Json)> = fields.iter().map(|(k, v)| (k.as_str(), v)).collect();
    v.sort_by_key(|(k, _)| (rank(k), k.to_string()));
    v
}

/// A JSON value as a TOML value; `None` for `null` (the key is left out or removed).
fn to_toml(field: &str, v: &Json) -> Result<Option<Value>> {
    let bad = |message: &str| StoreError::BadField {
        field: field.to_string(),
        message: message.to_string(),
    };
    Ok(Some(match v {
        Json::Null => return Ok(None),
        Json::Bool(b) => Value::from(*b),
        Json::String(s) => Value::from(s.as_str()),
        Json::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Value::from(i),
            (None, Some(f)) => Value::from(f),
            _ => return Err(bad("number out of range")),
        },
        Json::Array(items) => {
            let mut a = Array::new();
            for (i, item) in items.iter().enumerate() {
                let item = to_toml(&format!("{field}[{i}]"), item)?
                    .ok_or_else(|| bad("arrays cannot hold null"))?;
                a.push(item);
            }
            Value::Array(a)
        }
        Json::Object(map) => {
            let mut t = InlineTable::new();
            for (k, item) in map {
                if let Some(item) = to_toml(&format!("{field}.{k}"), item)? {
                    t.insert(k, item);
                }
            }
            Value::InlineTable(t)
        }
    }))
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
