//! An in-process fake Kubernetes API server, good enough for kube-runtime's watcher and the
//! hal0 controller: resourceVersion on every object and list, list + watch streams (replayed
//! from a resourceVersion), the status and scale subresources of Slots, merge patch, JSON patch
//! and apply (as a merge), finalizers and deletionTimestamp, owner-reference garbage
//! collection, generation bumps on spec changes, and a Deployment "controller" that reports its
//! pods ready (or not) at once. Tests wait on [`FakeApi::wait_for`], never sleep.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, watch};

use super::patch;

/// The kinds the fake serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Slot,
    Deployment,
    Service,
}

impl Kind {
    fn of(resource: &str) -> Option<Kind> {
        match resource {
            "slots" => Some(Kind::Slot),
            "deployments" => Some(Kind::Deployment),
            "services" => Some(Kind::Service),
            _ => None,
        }
    }

    fn api_version(self) -> &'static str {
        match self {
            Kind::Slot => "hal0.dev/v1alpha1",
            Kind::Deployment => "apps/v1",
            Kind::Service => "v1",
        }
    }

    fn name(self) -> &'static str {
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
struct WatchEvent {
    rv: u64,
    kind: Kind,
    ns: String,
    type_: &'static str,
    object: Value,
}

type Key = (Kind, String, String);

#[derive(Default)]
struct Store {
    rv: u64,
    uid: u64,
    objects: BTreeMap<Key, Value>,
    log: Vec<WatchEvent>,
    requests: Vec<Recorded>,
    events: Vec<Value>,
}

struct Shared {
    store: Mutex<Store>,
    tx: broadcast::Sender<WatchEvent>,
    changed: watch::Sender<u64>,
    pods_ready: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Store> {
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

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .round(k8s_openapi::jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn status(code: u16, reason: &str, message: String) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code});
    respond(code, &body)
}

fn respond(code: u16, body: &Value) -> Response {
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        "content-type",
        "application/json".parse().expect("static header"),
    );
    r
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_map(q: &str) -> BTreeMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn labels_match(obj: &Value, selector: Option<&String>) -> bool {
    let Some(sel) = selector.filter(|s| !s.is_empty()) else {
        return true;
    };
    sel.split(',').all(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        obj["metadata"]["labels"][k].as_str() == Some(v)
    })
}

