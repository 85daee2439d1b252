//! The HTTP side of a pull: one GET (optionally from a byte offset) that follows redirects,
//! over plain HTTP or HTTPS with the system's root certificates.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Uri, header};
use http_body_util::Full;
use hyper::body::Incoming;

use super::PullError;
use crate::http_client::{self, Settings};

/// Redirects followed before giving up (hubs redirect once or twice, to a CDN).
const MAX_REDIRECTS: usize = 10;
/// How long to wait for response headers.
const HEADERS_TIMEOUT: Duration = Duration::from_secs(60);

pub type HttpsClient = http_client::Client;

/// A client for `http://` and `https://` URLs, and whether HTTPS works: it needs the system's
/// root certificates; when there are none, only plain HTTP works (and an HTTPS URL fails with
/// a clear error).
pub fn client() -> (HttpsClient, bool) {
    (
        http_client::build(Settings::PULL),
        http_client::has_tls_roots(),
    )
}

/// A response after redirects, with headers seen on the way (hubs put the checksum on the
/// redirect, not on the CDN's answer).
pub struct Fetched {
    pub response: Response<Incoming>,
    /// The headers of every response in the redirect chain, first to last.
    pub chain: Vec<HeaderMap>,
    pub url: String,
}

/// GET `url`, from byte `from` on when it is not 0. `auth` is sent only to `auth_origin`
/// (a token for the hub must not leak to the CDN it redirects to).
pub async fn get(
    client: &HttpsClient,
    url: &str,
    from: u64,
    auth: Option<(&str, &str)>,
) -> Result<Fetched, PullError> {
    let mut url = url.to_string();
    let mut chain = Vec::new();
    for _ in 0..=MAX_REDIRECTS {
        let uri: Uri = url.parse().map_err(|_| PullError::BadUrl(url.clone()))?;
        let mut req = Request::get(uri.clone()).header(
            header::USER_AGENT,
            concat!("hal0/", env!("CARGO_PKG_VERSION")),
        );
        if from > 0 {
            req = req.header(header::RANGE, format!("bytes={from}-"));
        }
        if let Some((origin, token)) = auth
            && origin_of(&uri).as_deref() == Some(origin)
            && let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}"))
        {
            req = req.header(header::AUTHORIZATION, v);
        }
        let req = req
            .body(Full::new(Bytes::new()))
            .map_err(|_| PullError::BadUrl(url.clone()))?;
        let response = tokio::time::timeout(HEADERS_TIMEOUT, client.request(req))
            .await
            .map_err(|_| PullError::Stalled { url: url.clone() })?
            .map_err(|e| PullError::RequestFailed {
                url: url.clone(),
                source: Box::new(e),
            })?;
        chain.push(response.headers().clone());
        if response.status().is_redirection() && response.status() != StatusCode::NOT_MODIFIED {
            let location = response
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| PullError::BadRedirect { url: url.clone() })?;
            url = resolve(&uri, location)
                .ok_or_else(|| PullError::BadRedirect { url: url.clone() })?;
            continue;
        }
        return Ok(Fetched {
            response,
            chain,
            url,
        });
    }
    Err(PullError::TooManyRedirects { url })
}

/// `scheme://authority` of a URI.
pub fn origin_of(uri: &Uri) -> Option<String> {
    Some(format!("{}://{}", uri.scheme_str()?, uri.authority()?))
}

/// A `Location` against the URL it came from, by RFC 3986 (the `url` crate: absolute,
/// scheme-relative `//host/…`, absolute-path, relative with `..`, query-only). Redirects are
/// followed here rather than by a generic middleware because a pull needs each hop's headers
/// (a hub puts the checksum on its redirect, not on the CDN's answer) and sends the token only
/// to the hub's own origin.
fn resolve(base: &Uri, location: &str) -> Option<String> {
    let base = url::Url::parse(&base.to_string()).ok()?;
    let next = base.join(location).ok()?;
    matches!(next.scheme(), "http" | "https").then(|| next.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_resolve_against_the_request_url() {
        let base: Uri = "http://hub.test:8/a/b/c?x=1".parse().unwrap();
        assert_eq!(
            resolve(&base, "https://cdn.test/f").unwrap(),
            "https://cdn.test/f"
        );
        assert_eq!(resolve(&base, "/x/y").unwrap(), "http://hub.test:8/x/y");
        assert_eq!(resolve(&base, "d").unwrap(), "http://hub.test:8/a/b/d");
        assert_eq!(
            resolve(&base, "//cdn.test/f?sig=1").unwrap(),
            "http://cdn.test/f?sig=1"
        );
        assert_eq!(resolve(&base, "../up").unwrap(), "http://hub.test:8/a/up");
        assert_eq!(
            resolve(&base, "?y=2").unwrap(),
            "http://hub.test:8/a/b/c?y=2"
        );
        assert_eq!(resolve(&base, "ftp://elsewhere/f"), None);
    }
}
