//! Slot fields from the command line: `--set key=value` (a TOML value, or else a plain string),
//! `--unset key`, and the named flags of `hal0 slot add`, as the JSON object the API and the
//! config store take.

use serde_json::{Map, Value};

/// Why a `--set` or flag value cannot become a slot field.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("--set {0:?}: expected KEY=VALUE, like --set idle_timeout=30m")]
    NoEquals(String),
    #[error("--env {0:?}: expected NAME=VALUE, like --env HIP_VISIBLE_DEVICES=0")]
    BadEnv(String),
    #[error("{what} {key:?}: not a slot field; the fields are {known}")]
    UnknownKey {
        what: &'static str,
        key: String,
        known: String,
    },
}

/// `value` as TOML (`5`, `true`, `["-c", "4096"]`, `{ A = "1" }`, `"text"`), else as a plain
/// string, so `--set idle_timeout=30m` and `--set model=file:/m.gguf` need no quotes.
pub fn parse_value(value: &str) -> Value {
    let doc = format!("v = {value}");
    match toml::from_str::<toml::Table>(&doc) {
        Ok(mut t) => t
            .remove("v")
            .and_then(|v| serde_json::to_value(v).ok())
            .unwrap_or_else(|| Value::String(value.to_string())),
        Err(_) => Value::String(value.to_string()),
    }
}

fn check_key(what: &'static str, key: &str) -> Result<(), FieldError> {
    if crate::config::slot_keys().contains(&key) {
        Ok(())
    } else {
        Err(FieldError::UnknownKey {
            what,
            key: key.to_string(),
            known: crate::config::slot_keys().join(", "),
        })
    }
}

/// Adds every `--set KEY=VALUE` to `fields` (later ones win).
pub fn apply_sets(fields: &mut Map<String, Value>, sets: &[String]) -> Result<(), FieldError> {
    for set in sets {
        let (key, value) = set
            .split_once('=')
            .ok_or_else(|| FieldError::NoEquals(set.clone()))?;
        let key = key.trim();
        check_key("--set", key)?;
        fields.insert(key.to_string(), parse_value(value.trim()));
    }
    Ok(())
}

/// Adds a `null` (remove the key) for every `--unset KEY`.
pub fn apply_unsets(fields: &mut Map<String, Value>, unsets: &[String]) -> Result<(), FieldError> {
    for key in unsets {
        check_key("--unset", key)?;
        fields.insert(key.clone(), Value::Null);
    }
    Ok(())
}

/// `NAME=VALUE` pairs as the `env` table.
pub fn env_table(pairs: &[String]) -> Result<Map<String, Value>, FieldError> {
    let mut env = Map::new();
    for pair in pairs {
        let (k, v) = pair
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| FieldError::BadEnv(pair.clone()))?;
        env.insert(k.to_string(), Value::String(v.to_string()));
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn values_are_toml_when_they_parse_and_strings_otherwise() {
        assert_eq!(parse_value("5"), json!(5));
        assert_eq!(parse_value("true"), json!(true));
        assert_eq!(parse_value(r#"["-c", "4096"]"#), json!(["-c", "4096"]));
        assert_eq!(parse_value(r#"{ A = "1" }"#), json!({"A": "1"}));
        assert_eq!(parse_value(r#""quoted""#), json!("quoted"));
        assert_eq!(parse_value("30m"), json!("30m"));
        assert_eq!(parse_value("file:/m/a b.gguf"), json!("file:/m/a b.gguf"));
        assert_eq!(parse_value("8GiB"), json!("8GiB"));
    }

    #[test]
    fn sets_and_unsets_name_real_fields() {
        let mut f = Map::new();
        apply_sets(&mut f, &["idle_timeout=30m".into(), "priority = 7".into()]).unwrap();
        apply_unsets(&mut f, &["device".into()]).unwrap();
        assert_eq!(
            Value::Object(f),
            json!({"idle_timeout": "30m", "priority": 7, "device": null})
        );
        let mut f = Map::new();
        assert_eq!(
            apply_sets(&mut f, &["idle_timeout".into()]),
            Err(FieldError::NoEquals("idle_timeout".into()))
        );
        let err = apply_sets(&mut f, &["idle=1m".into()]).unwrap_err();
        assert!(err.to_string().contains("not a slot field"), "{err}");
        assert!(err.to_string().contains("idle_timeout"), "{err}");
    }

    #[test]
    fn env_pairs_need_a_name() {
        assert_eq!(
            env_table(&["A=1".into(), "B=x=y".into()]).unwrap(),
            json!({"A": "1", "B": "x=y"}).as_object().unwrap().clone()
        );
        assert!(env_table(&["=1".into()]).is_err());
        assert!(env_table(&["A".into()]).is_err());
    }
}