/// A parsed request path.
struct Target {
    kind: Option<Kind>,
    resource: String,
    ns: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

fn parse_path(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest = match segs.as_slice() {
        ["api", "v1", rest @ ..] => rest,
        ["apis", _, _, rest @ ..] => rest,
        _ => return None,
    };
    let (ns, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
        _ => (None, rest),
    };
    let resource = rest.first()?.to_string();
    Some(Target {
        kind: Kind::of(&resource),
        resource,
        ns,
        name: rest.get(1).map(|s| s.to_string()),
        sub: rest.get(2).map(|s| s.to_string()),
    })
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
        let app = Router::new().fallback(handle).with_state(shared.clone());
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
fn put(shared: &Shared, st: &mut Store, key: Key, mut obj: Value, type_: &'static str) -> Value {
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
fn delete(shared: &Shared, st: &mut Store, key: Key) -> Option<Value> {
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

fn scale_of(obj: &Value) -> Value {
    json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
        "metadata": {"name": obj["metadata"]["name"], "namespace": obj["metadata"]["namespace"],
            "resourceVersion": obj["metadata"]["resourceVersion"]},
        "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(0)},
        "status": {"replicas": obj["status"]["replicas"].as_i64().unwrap_or(0)}})
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let query = query_map(uri.query().unwrap_or(""));
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    shared.lock().requests.push(Recorded {
        method: method.to_string(),
        path: path.clone(),
        query: uri.query().unwrap_or("").to_string(),
        content_type: content_type.clone(),
    });
    let Some(t) = parse_path(&path) else {
        return status(404, "NotFound", format!("no such path {path}"));
    };
    if t.resource == "events" {
        let ev: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        shared.lock().events.push(ev.clone());
        return respond(if method == Method::POST { 201 } else { 200 }, &ev);
    }
    let Some(kind) = t.kind else {
        return status(404, "NotFound", format!("unknown resource {}", t.resource));
    };
    let body: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => return status(400, "BadRequest", format!("bad body: {e}")),
        }
    };
    match (method, t.name.clone()) {
        (Method::GET, None) if query.get("watch").is_some_and(|w| w == "true" || w == "1") => {
            watch_stream(&shared, kind, t.ns, &query)
        }
        (Method::GET, None) => {
            let st = shared.lock();
            let items: Vec<Value> = st
                .objects
                .iter()
                .filter(|(k, v)| {
                    k.0 == kind
                        && t.ns.as_ref().is_none_or(|ns| *ns == k.1)
                        && labels_match(v, query.get("labelSelector"))
                })
                .map(|(_, v)| v.clone())
                .collect();
            respond(
                200,
                &json!({"apiVersion": kind.api_version(), "kind": format!("{}List", kind.name()),
                "metadata": {"resourceVersion": st.rv.to_string()}, "items": items}),
            )
        }
        (Method::GET, Some(name)) => {
            let ns = t.ns.unwrap_or_default();
            match shared.lock().objects.get(&(kind, ns, name.clone())) {
                Some(obj) if t.sub.as_deref() == Some("scale") => respond(200, &scale_of(obj)),
                Some(obj) => respond(200, obj),
                None => status(404, "NotFound", format!("{} {name} not found", kind.name())),
            }
        }
        (Method::POST, None) => {
            let ns = t.ns.unwrap_or_default();
            let Some(name) = body["metadata"]["name"].as_str().map(str::to_string) else {
                return status(422, "Invalid", "metadata.name is required".into());
            };
            let mut st = shared.lock();
            let key = (kind, ns.clone(), name.clone());
            if st.objects.contains_key(&key) {
                return status(
                    409,
                    "AlreadyExists",
                    format!("{} {name} already exists", kind.name()),
                );
            }
            let obj = create(&mut st, &ns, body);
            respond(201, &put(&shared, &mut st, key, obj, "ADDED"))
        }
        (Method::PATCH, Some(name)) => {
            let ns = t.ns.unwrap_or_default();
            let mut st = shared.lock();
            patch_object(
                &shared,
                &mut st,
                (kind, ns, name),
                t.sub.as_deref(),
                &content_type,
                &body,
            )
        }
        (Method::DELETE, Some(name)) => {
            let ns = t.ns.unwrap_or_default();
            let mut st = shared.lock();
            match delete(&shared, &mut st, (kind, ns, name.clone())) {
                Some(obj) => respond(200, &obj),
                None => status(404, "NotFound", format!("{} {name} not found", kind.name())),
            }
        }
        (m, _) => status(405, "MethodNotAllowed", format!("{m} not supported")),
    }
}

fn create(st: &mut Store, ns: &str, mut obj: Value) -> Value {
    st.uid += 1;
    obj["metadata"]["namespace"] = json!(ns);
    obj["metadata"]["uid"] = json!(format!("uid-{}", st.uid));
    obj["metadata"]["creationTimestamp"] = json!(now());
    obj["metadata"]["generation"] = json!(1);
    if let Some(m) = obj.as_object_mut() {
        m.remove("status");
    }
    obj
}

