//! An in-process fake Kubernetes API server, good enough for kube-runtime's watcher and the
//! hal0 controller: resourceVersion on every object and list, list + watch streams (replayed
//! from a resourceVersion), the status and scale subresources of Slots, merge patch, JSON patch
//! and apply (as a merge), finalizers and deletionTimestamp, owner-reference garbage
//! collection, generation bumps on spec changes, and a Deployment "controller" that reports its
//! pods ready (or not) at once. Tests wait on [`FakeApi::wait_for`], never sleep.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use serde_json::{Value, json};
use tokio::sync::{broadcast, watch};

/// The kinds the fake serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Slot,
    Deployment,
    Service,
}

impl Kind {
    pub fn of(resource: &str) -> Option<Kind> {
        match resource {
            "slots" => Some(Kind::Slot),
            "deployments" => Some(Kind::Deployment),
            "services" => Some(Kind::Service),
            _ => None,
        }
    }

    pub fn api_version(self) -> &'static str {
        match self {
            Kind::Slot => "hal0.dev/v1alpha1",
            Kind::Deployment => "apps/v1",
            Kind::Service => "v1",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Slot => "Slot",
            Kind::Deployment => "Deployment",
            Kind::Service => "Service",
        }
    }
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_type: String,
}

#[derive(Debug, Clone)]
pub struct WatchEvent {
    pub rv: u64,
    pub kind: Kind,
    pub ns: String,
    pub type_: &'static str,
    pub object: Value,
}

pub type Key = (Kind, String, String);

#[derive(Default)]
pub struct Store {
    pub rv: u64,
    pub uid: u64,
    pub objects: BTreeMap<Key, Value>,
    pub log: Vec<WatchEvent>,
    pub requests: Vec<Recorded>,
    pub events: Vec<Value>,
}

pub struct Shared {
    pub store: Mutex<Store>,
    pub tx: broadcast::Sender<WatchEvent>,
    pub changed: watch::Sender<u64>,
    pub pods_ready: AtomicBool,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running fake API server.
pub struct FakeApi {
    shared: Arc<Shared>,
    pub url: String,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .round(k8s_openapi::jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

impl FakeApi {
    /// Starts the fake on `127.0.0.1:0`.
    pub async fn start() -> FakeApi {
        let (tx, _) = broadcast::channel(4096);
        let (changed, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::default()),
            tx,
            changed,
            pods_ready: AtomicBool::new(true),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake API server");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let app = Router::new()
            .fallback(super::fake_http::handle)
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeApi {
            shared,
            url,
            server,
        }
    }

    /// A kube client talking to this fake.
    pub fn client(&self) -> kube::Client {
        let mut config = kube::Config::new(self.url.parse().expect("url"));
        config.default_namespace = "ai".into();
        kube::Client::try_from(config).expect("client")
    }

    /// Whether Deployment pods report ready (default true).
    pub fn set_pods_ready(&self, ready: bool) {
        self.shared.pods_ready.store(ready, Ordering::SeqCst);
        let mut st = self.shared.lock();
        let keys: Vec<Key> = st
            .objects
            .keys()
            .filter(|k| k.0 == Kind::Deployment)
            .cloned()
            .collect();
        for key in keys {
            if let Some(obj) = st.objects.get(&key).cloned() {
                put(&self.shared, &mut st, key, obj, "MODIFIED");
            }
        }
    }

    /// A stored object.
    pub fn get(&self, kind: Kind, ns: &str, name: &str) -> Option<Value> {
        self.shared
            .lock()
            .objects
            .get(&(kind, ns.to_string(), name.to_string()))
            .cloned()
    }

    /// Every stored object of a kind.
    pub fn all(&self, kind: Kind) -> Vec<Value> {
        self.shared
            .lock()
            .objects
            .iter()
            .filter(|(k, _)| k.0 == kind)
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.lock().requests.clone()
    }

    pub fn events(&self) -> Vec<Value> {
        self.shared.lock().events.clone()
    }

    /// Waits (bounded) until `cond` holds for the fake's state, re-checking on every change.
    pub async fn wait_for(&self, what: &str, timeout: Duration, cond: impl Fn(&FakeApi) -> bool) {
        let mut rx = self.shared.changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if cond(self) {
                return;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => {
                    let recent: Vec<String> = self
                        .requests()
                        .iter()
                        .rev()
                        .take(20)
                        .map(|r| {
                            format!("{} {}?{} [{}]", r.method, r.path, r.query, r.content_type)
                        })
                        .collect();
                    panic!(
                        "timed out after {timeout:?} waiting for: {what}; latest requests first:\n{}",
                        recent.join("\n")
                    )
                }
            }
        }
    }
}

/// Stores `obj` under a new resourceVersion and tells the watchers.
pub fn put(
    shared: &Shared,
    st: &mut Store,
    key: Key,
    mut obj: Value,
    type_: &'static str,
) -> Value {
    st.rv += 1;
    let rv = st.rv;
    obj["apiVersion"] = json!(key.0.api_version());
    obj["kind"] = json!(key.0.name());
    obj["metadata"]["resourceVersion"] = json!(rv.to_string());
    if key.0 == Kind::Deployment {
        let replicas = obj["spec"]["replicas"].as_i64().unwrap_or(1);
        let ready = if shared.pods_ready.load(Ordering::SeqCst) {
            replicas
        } else {
            0
        };
        obj["status"] = json!({"replicas": replicas, "readyReplicas": ready,
            "availableReplicas": ready, "updatedReplicas": replicas,
            "observedGeneration": obj["metadata"]["generation"]});
    }
    if type_ == "DELETED" {
        st.objects.remove(&key);
    } else {
        st.objects.insert(key.clone(), obj.clone());
    }
    let ev = WatchEvent {
        rv,
        kind: key.0,
        ns: key.1,
        type_,
        object: obj.clone(),
    };
    st.log.push(ev.clone());
    let _ = shared.tx.send(ev);
    shared.changed.send_replace(rv);
    obj
}

/// Deletes now or, with finalizers, marks for deletion; collects owned objects.
pub fn delete(shared: &Shared, st: &mut Store, key: Key) -> Option<Value> {
    let mut obj = st.objects.get(&key)?.clone();
    let has_finalizers = obj["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty());
    if has_finalizers {
        if obj["metadata"]["deletionTimestamp"].is_null() {
            obj["metadata"]["deletionTimestamp"] = json!(now());
            return Some(put(shared, st, key, obj, "MODIFIED"));
        }
        return Some(obj);
    }
    let uid = obj["metadata"]["uid"].clone();
    let gone = put(shared, st, key, obj, "DELETED");
    let owned: Vec<Key> = st
        .objects
        .iter()
        .filter(|(_, v)| {
            v["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|o| o.iter().any(|r| r["uid"] == uid))
        })
        .map(|(k, _)| k.clone())
        .collect();
    for k in owned {
        delete(shared, st, k);
    }
    Some(gone)
}
