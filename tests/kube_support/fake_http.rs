//! The HTTP side of the fake API server: paths, queries, list/get/create/patch/delete, the
//! Slot status and scale subresources, and watch streams replayed from a resourceVersion.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::fake_api::{Key, Kind, Recorded, Shared, Store, WatchEvent, delete, now, put};
use super::patch;

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

pub fn labels_match(obj: &Value, selector: Option<&String>) -> bool {
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

fn scale_of(obj: &Value) -> Value {
    json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
        "metadata": {"name": obj["metadata"]["name"], "namespace": obj["metadata"]["namespace"],
            "resourceVersion": obj["metadata"]["resourceVersion"]},
        "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(0)},
        "status": {"replicas": obj["status"]["replicas"].as_i64().unwrap_or(0)}})
}

pub async fn handle(
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
