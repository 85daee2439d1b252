//! The routing table the gateway reads: model name → slot → where to send the request.

use std::collections::{BTreeMap, HashMap};

use super::{Phase, ProviderKind, Role, SlotName, UpstreamAuth};

/// Where a slot's requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A local provider process on `127.0.0.1:<port>`.
    Local { port: u16 },
    /// An external upstream: base URL (ending before `/chat/completions` etc.), the env var
    /// with its key, and how to send it.
    Upstream {
        base_url: String,
        api_key_env: Option<String>,
        auth: UpstreamAuth,
    },
}

/// One routable slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub slot: SlotName,
    pub provider: ProviderKind,
    pub role: Role,
    pub phase: Phase,
    pub target: Target,
    /// The model id the provider knows this model by.
    pub model_id: Option<String>,
    /// Every name (besides the slot name) this slot answers to.
    pub aliases: Vec<String>,
}

/// The gateway's view: cheap to clone behind an `Arc`, rebuilt by the controller on change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutingTable {
    pub routes: BTreeMap<SlotName, Route>,
    /// Every accepted model name → its slot.
    pub by_model: HashMap<String, SlotName>,
}

impl RoutingTable {
    pub fn resolve(&self, model: &str) -> Option<&Route> {
        let slot = self.by_model.get(model)?;
        self.routes.get(slot)
    }

    /// Model names, sorted, for "did you mean" hints and `/v1/models`.
    pub fn model_names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.by_model.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }
}