fn patch_object(
    shared: &Shared,
    st: &mut Store,
    key: Key,
    sub: Option<&str>,
    content_type: &str,
    body: &Value,
) -> Response {
    let is_apply = content_type.starts_with("application/apply-patch");
    let existing = st.objects.get(&key).cloned();
    let Some(old) = existing else {
        if is_apply && sub.is_none() {
            let obj = create(st, &key.1, body.clone());
            return respond(201, &put(shared, st, key, obj, "ADDED"));
        }
        return status(
            404,
            "NotFound",
            format!("{} {} not found", key.0.name(), key.2),
        );
    };
    let mut new = old.clone();
    match sub {
        Some("status") => patch::merge(&mut new["status"], &body["status"]),
        Some("scale") => {
            let replicas = body["spec"]["replicas"].clone();
            new["spec"]["replicas"] = replicas;
        }
        Some(other) => return status(404, "NotFound", format!("no subresource {other}")),
        None if content_type.starts_with("application/json-patch") => {
            if let Err(e) = patch::json_patch(&mut new, body) {
                return status(422, "Invalid", e);
            }
        }
        None => {
            let mut b = body.clone();
            if key.0 == Kind::Slot
                && let Some(m) = b.as_object_mut()
            {
                m.remove("status");
            }
            patch::merge(&mut new, &b);
        }
    }
    // Identity fields are the server's.
    for f in [
        "uid",
        "creationTimestamp",
        "namespace",
        "name",
        "deletionTimestamp",
    ] {
        new["metadata"][f] = old["metadata"][f].clone();
    }
    if new["spec"] != old["spec"] {
        let g = old["metadata"]["generation"].as_i64().unwrap_or(1);
        new["metadata"]["generation"] = json!(g + 1);
    }
    let finalizers_gone = new["metadata"]["finalizers"]
        .as_array()
        .is_none_or(|f| f.is_empty());
    let stored = if !old["metadata"]["deletionTimestamp"].is_null() && finalizers_gone {
        if let Some(m) = new["metadata"].as_object_mut() {
            m.remove("finalizers");
        }
        st.objects.insert(key.clone(), new);
        delete(shared, st, key.clone()).unwrap_or(Value::Null)
    } else {
        put(shared, st, key.clone(), new, "MODIFIED")
    };
    if sub == Some("scale") {
        return respond(200, &scale_of(&stored));
    }
    respond(200, &stored)
}

fn watch_stream(
    shared: &Arc<Shared>,
    kind: Kind,
    ns: Option<String>,
    query: &BTreeMap<String, String>,
) -> Response {
    let since: Option<u64> = query
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .filter(|v| *v > 0);
    let selector = query.get("labelSelector").cloned();
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(290), Duration::from_secs);
    let matches = {
        let ns = ns.clone();
        let selector = selector.clone();
        move |e: &WatchEvent| {
            e.kind == kind
                && ns.as_ref().is_none_or(|n| *n == e.ns)
                && labels_match(&e.object, selector.as_ref())
        }
    };
    let (first, mut rx) = {
        let st = shared.lock();
        let rx = shared.tx.subscribe();
        let first: Vec<WatchEvent> = match since {
            Some(rv) => st
                .log
                .iter()
                .filter(|e| e.rv > rv && matches(e))
                .cloned()
                .collect(),
            None => st
                .objects
                .iter()
                .map(|(k, v)| WatchEvent {
                    rv: st.rv,
                    kind: k.0,
                    ns: k.1.clone(),
                    type_: "ADDED",
                    object: v.clone(),
                })
                .filter(&matches)
                .collect(),
        };
        (first, rx)
    };
    let last_sent = first.last().map_or(since.unwrap_or(0), |e| e.rv);
    let (tx, body_rx) = mpsc::channel::<Result<Bytes, Infallible>>(64);
    tokio::spawn(async move {
        let line = |e: &WatchEvent| {
            Bytes::from(format!(
                "{}\n",
                json!({"type": e.type_, "object": e.object})
            ))
        };
        for e in &first {
            if tx.send(Ok(line(e))).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let next = tokio::time::timeout_at(deadline, rx.recv()).await;
            match next {
                Ok(Ok(e)) if e.rv > last_sent && matches(&e) => {
                    if tx.send(Ok(line(&e))).await.is_err() {
                        return;
                    }
                }
                Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
                Ok(Err(broadcast::error::RecvError::Closed)) | Err(_) => return,
            }
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(body_rx);
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert(
        "content-type",
        "application/json".parse().expect("static header"),
    );
    r
}
