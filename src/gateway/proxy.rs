//! Forwarding a request to a slot and streaming the answer back, chunk by chunk. When the
//! client goes away, the server drops the response body, which drops the upstream body and closes
//! that upstream connection: the provider sees the cancellation at once.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::http::uri::PathAndQuery;
use axum::http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, header,
};
use bytes::Bytes;
use hyper::body::{Frame, SizeHint};

use super::control::InFlight;
use super::reply::{Reply, ReplyBody};
use super::{OpenAiError, targets};
use crate::http_client::{Pool, PooledBody};

/// Headers that describe one hop, not the message (RFC 9110 §7.6.1), plus ones we set.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::HOST,
];

/// Besides [`HOP_BY_HOP`], what the client's request must not carry upstream: its own
/// credentials (the slot's are added), and its length (the body may have been rewritten).
const NOT_FORWARDED: [HeaderName; 3] = [
    header::AUTHORIZATION,
    HeaderName::from_static("x-api-key"),
    header::CONTENT_LENGTH,
];

/// Removes the [`HOP_BY_HOP`] headers and those `also` lists, in place (the map is forwarded,
/// not copied). The map's own names are looked at once: a message carries a handful of
/// headers and one or two of these, so only those are hashed and removed.
fn strip(headers: &mut HeaderMap, also: &[HeaderName]) {
    // As many as HOP_BY_HOP and NOT_FORWARDED name together.
    let mut found: [Option<HeaderName>; 12] = Default::default();
    let mut n = 0;
    for name in headers.keys() {
        if n < found.len() && (HOP_BY_HOP.contains(name) || also.contains(name)) {
            found[n] = Some(name.clone());
            n += 1;
        }
    }
    for name in found.iter().flatten() {
        headers.remove(name);
    }
}

pub fn upstream_failed(e: impl std::fmt::Display) -> OpenAiError {
    OpenAiError::new(
        StatusCode::BAD_GATEWAY,
        "server_error",
        format!("upstream request failed: {e}"),
    )
    .code("upstream_error")
}

/// A request as it goes to the upstream: the client's method, path and headers (moved, not
/// copied) and its body (possibly with `model` rewritten).
pub struct Upstream {
    pub method: Method,
    /// Starts with `/v1/`.
    pub path_and_query: PathAndQuery,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// The upstream request: the client's, moved, with the slot's host, path and key; sent with
/// the returned pool (`routes::send`), its answer goes back through [`response`].
pub fn request(
    target: &targets::Upstream,
    upstream: Upstream,
) -> Result<(&Arc<Pool>, Request<Bytes>), OpenAiError> {
    let Upstream {
        method,
        path_and_query,
        mut headers,
        body,
    } = upstream;
    strip(&mut headers, &NOT_FORWARDED);
    let targets::Upstream::Ready {
        pool,
        host,
        prefix,
        auth,
    } = target
    else {
        let targets::Upstream::Invalid(why) = target else {
            unreachable!("an upstream is ready or invalid")
        };
        return Err(OpenAiError::new(
            StatusCode::BAD_GATEWAY,
            "server_error",
            why.clone(),
        ));
    };
    headers.insert(header::HOST, host.clone());
    if let Some((name, value)) = auth {
        headers.insert(name, value.clone());
    }
    let path_and_query = match prefix {
        None => path_and_query,
        Some(prefix) => {
            let pq = path_and_query.as_str();
            let rest = pq.strip_prefix("/v1").unwrap_or(pq);
            PathAndQuery::try_from(format!("{prefix}{rest}")).map_err(|e| {
                OpenAiError::new(
                    StatusCode::BAD_GATEWAY,
                    "server_error",
                    format!("bad upstream URL {prefix}{rest}: {e}"),
                )
            })?
        }
    };
    let mut req = Request::new(body);
    *req.method_mut() = method;
    *req.uri_mut() = Uri::from(path_and_query);
    *req.headers_mut() = headers;
    Ok((pool, req))
}

/// The client's response: the upstream's, its hop-by-hop headers removed, the body carrying
/// `in_flight` (which lives until the body is finished or dropped).
pub fn response(resp: Response<PooledBody>, in_flight: InFlight) -> Reply {
    let resp = resp.map(|b| ReplyBody::Upstream(InFlightBody::new(b, in_flight)));
    let (mut parts, body) = resp.into_parts();
    let is_sse = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));
    strip(&mut parts.headers, &[]);
    if is_sse {
        parts
            .headers
            .insert("x-accel-buffering", HeaderValue::from_static("no"));
        parts
            .headers
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    Response::from_parts(parts, body)
}

/// An upstream response body carrying its request's [`InFlight`]: dropped when the body ends
/// or the client leaves.
pub struct InFlightBody<B> {
    inner: B,
    in_flight: Option<InFlight>,
}

impl<B> InFlightBody<B> {
    fn new(inner: B, in_flight: InFlight) -> Self {
        InFlightBody {
            inner,
            in_flight: Some(in_flight),
        }
    }
}

impl<B> hyper::body::Body for InFlightBody<B>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = r {
            self.in_flight = None;
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_listed_headers_are_removed_every_value_of_them() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("host", "client"),
            ("content-type", "application/json"),
            ("Authorization", "Bearer client-key"),
            ("x-api-key", "k"),
            ("content-length", "12"),
            ("connection", "keep-alive"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("te", "gzip"),
            ("x-request-id", "7"),
            ("upgrade", "h2c"),
            ("trailer", "x"),
            ("transfer-encoding", "chunked"),
            ("proxy-authorization", "p"),
            ("proxy-authenticate", "p"),
        ] {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_static(v),
            );
        }
        let mut response = h.clone();
        strip(&mut h, &NOT_FORWARDED);
        let kept = |h: &HeaderMap| {
            let mut names: Vec<_> = h.keys().map(|k| k.as_str().to_string()).collect();
            names.sort();
            names
        };
        assert_eq!(kept(&h), ["content-type", "x-request-id"]);
        strip(&mut response, &[]);
        assert_eq!(
            kept(&response),
            [
                "authorization",
                "content-length",
                "content-type",
                "x-api-key",
                "x-request-id"
            ]
        );
    }
}
