//! Who may read and write. Every `/api` request must name one of hal0's own names in `Host`
//! (no DNS rebinding). Reads are then open (like `/v1/models`); writes (every method but
//! GET/HEAD/OPTIONS) must carry JSON (or no body), must not come from another web origin, and
//! need `Authorization: Bearer <token>` when `server.admin_token_env` is set, and when hal0
//! listens beyond loopback (then an admin token must be configured at all). Together these keep
//! a page in the user's browser from driving a loopback hal0.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, ApiState};

pub async fn require_admin(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    if let Err(e) = served_host(&state, req.headers()) {
        return e.into_response();
    }
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    match check(&state, req.headers()) {
        Ok(()) => next.run(req).await,
        Err(e) => {
            let unauthorized = e.status == StatusCode::UNAUTHORIZED;
            let mut resp = e.into_response();
            if unauthorized {
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"hal0 admin\""),
                );
            }
            resp
        }
    }
}

fn check(state: &ApiState, headers: &HeaderMap) -> Result<(), ApiError> {
    same_origin(headers)?;
    json_only(headers)?;
    let token_env = state.desired.borrow().server.admin_token_env.clone();
    let beyond_loopback = !state.listen.ip().is_loopback();
    let Some(var) = token_env else {
        if beyond_loopback {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "admin_token_required",
                format!(
                    "hal0 listens on {}, beyond loopback, so writes need an admin token; set \
                     server.admin_token_env to the name of an environment variable holding one",
                    state.listen
                ),
            ));
        }
        return Ok(());
    };
    let Some(expected) = std::env::var(&var).ok().filter(|t| !t.is_empty()) else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "admin_token_unset",
            format!(
                "server.admin_token_env names {var}, which is not set in hal0's environment; \
                 writes are refused until it is"
            ),
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(t) if constant_time_eq(t.as_bytes(), expected.as_bytes()) => Ok(()),
        Some(_) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_admin_token",
            "the admin token is wrong",
        )),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "admin_token_missing",
            format!(
                "writes need the admin token: send Authorization: Bearer <the value of ${var}>"
            ),
        )),
    }
}

/// A write's body must be JSON (`Content-Type: application/json` or `…+json`); a write without
/// a body may leave the type out. A web page can send `text/plain`, a form or a typeless blob to
/// any address without asking first; it cannot send JSON without a CORS preflight, which hal0
/// never grants.
fn json_only(headers: &HeaderMap) -> Result<(), ApiError> {
    let content_type = headers.get(header::CONTENT_TYPE);
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0");
    let is_json = |v: &HeaderValue| {
        let essence = v
            .to_str()
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        essence == "application/json"
            || (essence.starts_with("application/") && essence.ends_with("+json"))
    };
    match content_type {
        Some(v) if is_json(v) => Ok(()),
        None if !has_body => Ok(()),
        other => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "writes take a JSON body: send Content-Type: application/json (this request had {})",
                other.map_or_else(
                    || "a body and no Content-Type".to_string(),
                    |v| format!("{:?}", v.to_str().unwrap_or("a non-text value"))
                )
            ),
        )),
    }
}

/// Every `/api` request must name, in `Host`, a name hal0 is served under: an IP address (the
/// listen address, loopback, or any of the machine's), `localhost` or `*.localhost`, or a name
/// in `server.allowed_hosts`. A page whose own name was re-pointed at 127.0.0.1 (DNS rebinding)
/// sends its own name, and is refused.
fn served_host(state: &ApiState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::HOST) else {
        return Ok(());
    };
    let host = value.to_str().ok().map(host_name);
    let allowed = host.as_deref().is_some_and(|h| {
        let listen = state.listen.ip().to_string();
        h == listen || host_allowed(h, &state.desired.borrow().server.allowed_hosts)
    });
    if allowed {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "host_not_allowed",
        format!(
            "hal0 is not served under the name {:?}; use an IP address or localhost, or add the \
             name to server.allowed_hosts",
            host.unwrap_or_default()
        ),
    ))
}

/// The host name of a `Host` header or an origin's authority, lower-case, without the port or
/// an IPv6 address's brackets.
fn host_name(authority: &str) -> String {
    let a = authority.trim();
    let name = if let Some(rest) = a.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        match a.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => a,
        }
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Whether `host` (from [`host_name`]) is an address or a name hal0 accepts.
fn host_allowed(host: &str, allowed: &[String]) -> bool {
    if host.parse::<std::net::IpAddr>().is_ok()
        || host == "localhost"
        || host.ends_with(".localhost")
    {
        return true;
    }
    allowed.iter().any(|a| match a.strip_prefix("*.") {
        Some(suffix) => host
            .strip_suffix(suffix)
            .is_some_and(|head| head.ends_with('.')),
        None => a == host,
    })
}

