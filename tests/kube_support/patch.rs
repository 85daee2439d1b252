//! JSON merge patch (RFC 7386) and the JSON patch (RFC 6902) operations kube-runtime sends.

use serde_json::Value;

/// Applies a merge patch in place.
pub fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let Value::Object(t) = target else { return };
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

fn unescape(s: &str) -> String {
    s.replace("~1", "/").replace("~0", "~")
}

fn parent<'a>(doc: &'a mut Value, path: &str) -> Result<(&'a mut Value, String), String> {
    let mut parts: Vec<String> = path.split('/').skip(1).map(unescape).collect();
    let last = parts.pop().ok_or("empty path")?;
    let mut cur = doc;
    for p in parts {
        cur = match cur {
            Value::Object(m) => m.get_mut(&p).ok_or(format!("no {p} in {path}"))?,
            Value::Array(a) => {
                let i: usize = p.parse().map_err(|_| format!("bad index {p}"))?;
                a.get_mut(i).ok_or(format!("no index {i}"))?
            }
            _ => return Err(format!("cannot descend into {p}")),
        };
    }
    Ok((cur, last))
}

/// Applies a JSON patch; `Err` when a `test` fails or a path is missing.
pub fn json_patch(doc: &mut Value, ops: &Value) -> Result<(), String> {
    for op in ops.as_array().ok_or("patch is not an array")? {
        let kind = op["op"].as_str().ok_or("no op")?;
        let path = op["path"].as_str().ok_or("no path")?;
        let value = op.get("value").cloned().unwrap_or(Value::Null);
        let (parent, key) = parent(doc, path)?;
        match (kind, parent) {
            ("test", Value::Object(m)) => {
                // A missing member tests equal to null, as on the API server.
                if m.get(&key).unwrap_or(&Value::Null) != &value {
                    return Err(format!("test failed at {path}"));
                }
            }
            ("test", Value::Array(a)) => {
                let i: usize = key.parse().map_err(|_| "bad index")?;
                if a.get(i) != Some(&value) {
                    return Err(format!("test failed at {path}"));
                }
            }
            ("add" | "replace", Value::Object(m)) => {
                m.insert(key, value);
            }
            ("add", Value::Array(a)) => {
                if key == "-" {
                    a.push(value);
                } else {
                    let i: usize = key.parse().map_err(|_| "bad index")?;
                    a.insert(i.min(a.len()), value);
                }
            }
            ("replace", Value::Array(a)) => {
                let i: usize = key.parse().map_err(|_| "bad index")?;
                *a.get_mut(i).ok_or("no index")? = value;
            }
            ("remove", Value::Object(m)) => {
                m.remove(&key).ok_or(format!("nothing at {path}"))?;
            }
            ("remove", Value::Array(a)) => {
                let i: usize = key.parse().map_err(|_| "bad index")?;
                if i >= a.len() {
                    return Err(format!("nothing at {path}"));
                }
                a.remove(i);
            }
            (other, _) => return Err(format!("unsupported op {other} at {path}")),
        }
    }
    Ok(())
}
