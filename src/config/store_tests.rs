//! Tests of the config store: edits keep comments, validation refuses, revisions guard writes.

use serde_json::json;

use super::*;

const FILE: &str = "\
# my hal0 config
[server]
listen = \"127.0.0.1:8080\"   # keep me

# the main chat model
[slots.primary]
provider = \"llama.cpp\"   # which server
model = \"file:/m/a.gguf\"  # the model
idle_timeout = \"10m\"

# trailing comment
";

fn fields(v: Json) -> Map<String, Json> {
    v.as_object().cloned().unwrap_or_default()
}

fn apply(text: &str, name: &str, change: SlotChange) -> Result<String> {
    let out = edit(Path::new("hal0.toml"), text, name, &change)?;
    super::super::parse(Path::new("hal0.toml"), &out).map_err(StoreError::Invalid)?;
    Ok(out)
}

#[test]
fn creating_a_slot_keeps_every_comment_and_orders_its_keys() {
    let f =
        fields(json!({"idle_timeout": "30m", "model": "file:/m/b.gguf", "provider": "llama.cpp"}));
    let out = apply(FILE, "fast", SlotChange::Create { fields: f }).unwrap();
    for kept in [
        "# my hal0 config",
        "# keep me",
        "# the main chat model",
        "# which server",
        "# trailing comment",
    ] {
        assert!(out.contains(kept), "{kept:?} lost:\n{out}");
    }
    assert!(
        out.contains("[slots.fast]\nprovider = \"llama.cpp\"\nmodel = \"file:/m/b.gguf\"\nidle_timeout = \"30m\"\n"),
        "{out}"
    );
    assert!(out.find("[slots.primary]") < out.find("[slots.fast]"));
    assert!(!out.contains("[slots]\n"), "{out}");
}

#[test]
fn creating_into_a_file_without_slots_adds_the_table() {
    let out = apply("[server]\n", "a", SlotChange::Create {
        fields: fields(json!({"provider": "llama.cpp", "model": "file:/m/a.gguf", "env": {"X": "1"}, "args": ["--a", "b"]})),
    })
    .unwrap();
    assert!(out.contains("[slots.a]\n"), "{out}");
    assert!(out.contains("args = [\"--a\", \"b\"]"), "{out}");
}

#[test]
fn an_existing_slot_cannot_be_created_twice() {
    let f = fields(json!({"provider": "llama.cpp"}));
    assert!(matches!(
        apply(FILE, "primary", SlotChange::Create { fields: f }),
        Err(StoreError::SlotExists(_))
    ));
}

#[test]
fn replacing_keeps_comments_on_kept_keys_and_drops_missing_keys() {
    let f = fields(json!({"provider": "llama.cpp", "model": "file:/m/c.gguf"}));
    let out = apply(FILE, "primary", SlotChange::Replace { fields: f }).unwrap();
    assert!(
        out.contains("model = \"file:/m/c.gguf\"  # the model"),
        "{out}"
    );
    assert!(
        out.contains("provider = \"llama.cpp\"   # which server"),
        "{out}"
    );
    assert!(!out.contains("idle_timeout"), "{out}");
}

#[test]
fn merging_changes_only_the_given_keys_and_null_removes() {
    let f = fields(json!({"idle_timeout": null, "pinned": true}));
    let out = apply(FILE, "primary", SlotChange::Merge { fields: f }).unwrap();
    assert!(!out.contains("idle_timeout"), "{out}");
    assert!(out.contains("pinned = true"), "{out}");
    assert!(
        out.contains("model = \"file:/m/a.gguf\"  # the model"),
        "{out}"
    );
}

#[test]
fn deleting_removes_the_table_and_its_leading_comment_only() {
    let out = apply(FILE, "primary", SlotChange::Delete).unwrap();
    assert!(!out.contains("primary"), "{out}");
    assert!(!out.contains("# the main chat model"), "{out}");
    assert!(
        out.contains("# keep me") && out.contains("# my hal0 config"),
        "{out}"
    );
    assert!(matches!(
        apply(FILE, "nope", SlotChange::Delete),
        Err(StoreError::SlotNotFound(_))
    ));
}

#[test]
fn an_invalid_result_is_refused_with_the_config_errors() {
    let f =
        fields(json!({"provider": "llama.cpp", "model": "file:/m/x.gguf", "idle_timout": "1m"}));
    let Err(StoreError::Invalid(errs)) = apply(FILE, "x", SlotChange::Create { fields: f }) else {
        panic!("expected invalid")
    };
    let text = errs.to_string();
    assert!(text.contains("slots.x.idle_timout"), "{text}");
    assert!(text.contains("did you mean \"idle_timeout\""), "{text}");
}

#[test]
fn a_write_against_an_old_revision_is_stale_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hal0.toml");
    std::fs::write(&path, FILE).unwrap();
    let store = ConfigStore::new(&path);
    let old = store.read().unwrap().revision;
    let hand_edit = FILE.replace("10m", "20m");
    std::fs::write(&path, &hand_edit).unwrap();
    let f = fields(json!({"provider": "llama.cpp", "model": "file:/m/b.gguf"}));
    let err = store
        .apply(
            "fast",
            &SlotChange::Create { fields: f.clone() },
            Some(&old),
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::Stale { .. }), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), hand_edit);
    let now = store.read().unwrap().revision;
    let w = store
        .apply("fast", &SlotChange::Create { fields: f }, Some(&now))
        .unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains("20m") && text.contains("[slots.fast]"),
        "{text}"
    );
    assert_eq!(w.revision, Revision::of(&text));
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "no temp files left behind");
}

#[test]
fn writing_through_a_symlink_keeps_the_link() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real.toml");
    let link = dir.path().join("hal0.toml");
    std::fs::write(&real, FILE).unwrap();
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let store = ConfigStore::new(&link);
    store.apply("primary", &SlotChange::Delete, None).unwrap();
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(!std::fs::read_to_string(&real).unwrap().contains("primary"));
}
