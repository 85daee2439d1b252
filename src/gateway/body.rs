//! Request bodies: finding the `model` (JSON field or multipart form field), whether the
//! client wants a stream, and rewriting `model` for the provider.

use bytes::Bytes;
use serde_json::Value;

use super::OpenAiError;

/// What the gateway needs to know about a request body.
pub struct Parsed {
    pub model: String,
    /// `"stream": true` in a JSON body.
    pub stream: bool,
    /// Whether the body is JSON (so `model` can be rewritten).
    json: bool,
}

/// Reads `model` (and `stream`) from a JSON body or a multipart form.
pub fn parse(content_type: &str, body: &[u8]) -> Result<Parsed, OpenAiError> {
    if content_type.starts_with("multipart/form-data") {
        let model = multipart_field(content_type, body, "model").ok_or_else(|| {
            OpenAiError::bad_request("the form has no `model` field")
                .param("model")
                .code("missing_model")
        })?;
        return Ok(Parsed {
            model,
            stream: false,
            json: false,
        });
    }
    // Only `model` and `stream` are read here; the rest is skipped without building a tree.
    #[derive(serde::Deserialize)]
    struct Head<'a> {
        #[serde(borrow, default)]
        model: Option<std::borrow::Cow<'a, str>>,
        #[serde(default)]
        stream: Option<Value>,
    }
    let head: Head<'_> = serde_json::from_slice(body).map_err(|e| {
        let message = if e.is_data() {
            "`model` must be a non-empty string".to_string()
        } else {
            format!("the request body is not valid JSON: {e}")
        };
        let err = OpenAiError::bad_request(message);
        if e.is_data() {
            err.param("model")
        } else {
            err.code("invalid_json")
        }
    })?;
    let model = match head.model {
        Some(m) if !m.is_empty() => m.into_owned(),
        Some(_) => {
            return Err(
                OpenAiError::bad_request("`model` must be a non-empty string").param("model"),
            );
        }
        None => {
            return Err(OpenAiError::bad_request(
                "the request has no `model`; say which model (slot name, model id or alias) should answer",
            )
            .param("model")
            .code("missing_model"));
        }
    };
    let stream = head
        .stream
        .as_ref()
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok(Parsed {
        model,
        stream,
        json: true,
    })
}

impl Parsed {
    /// The body to send on: unchanged, or with `model` replaced (JSON bodies only; multipart
    /// bodies are forwarded byte for byte).
    pub fn body_for(self, original: Bytes, model: Option<&str>) -> Bytes {
        let (true, Some(m)) = (self.json, model) else {
            return original;
        };
        match serde_json::from_slice::<Value>(&original) {
            Ok(mut v) => {
                v["model"] = Value::String(m.to_string());
                serde_json::to_vec(&v).map(Bytes::from).unwrap_or(original)
            }
            Err(_) => original,
        }
    }
}

/// The value of a simple text field of a multipart form.
fn multipart_field(content_type: &str, body: &[u8], name: &str) -> Option<String> {
    let boundary = content_type
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("boundary="))
        .next()?
        .trim_matches('"');
    let delim = format!("--{boundary}");
    let text = String::from_utf8_lossy(body);
    let want = format!("name=\"{name}\"");
    for part in text.split(delim.as_str()) {
        let Some((head, value)) = part.split_once("\r\n\r\n") else {
            continue;
        };
        let is_field = head.lines().any(|l| {
            l.to_ascii_lowercase().starts_with("content-disposition")
                && l.split(';').any(|p| p.trim() == want)
        });
        if is_field {
            return Some(value.trim_end_matches("\r\n").trim().to_string());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_comes_from_json_or_a_form() {
        assert_eq!(
            parse("application/json", br#"{"model":"m"}"#)
                .unwrap()
                .model,
            "m"
        );
        assert!(
            parse("application/json", br#"{"model":"m","stream":true}"#)
                .unwrap()
                .stream
        );
        assert!(parse("application/json", b"{").is_err());
        assert_eq!(
            parse("application/json", b"{}").err().unwrap().code,
            Some("missing_model")
        );
        assert!(parse("application/json", br#"{"model":3}"#).is_err());
        let form = "--XX\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\nRIFF..\r\n--XX\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper\r\n--XX--\r\n";
        assert_eq!(
            parse("multipart/form-data; boundary=XX", form.as_bytes())
                .unwrap()
                .model,
            "whisper"
        );
    }

    #[test]
    fn rewriting_replaces_only_the_model() {
        let raw = Bytes::from_static(br#"{"model":"primary","messages":[],"stream":false}"#);
        let p = parse("application/json", &raw).unwrap();
        let out = p.body_for(raw.clone(), Some("SmolLM2"));
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["model"], "SmolLM2");
        assert_eq!(v["stream"], false);
        let p = parse("application/json", &raw).unwrap();
        assert_eq!(
            p.body_for(raw.clone(), None),
            raw,
            "unchanged bodies are not re-encoded"
        );
    }
}
