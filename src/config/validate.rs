//! The slot rules (`crate::rules`) run on what was read, and each violation is reported at the
//! most specific span the file has: the offending value, else the offending key, else the
//! slot's name.

use std::ops::Range;

use super::diagnostic::Sink;
use super::read::Document;
use super::slot::SlotRead;
use crate::rules::{self, At, Violation};

/// Check every rule on the slots and the set of slots, reporting at spans.
pub(crate) fn check(sink: &mut Sink<'_>, doc: &Document) {
    let slots: Vec<(&str, &crate::model::SlotSpec)> = doc
        .slots
        .iter()
        .map(|s| (s.name.as_str(), &s.spec))
        .collect();
    for v in rules::check_all(&doc.state.server, &slots) {
        let slot = v
            .slot
            .as_deref()
            .and_then(|n| doc.slots.iter().find(|s| s.name == n));
        match slot {
            Some(slot) => report_slot(sink, slot, v),
            None => report_server(sink, doc, v),
        }
    }
}

fn report_slot(sink: &mut Sink<'_>, slot: &SlotRead, v: Violation) {
    let (span, path): (Range<usize>, String) = match v.at {
        // The reader reported the name already (also for slots it could not read further).
        At::Name => return,
        At::Slot => (slot.name_span.clone(), slot.path.clone()),
        // Written, but its value could not be read (already reported): not missing.
        At::Missing(key) if slot.has(key) => return,
        At::Missing(_) => (slot.name_span.clone(), slot.path.clone()),
        At::Key(key) => (
            slot.fields
                .get(key)
                .map_or_else(|| slot.name_span.clone(), |s| s.key.clone()),
            slot.field_path(key),
        ),
        At::Value(key) => (slot.value_span(key), slot.field_path(key)),
        At::Item(key, i) => (
            slot.items
                .get(key)
                .and_then(|spans| spans.get(i))
                .cloned()
                .unwrap_or_else(|| slot.value_span(key)),
            format!("{}[{i}]", slot.field_path(key)),
        ),
        At::Entry(key, entry) => (
            slot.entries
                .get(&(key, entry))
                .cloned()
                .unwrap_or_else(|| slot.value_span(key)),
            super::spans::join(&slot.field_path(key), entry),
        ),
        At::Server(key) => (0..0, format!("server.{key}")),
    };
    sink.error(span, path, v.message);
}

fn report_server(sink: &mut Sink<'_>, doc: &Document, v: Violation) {
    let (span, path) = match v.at {
        At::Server(key) => (
            doc.server
                .get(key)
                .map(|s| s.value.clone())
                .unwrap_or_default(),
            format!("server.{key}"),
        ),
        // Every slot violation names a slot that was read.
        other => (0..0, other.path()),
    };
    sink.error(span, path, v.message);
}
