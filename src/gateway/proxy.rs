//! Forwarding a request to a slot and streaming the answer back, chunk by chunk. When the
//! client goes away, axum drops the response body, which drops the upstream body and closes
//! that upstream connection: the provider sees the cancellation at once.

use axum::body::Body;
use axum::http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, header,
};
use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::Full;

use super::OpenAiError;
use super::control::InFlight;
use crate::http_client::{self, Settings};
use crate::model::{Target, UpstreamAuth};

pub type HttpClient = http_client::Client;

/// A pooled keep-alive client (TCP_NODELAY): plain HTTP for local providers, HTTPS (the
/// system's trusted roots) for external upstreams.
pub fn client() -> HttpClient {
    http_client::build(Settings::UPSTREAM)
}

/// Headers that describe one hop, not the message (RFC 9110 §7.6.1), plus ones we set.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

fn copy_headers(from: &HeaderMap, to: &mut HeaderMap, drop_auth: bool) {
    for (k, v) in from {
        let name = k.as_str();
        if HOP_BY_HOP.contains(&name)
            || (drop_auth && (name == "authorization" || name == "x-api-key"))
        {
            continue;
        }
        to.append(k.clone(), v.clone());
    }
}

/// The URL a request for `path_and_query` (starting with `/v1/`) goes to.
fn target_uri(target: &Target, path_and_query: &str) -> Result<Uri, OpenAiError> {
    let s = match target {
        Target::Local { port } => format!("http://127.0.0.1:{port}{path_and_query}"),
        Target::Upstream { base_url, .. } => {
            let rest = path_and_query.strip_prefix("/v1").unwrap_or(path_and_query);
            format!("{base_url}{rest}")
        }
    };
    s.parse().map_err(|e| {
        OpenAiError::new(
            StatusCode::BAD_GATEWAY,
            "server_error",
            format!("bad upstream URL {s:?}: {e}"),
        )
    })
}

/// A request as it goes to the upstream.
pub struct Upstream {
    pub method: Method,
    /// Starts with `/v1/`.
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Sends the request and returns the upstream's response with its body streamed through.
/// `in_flight` lives until the response body is finished or dropped.
pub async fn forward(
    client: &HttpClient,
    target: &Target,
    upstream: Upstream,
    in_flight: InFlight,
) -> Result<Response<Body>, OpenAiError> {
    let Upstream {
        method,
        path_and_query,
        headers,
        body,
    } = upstream;
    let headers = &headers;
    let path_and_query = path_and_query.as_str();
    let uri = target_uri(target, path_and_query)?;
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .body(Full::new(body))
        .map_err(|e| {
            OpenAiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                format!("cannot build upstream request: {e}"),
            )
        })?;
    copy_headers(headers, req.headers_mut(), true);
    // The body may have been rewritten; hyper sets the length of the body it sends.
    req.headers_mut().remove(header::CONTENT_LENGTH);
    if let Target::Upstream {
        api_key_env: Some(env),
        auth,
        ..
    } = target
        && let Ok(key) = std::env::var(env)
    {
        let (name, value) = match auth {
            UpstreamAuth::Bearer => (header::AUTHORIZATION, format!("Bearer {key}")),
            UpstreamAuth::XApiKey => (HeaderName::from_static("x-api-key"), key),
        };
        if let Ok(mut v) = HeaderValue::from_str(&value) {
            v.set_sensitive(true);
            req.headers_mut().insert(name, v);
        }
    }
    let resp = client.request(req).await.map_err(|e| {
        OpenAiError::new(
            StatusCode::BAD_GATEWAY,
            "server_error",
            format!("upstream request failed: {e}"),
        )
        .code("upstream_error")
    })?;
    let (parts, incoming) = resp.into_parts();
    let is_sse = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));
    // The guard rides along with the body: dropped when the body ends or the client leaves.
    let body = incoming.map_frame(move |frame| {
        let _keep = &in_flight;
        frame
    });
    let mut out = Response::new(Body::new(body));
    *out.status_mut() = parts.status;
    copy_headers(&parts.headers, out.headers_mut(), false);
    if is_sse {
        out.headers_mut()
            .insert("x-accel-buffering", HeaderValue::from_static("no"));
        out.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    Ok(out)
}
