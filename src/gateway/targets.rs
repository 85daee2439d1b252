//! The routing table as the handlers use it: every slot's upstream resolved once per published
//! [`RoutingTable`], not per request. A slot's entry holds its route, where its requests go
//! (a keep-alive connection pool, plain to a local provider or TLS-capable to an external
//! upstream, with the `host` header, path prefix and auth header prebuilt) and its metric handles. Entries whose target
//! did not change are carried over to the next table, pool and metrics included.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};

use axum::http::uri::PathAndQuery;
use axum::http::{HeaderName, HeaderValue, Uri, header};

use super::control::{RequestCounter, SlotControl};
use super::metrics::{Metrics, SlotMetrics};
use crate::http_client::{Pool, Settings};
use crate::model::{Role, Route, RoutingTable, SlotName, Target, UpstreamAuth};

/// Where one slot's requests go, prebuilt.
pub enum Upstream {
    Ready {
        /// Keep-alive connections to the slot: plain TCP to a local provider on
        /// `127.0.0.1:<port>`; to an external upstream (or a slot's Service in Kubernetes)
        /// through the shared connector, TLS for `https://`.
        pool: Arc<Pool>,
        /// The `host` header requests carry.
        host: HeaderValue,
        /// The base URL's path, replacing the request's `/v1` (empty: the base is the origin).
        /// `None` when it is `/v1` itself (always for local slots): the request's path goes on
        /// unchanged.
        prefix: Option<String>,
        /// The header carrying an upstream's key (read from its env var when the table was
        /// published), marked sensitive.
        auth: Option<(HeaderName, HeaderValue)>,
    },
    /// The base URL could not be used; requests fail with this message.
    Invalid(String),
}

impl Upstream {
    fn new(target: &Target) -> Upstream {
        match target {
            Target::Local { port } => {
                let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, *port));
                let host = HeaderValue::from_str(&addr.to_string())
                    .unwrap_or_else(|_| HeaderValue::from_static("127.0.0.1"));
                Upstream::Ready {
                    pool: Pool::plain(addr, Settings::UPSTREAM),
                    host,
                    prefix: None,
                    auth: None,
                }
            }
            Target::Upstream {
                base_url,
                api_key_env,
                auth,
            } => {
                let uri: Uri = match base_url.parse() {
                    Ok(u) => u,
                    Err(e) => {
                        return Upstream::Invalid(format!("bad upstream URL {base_url:?}: {e}"));
                    }
                };
                let parts = uri.into_parts();
                let (Some(scheme), Some(authority)) = (parts.scheme, parts.authority) else {
                    return Upstream::Invalid(format!(
                        "bad upstream URL {base_url:?}: it needs a scheme and a host"
                    ));
                };
                let Ok(host) = HeaderValue::from_str(authority.as_str()) else {
                    return Upstream::Invalid(format!("bad upstream URL {base_url:?}: its host"));
                };
                let path = parts.path_and_query.as_ref().map_or("", PathAndQuery::path);
                let path = path.trim_end_matches('/');
                let prefix = (path != "/v1").then(|| path.to_string());
                let auth = api_key_env
                    .as_deref()
                    .and_then(|env| std::env::var(env).ok())
                    .and_then(|key| {
                        let (name, value) = match auth {
                            UpstreamAuth::Bearer => {
                                (header::AUTHORIZATION, format!("Bearer {key}"))
                            }
                            UpstreamAuth::XApiKey => (HeaderName::from_static("x-api-key"), key),
                        };
                        let mut v = HeaderValue::from_str(&value).ok()?;
                        v.set_sensitive(true);
                        Some((name, v))
                    });
                let mut origin = axum::http::uri::Parts::default();
                origin.scheme = Some(scheme);
                origin.authority = Some(authority);
                origin.path_and_query = Some(PathAndQuery::from_static("/"));
                let origin = match Uri::from_parts(origin) {
                    Ok(o) => o,
                    Err(e) => {
                        return Upstream::Invalid(format!("bad upstream URL {base_url:?}: {e}"));
                    }
                };
                Upstream::Ready {
                    pool: Pool::to_origin(origin, Settings::UPSTREAM),
                    host,
                    prefix,
                    auth,
                }
            }
        }
    }
}

