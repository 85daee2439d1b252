//! Reading typed values out of the span-carrying TOML tree (`toml::de::DeTable`), reporting each
//! problem at the span of the offending key or value and carrying on, so that one pass finds
//! every error instead of stopping at the first.

use std::collections::BTreeMap;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::diagnostic::Sink;
use crate::core::suggest;
use crate::model::{ByteSize, HumanDuration};

pub(crate) type Node<'i> = Spanned<DeValue<'i>>;

/// A value together with where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct At<T> {
    pub value: T,
    pub span: Range<usize>,
}

/// Where a key and its value were written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct KeySpans {
    pub key: Range<usize>,
    pub value: Range<usize>,
}

/// A TOML key as it would be written in a dotted path: bare when it can be, quoted otherwise.
pub(crate) fn display_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_string()
    } else {
        format!("{key:?}")
    }
}

/// `prefix.key`, or just `key` at the top level.
pub(crate) fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        display_key(key)
    } else {
        format!("{prefix}.{}", display_key(key))
    }
}

/// "a string", "an integer", …: the TOML type of a value, for "expected X, found Y".
pub(crate) fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// A table being read: its entries and its dotted path for messages.
pub(crate) struct Table<'a, 'i> {
    pub entries: &'a DeTable<'i>,
    pub path: String,
}

impl<'a, 'i> Table<'a, 'i> {
    /// `node` as a table, or an "expected a table" error.
    pub fn of(sink: &mut Sink<'_>, node: &'a Node<'i>, path: String) -> Option<Self> {
        match node.get_ref() {
            DeValue::Table(entries) => Some(Table { entries, path }),
            other => {
                sink.error(
                    node.span(),
                    path,
                    format!("expected a table, found {}", type_name(other)),
                );
                None
            }
        }
    }

    /// Report every key not in `allowed`, with a "did you mean" for near misses.
    pub fn deny_unknown(&self, sink: &mut Sink<'_>, allowed: &[&str]) {
        for (key, _) in self.entries.iter() {
            let name: &str = key.get_ref();
            if !allowed.contains(&name) {
                sink.error(
                    key.span(),
                    join(&self.path, name),
                    format!(
                        "unknown key {name:?}; allowed here: {}{}",
                        allowed.join(", "),
                        suggest::did_you_mean(name, allowed.iter().copied())
                    ),
                );
            }
        }
    }

    /// The entry for `key`, if present.
    pub fn field(&self, key: &str) -> Option<Field<'a, 'i>> {
        self.entries.get_key_value(key).map(|(k, v)| Field {
            key: k.span(),
            node: v,
            path: join(&self.path, key),
        })
    }

    /// Every entry, in file order (the tree itself is sorted by key).
    pub fn in_file_order(&self) -> Vec<(At<&'a str>, &'a Node<'i>)> {
        let mut v: Vec<_> = self
            .entries
            .iter()
            .map(|(k, node)| {
                let key: &'a str = k.get_ref();
                (
                    At {
                        value: key,
                        span: k.span(),
                    },
                    node,
                )
            })
            .collect();
        v.sort_by_key(|(k, _)| k.span.start);
        v
    }
}

/// One `key = value` entry being read.
pub(crate) struct Field<'a, 'i> {
    pub key: Range<usize>,
    pub node: &'a Node<'i>,
    pub path: String,
}

impl<'a, 'i> Field<'a, 'i> {
    pub fn spans(&self) -> KeySpans {
        KeySpans {
            key: self.key.clone(),
            value: self.node.span(),
        }
    }

    fn wrong_type(&self, sink: &mut Sink<'_>, expected: &str) {
        sink.error(
            self.node.span(),
            self.path.clone(),
            format!(
                "expected {expected}, found {}",
                type_name(self.node.get_ref())
            ),
        );
    }

    pub fn error(&self, sink: &mut Sink<'_>, message: impl Into<String>) {
        sink.error(self.node.span(), self.path.clone(), message);
    }

