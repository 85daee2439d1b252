//! What the API returns and accepts: the types are `model::wire` (the CLI reads the same
//! ones); here the handlers build them, with secrets redacted.

use std::collections::BTreeMap;

use super::ApiState;
use crate::config::show::{REDACTED, redact_url};
use crate::model::SlotName;
use crate::model::SlotSpec;
pub use crate::model::wire::{
    ConfigState, LogLine, SlotList, SlotRemoved, SlotView, SlotWrite, WriteResult,
};

/// A spec as views show it: every `env` value replaced by `"<redacted>"` (the names stay, so a
/// view shows that a value is set), and an upstream URL without its credentials. Reads are open
/// to anyone who can reach hal0; what a slot's environment holds is not theirs to read.
pub fn redacted(spec: &SlotSpec) -> SlotSpec {
    let mut spec = spec.clone();
    for value in spec.env.values_mut() {
        *value = REDACTED.to_string();
    }
    if let Some(u) = &spec.upstream {
        spec.upstream = Some(redact_url(u));
    }
    spec
}

impl ApiState {
    /// Every slot, now.
    pub fn slot_views(&self) -> BTreeMap<SlotName, SlotView> {
        let statuses = self.statuses.borrow().clone();
        let desired = self.desired.borrow().clone();
        statuses
            .iter()
            .map(|(name, status)| {
                let view = SlotView {
                    status: status.clone(),
                    memory_measured: status.memory_peak,
                    spec: desired.slots.get(name).map(redacted),
                };
                (name.clone(), view)
            })
            .collect()
    }

    /// `server.memory_budget` as applied.
    pub fn memory_budget(&self) -> Option<u64> {
        self.desired.borrow().server.memory_budget.map(|b| b.0)
    }

    /// The file's current revision, if it can be read.
    pub fn revision(&self) -> Option<String> {
        self.store.read().ok().map(|s| s.revision.0)
    }

    pub fn slot_list(&self) -> SlotList {
        SlotList {
            config: self.store.path().display().to_string(),
            memory_budget: self.memory_budget(),
            revision: self.revision(),
            config_errors: self.reports.borrow().errors.clone(),
            slots: self.slot_views().into_values().collect(),
        }
    }

    pub fn config_state(&self) -> ConfigState {
        let report = self.reports.borrow().clone();
        ConfigState {
            path: self.store.path().display().to_string(),
            revision: self.revision(),
            reload: report.revision,
            ok: report.errors.is_empty(),
            memory_budget: self.memory_budget(),
            errors: report.errors.clone(),
        }
    }
}