/// One routable slot, as the handlers use it.
pub struct SlotEntry {
    pub route: Route,
    /// The slot's name, shared with every request in flight to it.
    pub slot: Arc<SlotName>,
    pub upstream: Arc<Upstream>,
    pub metrics: Arc<SlotMetrics>,
    /// The slot's request counter, when the control keeps one.
    pub counter: Option<Arc<dyn RequestCounter>>,
}

/// A [`RoutingTable`] with every slot's entry prebuilt.
pub struct Prepared {
    /// The table this was built from.
    source: Arc<RoutingTable>,
    slots: HashMap<SlotName, Arc<SlotEntry>>,
    /// Every accepted model name → its slots, best first (as `RoutingTable::by_model`).
    by_model: HashMap<String, Vec<Arc<SlotEntry>>>,
}

impl Prepared {
    fn build(
        source: Arc<RoutingTable>,
        old: Option<&Prepared>,
        metrics: &Arc<Metrics>,
        control: &Arc<dyn SlotControl>,
    ) -> Self {
        let mut slots = HashMap::with_capacity(source.routes.len());
        for (name, route) in &source.routes {
            let kept = old.and_then(|o| o.slots.get(name));
            let (upstream, slot_metrics) = match kept {
                Some(e) if e.route.target == route.target => {
                    (e.upstream.clone(), e.metrics.clone())
                }
                Some(e) => (Arc::new(Upstream::new(&route.target)), e.metrics.clone()),
                None => (
                    Arc::new(Upstream::new(&route.target)),
                    Arc::new(metrics.for_slot(name.as_str())),
                ),
            };
            slots.insert(
                name.clone(),
                Arc::new(SlotEntry {
                    route: route.clone(),
                    slot: Arc::new(name.clone()),
                    upstream,
                    metrics: slot_metrics,
                    counter: control.counter(name),
                }),
            );
        }
        let by_model = source
            .by_model
            .iter()
            .map(|(model, names)| {
                let entries = names.iter().filter_map(|n| slots.get(n).cloned()).collect();
                (model.clone(), entries)
            })
            .collect();
        Prepared {
            source,
            slots,
            by_model,
        }
    }

    /// The table this was built from (for error messages).
    pub fn table(&self) -> &RoutingTable {
        &self.source
    }

    /// The entry of slot `name`.
    pub fn slot(&self, name: &SlotName) -> Option<&Arc<SlotEntry>> {
        self.slots.get(name)
    }

    /// The slot serving `model` on an endpoint of `role` (`None`: any role), as
    /// `RoutingTable::resolve` finds it; `None` when that would not be `Found`.
    pub fn find(&self, model: &str, role: Option<Role>) -> Option<&Arc<SlotEntry>> {
        let entries = self.by_model.get(model)?;
        match role {
            None => entries.first(),
            Some(role) => entries.iter().find(|e| e.route.serves(role)),
        }
    }
}

/// The prepared table for the routing table last published, rebuilt when that changes.
pub struct Cache {
    current: RwLock<Arc<Prepared>>,
    metrics: Arc<Metrics>,
    control: Arc<dyn SlotControl>,
}

impl Cache {
    pub fn new(metrics: Arc<Metrics>, control: Arc<dyn SlotControl>) -> Self {
        let empty = Prepared::build(Arc::new(RoutingTable::default()), None, &metrics, &control);
        Cache {
            current: RwLock::new(Arc::new(empty)),
            metrics,
            control,
        }
    }

    /// The prepared form of `table` (a clone of an `Arc` unless `table` is new).
    pub fn get(&self, table: &Arc<RoutingTable>) -> Arc<Prepared> {
        {
            let cur = self.current.read().unwrap_or_else(|p| p.into_inner());
            if Arc::ptr_eq(&cur.source, table) {
                return cur.clone();
            }
        }
        let mut cur = self.current.write().unwrap_or_else(|p| p.into_inner());
        if !Arc::ptr_eq(&cur.source, table) {
            *cur = Arc::new(Prepared::build(
                table.clone(),
                Some(&cur),
                &self.metrics,
                &self.control,
            ));
        }
        cur.clone()
    }
}
