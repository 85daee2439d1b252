//! Request bodies: finding the `model` (JSON field or multipart form field), whether the
//! client wants a stream, and rewriting `model` for the provider.

use std::borrow::Cow;
use std::ops::Range;

use bytes::Bytes;

use super::OpenAiError;
use super::json_scan::{self, JsonError};

/// What the gateway needs to know about a request body, read in one pass over it without
/// copying: `model` borrows from the body unless it has escapes.
pub struct Parsed<'a> {
    pub model: Cow<'a, str>,
    /// `"stream": true` in a JSON body.
    pub stream: bool,
    /// Where the JSON value of `model` is in the body (so it can be replaced); `None` for a
    /// form, which is forwarded byte for byte.
    model_span: Option<Range<usize>>,
}

fn not_a_string() -> OpenAiError {
    OpenAiError::bad_request("`model` must be a non-empty string").param("model")
}

/// Reads `model` (and `stream`) from a JSON body or a multipart form.
pub fn parse<'a>(content_type: &str, body: &'a [u8]) -> Result<Parsed<'a>, OpenAiError> {
    if content_type.starts_with("multipart/form-data") {
        let model = multipart_field(content_type, body, "model").ok_or_else(|| {
            OpenAiError::bad_request("the form has no `model` field")
                .param("model")
                .code("missing_model")
        })?;
        return Ok(Parsed {
            model: Cow::Owned(model),
            stream: false,
            model_span: None,
        });
    }
    // Only `model` and `stream` are read here; the rest is checked and skipped, nothing built.
    let (text, [model, stream]) =
        json_scan::members(body, ["model", "stream"]).map_err(|e| match e {
            JsonError::NotAnObject => {
                OpenAiError::bad_request("the request body must be a JSON object")
                    .code("invalid_json")
            }
            JsonError::Duplicate(name) => OpenAiError::bad_request(format!(
                "`{name}` appears more than once in the request body"
            ))
            .param(name)
            .code("invalid_json"),
            e => OpenAiError::bad_request(format!("the request body is not valid JSON: {e}"))
                .code("invalid_json"),
        })?;
    let missing = || {
        OpenAiError::bad_request(
            "the request has no `model`; say which model (slot name, model id or alias) should answer",
        )
        .param("model")
        .code("missing_model")
    };
    let model_span = model.ok_or_else(missing)?;
    let raw: &'a str = &text[model_span.clone()];
    let model = match raw.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(inner) if !inner.contains('\\') => Cow::Borrowed(inner),
        Some(_) => Cow::Owned(serde_json::from_str::<String>(raw).map_err(|_| not_a_string())?),
        None if raw == "null" => return Err(missing()),
        None => return Err(not_a_string()),
    };
    if model.is_empty() {
        return Err(not_a_string());
    }
    let model_span = Some(model_span);
    let stream = stream.is_some_and(|s| &text[s] == "true");
    Ok(Parsed {
        model,
        stream,
        model_span,
    })
}

impl Parsed<'_> {
    /// The body with `model` replaced by `to` (JSON bodies only; everything else in the body is
    /// kept byte for byte), or `None` when it goes on unchanged.
    pub fn rewritten(&self, body: &[u8], to: Option<&str>) -> Option<Bytes> {
        let (Some(span), Some(to)) = (self.model_span.as_ref(), to) else {
            return None;
        };
        let (before, after) = (body.get(..span.start)?, body.get(span.end..)?);
        // Sized exactly, so that the bytes become the `Bytes` without another allocation.
        let mut encoded = Counted(0);
        serde_json::to_writer(&mut encoded, to).ok()?;
        let mut out = Vec::with_capacity(before.len() + encoded.0 + after.len());
        out.extend_from_slice(before);
        serde_json::to_writer(&mut out, to).ok()?;
        out.extend_from_slice(after);
        Some(Bytes::from(out))
    }
}

/// A writer that only counts.
struct Counted(usize);

impl std::io::Write for Counted {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0 += b.len();
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
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
        assert!(parse("application/json", br#"{"model":""}"#).is_err());
        assert_eq!(
            parse("application/json", br#"{"model":null}"#)
                .err()
                .unwrap()
                .code,
            Some("missing_model")
        );
        let duplicate = parse("application/json", br#"{"model":"a","model":"b"}"#)
            .err()
            .unwrap();
        assert_eq!(
            (duplicate.message.as_str(), duplicate.param),
            (
                "`model` appears more than once in the request body",
                Some("model")
            )
        );
        let array = parse("application/json", br#"[{"model":"a"}]"#)
            .err()
            .unwrap();
        assert_eq!(
            (array.message.as_str(), array.code),
            (
                "the request body must be a JSON object",
                Some("invalid_json")
            )
        );
        let broken = parse("application/json", b"{\"model\":\"a\",\n\"messages\":[}")
            .err()
            .unwrap();
        assert_eq!(
            broken.message,
            "the request body is not valid JSON: expected a value at line 2 column 13"
        );
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
        let out = p.rewritten(&raw, Some("Smol\"LM2")).unwrap();
        assert_eq!(
            &out[..],
            br#"{"model":"Smol\"LM2","messages":[],"stream":false}"#,
            "only the model's value changes, byte for byte"
        );
        assert!(
            p.rewritten(&raw, None).is_none(),
            "unchanged bodies are not re-encoded"
        );
        let escaped = br#"{ "stream" : true, "model" : "a\u0062c" }"#;
        let p = parse("application/json", escaped).unwrap();
        assert_eq!(p.model, "abc");
        assert!(p.stream);
        assert_eq!(
            &p.rewritten(escaped, Some("x")).unwrap()[..],
            br#"{ "stream" : true, "model" : "x" }"#
        );
    }
}
