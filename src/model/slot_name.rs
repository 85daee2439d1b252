//! Slot names: `^[a-z][a-z0-9_-]*$`, and the four reserved built-in names.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use super::Role;

/// The built-in slots and the role each one must serve. No custom slot may take these names
/// for another role.
pub const BUILTIN_SLOTS: [(&str, Role); 4] = [
    ("primary", Role::Chat),
    ("embed", Role::Embeddings),
    ("stt", Role::SpeechToText),
    ("tts", Role::TextToSpeech),
];

/// The pattern every slot name matches (the reader checks it char by char for clear errors);
/// served to clients by `GET /api/rules`.
pub const NAME_PATTERN: &str = "^[a-z][a-z0-9_-]*$";

/// Longest slot name we accept: it becomes part of Kubernetes object names (63 chars) with a
/// short prefix, and of log lines.
pub const MAX_NAME_LEN: usize = 50;

/// A validated slot name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, JsonSchema)]
#[serde(transparent)]
#[schemars(transparent)]
pub struct SlotName(
    #[schemars(regex(pattern = r"^[a-z][a-z0-9_-]*$"), length(min = 1, max = 50))] String,
);

/// Why a string is not a slot name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("slot name is empty; names match ^[a-z][a-z0-9_-]*$")]
    Empty,
    #[error(
        "slot name {0:?} must start with a lowercase letter (a-z); names match ^[a-z][a-z0-9_-]*$"
    )]
    BadStart(String),
    #[error(
        "slot name {name:?} contains {ch:?}; only lowercase letters, digits, '-' and '_' are allowed (^[a-z][a-z0-9_-]*$)"
    )]
    BadChar { name: String, ch: char },
    #[error("slot name {0:?} is longer than {MAX_NAME_LEN} characters")]
    TooLong(String),
}

impl SlotName {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let mut chars = s.chars();
        match chars.next() {
            None => return Err(NameError::Empty),
            Some(c) if !c.is_ascii_lowercase() => return Err(NameError::BadStart(s.to_string())),
            Some(_) => {}
        }
        if let Some(ch) = chars
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_'))
        {
            return Err(NameError::BadChar {
                name: s.to_string(),
                ch,
            });
        }
        if s.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong(s.to_string()));
        }
        Ok(SlotName(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The role a built-in slot must serve, or `None` for a custom slot.
    pub fn builtin_role(&self) -> Option<Role> {
        BUILTIN_SLOTS
            .iter()
            .find(|(n, _)| *n == self.0)
            .map(|(_, r)| *r)
    }
}

impl fmt::Display for SlotName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for SlotName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SlotName::parse(s)
    }
}

impl<'de> Deserialize<'de> for SlotName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        SlotName::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl std::borrow::Borrow<str> for SlotName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names_parse() {
        for n in ["a", "primary", "fast-2", "my_slot", "x0"] {
            assert!(SlotName::parse(n).is_ok(), "{n}");
        }
    }

    #[test]
    fn invalid_names_are_refused_with_the_reason() {
        assert_eq!(SlotName::parse(""), Err(NameError::Empty));
        assert!(matches!(
            SlotName::parse("9lives"),
            Err(NameError::BadStart(_))
        ));
        assert!(matches!(
            SlotName::parse("Fast"),
            Err(NameError::BadStart(_))
        ));
        assert!(matches!(
            SlotName::parse("fa st"),
            Err(NameError::BadChar { ch: ' ', .. })
        ));
        assert!(matches!(
            SlotName::parse("fa.st"),
            Err(NameError::BadChar { ch: '.', .. })
        ));
        assert!(matches!(
            SlotName::parse(&"a".repeat(51)),
            Err(NameError::TooLong(_))
        ));
    }

    #[test]
    fn builtins_know_their_role() {
        assert_eq!(
            SlotName::parse("embed").unwrap().builtin_role(),
            Some(Role::Embeddings)
        );
        assert_eq!(SlotName::parse("fast").unwrap().builtin_role(), None);
    }
}