/// A browser names the page's origin on writes; it must be the origin the request was sent to
/// (scheme and the `Host`, which [`served_host`] has checked is one of hal0's names).
fn same_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("null");
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .unwrap_or_default();
    if !host.is_empty() && origin_host.eq_ignore_ascii_case(host) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "cross_origin",
        format!("writes from another web origin ({origin}) are refused"),
    ))
}

/// Compares without an early exit, so the time taken does not tell how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use axum::body::Body;
    use tokio::sync::watch;
    use tower::ServiceExt;

    use crate::api::{SlotAdmin, router};
    use crate::config::store::ConfigStore;
    use crate::model::SlotName;
    use crate::source::ConfigPublisher;

    struct NoSlots;

    impl SlotAdmin for NoSlots {
        fn load(&self, _: &SlotName) {}
        fn unload(&self, _: &SlotName) {}
        fn logs(&self, _: &SlotName, _: usize) -> Option<Vec<String>> {
            None
        }
    }

    fn state(listen: &str) -> ApiState {
        let path = std::path::Path::new("/nonexistent/hal0.toml");
        let (publisher, desired, reports) =
            ConfigPublisher::new(path, String::new(), Default::default());
        ApiState {
            statuses: watch::channel(Arc::default()).1,
            applied: desired.clone(),
            desired,
            reports,
            publisher,
            store: Arc::new(ConfigStore::new(path)),
            admin: Arc::new(NoSlots),
            listen: listen.parse().unwrap(),
            shutdown: watch::channel(false).1,
            pulls: Default::default(),
        }
    }

    async fn call(state: ApiState, method: &str, path: &str) -> (StatusCode, serde_json::Value) {
        let req = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .unwrap();
        let resp = router(state).oneshot(req).await.unwrap();
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&body).unwrap_or_default())
    }

    #[tokio::test]
    async fn beyond_loopback_writes_are_refused_until_an_admin_token_is_configured() {
        let (status, body) = call(state("0.0.0.0:8080"), "POST", "/api/slots/x/load").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(body["error"]["code"], "admin_token_required");
        let (status, _) = call(state("0.0.0.0:8080"), "GET", "/api/slots").await;
        assert_eq!(status, StatusCode::OK, "reads stay open");
        let (status, body) = call(state("127.0.0.1:8080"), "POST", "/api/slots/x/load").await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "on loopback the write is let through"
        );
        assert_eq!(body["error"]["code"], "slot_not_found");
    }

    #[test]
    fn only_hal0s_own_names_are_served() {
        let allowed = vec!["hal0.lan".to_string(), "*.example.org".to_string()];
        for ok in [
            "127.0.0.1:8080",
            "[::1]:8080",
            "localhost:8080",
            "LOCALHOST",
            "app.localhost:1",
            "192.168.1.7:8080",
            "hal0.lan:8080",
            "hal0.lan.",
            "a.example.org",
        ] {
            assert!(host_allowed(&host_name(ok), &allowed), "{ok}");
        }
        for bad in [
            "rebind.example:8080",
            "example.org",
            "evilexample.org",
            "localhost.evil.com",
            "hal0.lan.evil.com",
            "",
        ] {
            assert!(!host_allowed(&host_name(bad), &allowed), "{bad}");
        }
    }

    #[test]
    fn writes_take_json_or_no_body() {
        let with = |pairs: &[(header::HeaderName, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(k.clone(), HeaderValue::from_static(v));
            }
            json_only(&h).map_err(|e| (e.status, e.code))
        };
        assert!(with(&[]).is_ok());
        assert!(with(&[(header::CONTENT_LENGTH, "0")]).is_ok());
        assert!(with(&[(header::CONTENT_TYPE, "application/json; charset=utf-8")]).is_ok());
        assert!(with(&[(header::CONTENT_TYPE, "application/merge-patch+json")]).is_ok());
        let refused = Err((StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"));
        assert_eq!(with(&[(header::CONTENT_TYPE, "text/plain")]), refused);
        assert_eq!(
            with(&[(header::CONTENT_TYPE, "application/x-www-form-urlencoded")]),
            refused
        );
        assert_eq!(with(&[(header::CONTENT_LENGTH, "12")]), refused);
    }

    #[test]
    fn tokens_compare_exactly() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn only_this_servers_origin_may_write() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(same_origin(&h).is_ok());
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert!(same_origin(&h).is_ok());
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert_eq!(same_origin(&h).unwrap_err().code, "cross_origin");
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(same_origin(&h).is_err());
    }
}