    pub fn string(&self, sink: &mut Sink<'_>) -> Option<String> {
        match self.node.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            _ => {
                self.wrong_type(sink, "a string");
                None
            }
        }
    }

    /// A string that may not be empty.
    pub fn non_empty_string(&self, sink: &mut Sink<'_>) -> Option<String> {
        let s = self.string(sink)?;
        if s.trim().is_empty() {
            self.error(sink, "must not be empty");
            return None;
        }
        Some(s)
    }

    pub fn bool(&self, sink: &mut Sink<'_>) -> Option<bool> {
        match self.node.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.wrong_type(sink, "a boolean (true or false)");
                None
            }
        }
    }

    /// An integer in `lo..=hi`.
    pub fn integer_in(&self, sink: &mut Sink<'_>, lo: i128, hi: i128) -> Option<i128> {
        integer_in(sink, self.node, &self.path, lo, hi)
    }

    /// An integer in `lo..=hi`, or `"auto"` (`Some(None)`).
    pub fn integer_or_auto(&self, sink: &mut Sink<'_>, lo: i128, hi: i128) -> Option<Option<i128>> {
        match self.node.get_ref() {
            DeValue::String(s) if s == "auto" => Some(None),
            DeValue::String(_) => {
                self.error(
                    sink,
                    format!("expected \"auto\" or an integer from {lo} to {hi}"),
                );
                None
            }
            _ => self.integer_in(sink, lo, hi).map(Some),
        }
    }

    /// A string naming one of `allowed`, with a "did you mean" for near misses.
    pub fn one_of(
        &self,
        sink: &mut Sink<'_>,
        what: &str,
        allowed: &[&'static str],
    ) -> Option<&'static str> {
        let s = self.string(sink)?;
        if let Some(found) = allowed.iter().find(|a| **a == s) {
            return Some(found);
        }
        self.error(
            sink,
            format!(
                "unknown {what} {s:?}; expected one of: {}{}",
                allowed.join(", "),
                suggest::did_you_mean(&s, allowed.iter().copied())
            ),
        );
        None
    }

    pub fn duration(&self, sink: &mut Sink<'_>) -> Option<HumanDuration> {
        let s = self.string(sink)?;
        HumanDuration::parse(&s)
            .map_err(|e| self.error(sink, e.to_string()))
            .ok()
    }

    /// A memory size: a string such as `"96GiB"`, or a plain byte count.
    pub fn byte_size(&self, sink: &mut Sink<'_>) -> Option<ByteSize> {
        match self.node.get_ref() {
            DeValue::String(s) => ByteSize::parse(s)
                .map_err(|e| self.error(sink, e.to_string()))
                .ok(),
            DeValue::Integer(_) => {
                let n = self.integer_in(sink, 0, i128::from(u64::MAX))?;
                u64::try_from(n).ok().map(ByteSize)
            }
            _ => {
                self.wrong_type(sink, "a memory size such as \"96GiB\"");
                None
            }
        }
    }

    /// An array; each element is handed to `item` with its own path (`field[2]`) for messages.
    pub fn array<T>(
        &self,
        sink: &mut Sink<'_>,
        expected: &str,
        mut item: impl FnMut(&mut Sink<'_>, &'a Node<'i>, String) -> Option<T>,
    ) -> Option<Vec<T>> {
        let DeValue::Array(items) = self.node.get_ref() else {
            self.wrong_type(sink, expected);
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, node) in items.iter().enumerate() {
            match item(sink, node, format!("{}[{i}]", self.path)) {
                Some(v) => out.push(v),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// An array of non-empty strings, each with its span.
    pub fn string_array(&self, sink: &mut Sink<'_>) -> Option<Vec<At<String>>> {
        self.array(sink, "an array of strings", |sink, node, path| {
            match node.get_ref() {
                DeValue::String(s) if !s.trim().is_empty() => Some(At {
                    value: s.to_string(),
                    span: node.span(),
                }),
                DeValue::String(_) => {
                    sink.error(node.span(), path, "must not be empty");
                    None
                }
                other => {
                    sink.error(
                        node.span(),
                        path,
                        format!("expected a string, found {}", type_name(other)),
                    );
                    None
                }
            }
        })
    }

    /// A table of string values (`env = { NAME = "value" }`).
    pub fn string_map(&self, sink: &mut Sink<'_>) -> Option<BTreeMap<String, String>> {
        let table = Table::of(sink, self.node, self.path.clone())?;
        let mut out = BTreeMap::new();
        let mut ok = true;
        for (key, node) in table.in_file_order() {
            match node.get_ref() {
                DeValue::String(s) => {
                    out.insert(key.value.to_string(), s.to_string());
                }
                other => {
                    ok = false;
                    sink.error(
                        node.span(),
                        join(&table.path, key.value),
                        format!("expected a string, found {}", type_name(other)),
                    );
                }
            }
        }
        ok.then_some(out)
    }

    /// The name of an environment variable (`[A-Za-z_][A-Za-z0-9_]*`). The value is not echoed
    /// in the message: a common mistake is pasting the secret itself here.
    pub fn env_var_name(&self, sink: &mut Sink<'_>) -> Option<String> {
        let s = self.string(sink)?;
        check_env_var_name(sink, &s, self.node.span(), &self.path).then_some(s)
    }
}

/// Whether `s` is an environment variable name; reports the problem otherwise.
pub(crate) fn check_env_var_name(
    sink: &mut Sink<'_>,
    s: &str,
    span: Range<usize>,
    path: &str,
) -> bool {
    let ok = crate::rules::is_env_var_name(s);
    if !ok {
        sink.error(span, path.to_string(), crate::rules::ENV_VAR_NAME_MESSAGE);
    }
    ok
}

/// An integer node in `lo..=hi`.
pub(crate) fn integer_in(
    sink: &mut Sink<'_>,
    node: &Node<'_>,
    path: &str,
    lo: i128,
    hi: i128,
) -> Option<i128> {
    let DeValue::Integer(i) = node.get_ref() else {
        sink.error(
            node.span(),
            path.to_string(),
            format!(
                "expected an integer from {lo} to {hi}, found {}",
                type_name(node.get_ref())
            ),
        );
        return None;
    };
    let n = i128::from_str_radix(i.as_str(), i.radix()).ok();
    match n {
        Some(n) if (lo..=hi).contains(&n) => Some(n),
        _ => {
            sink.error(
                node.span(),
                path.to_string(),
                format!(
                    "must be from {lo} to {hi}, found {}",
                    sink.text(node.span())
                ),
            );
            None
        }
    }
}

/// Test helper: the property names of a JSON schema's `properties` object.
#[cfg(test)]
pub(crate) fn schema_properties(schema: &schemars::Schema) -> Vec<String> {
    let mut keys: Vec<String> = schema.as_value()["properties"]
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    keys.sort();
    keys
}

/// Test helper: the string values of an enum's JSON schema (`enum` lists, and the `const` of
/// each `oneOf` variant when the variants are documented).
#[cfg(test)]
pub(crate) fn schema_enum_values(schema: &schemars::Schema) -> Vec<String> {
    use serde_json::Value;
    let mut out = Vec::new();
    let mut stack = vec![schema.as_value()];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(o) => {
                if let Some(Value::String(s)) = o.get("const") {
                    out.push(s.clone());
                }
                if let Some(Value::Array(items)) = o.get("enum") {
                    out.extend(items.iter().filter_map(|i| i.as_str().map(str::to_string)));
                }
                stack.extend(o.values());
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    out.sort();
    out.dedup();
    out
}
