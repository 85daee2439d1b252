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
    /// The roles (endpoint families) the slot serves.
    pub roles: Vec<Role>,
    pub phase: Phase,
    pub target: Target,
    /// The model id the provider knows this model by.
    pub model_id: Option<String>,
    /// Extra names this slot answers to (aliases; an upstream's models).
    pub aliases: Vec<String>,
    /// An upstream's own model names (`models`), sent on unchanged.
    pub upstream_models: Vec<String>,
}

impl Route {
    /// The `model` to send on when a client asked for `requested`: local providers get their
    /// model id (a client may have used the slot name or an alias, which the provider does not
    /// know); upstreams keep one of their own model names and otherwise get their first one.
    /// `None` when the request can go on unchanged.
    pub fn forwarded_model(&self, requested: &str) -> Option<&str> {
        let to = match self.target {
            Target::Upstream { .. } if self.upstream_models.iter().any(|m| m == requested) => None,
            Target::Upstream { .. } => self.upstream_models.first(),
            // llama-server serves one model whatever the request names, and echoes the name
            // the client used; leaving the body alone saves re-encoding it.
            Target::Local { .. } if self.provider == ProviderKind::LlamaCpp => None,
            Target::Local { .. } => self.model_id.as_ref(),
        };
        to.map(String::as_str).filter(|m| *m != requested)
    }
}

impl Route {
    pub fn serves(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// How a model name resolved for an endpoint.
#[derive(Debug, PartialEq, Eq)]
pub enum Resolution<'a> {
    Found(&'a Route),
    /// The name exists, but no slot of that name serves the endpoint's role.
    WrongRole(&'a Route),
    NotFound,
}

/// The gateway's view: cheap to share behind an `Arc`, rebuilt by the controller on change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutingTable {
    pub routes: BTreeMap<SlotName, Route>,
    /// Every accepted model name → the slots answering to it, best first: the slot of that
    /// name, then slots with it as an alias, then slots serving a model with that id.
    pub by_model: HashMap<String, Vec<SlotName>>,
}

impl RoutingTable {
    /// Resolves `model` for an endpoint of `role` (`None`: any role).
    pub fn resolve(&self, model: &str, role: Option<Role>) -> Resolution<'_> {
        let Some(slots) = self.by_model.get(model) else {
            return Resolution::NotFound;
        };
        let routes: Vec<&Route> = slots.iter().filter_map(|s| self.routes.get(s)).collect();
        let Some(first) = routes.first() else {
            return Resolution::NotFound;
        };
        match role {
            None => Resolution::Found(first),
            Some(role) => routes
                .iter()
                .find(|r| r.serves(role))
                .map_or(Resolution::WrongRole(first), |r| Resolution::Found(r)),
        }
    }

    /// Slots serving `role`, for error messages.
    pub fn slots_serving(&self, role: Role) -> Vec<&SlotName> {
        self.routes
            .values()
            .filter(|r| r.serves(role))
            .map(|r| &r.slot)
            .collect()
    }

    /// Model names, sorted, for "did you mean" hints.
    pub fn model_names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.by_model.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }
}
