//! Who may write. Reads are open (like `/v1/models`); writes (every method but GET/HEAD/OPTIONS)
//! need `Authorization: Bearer <token>` when `server.admin_token_env` is set, and when hal0
//! listens beyond loopback (then an admin token must be configured at all). Writes from another
//! web origin are refused either way, so a page in the user's browser cannot drive a loopback
//! hal0 (a POST without a body needs no CORS preflight).

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, ApiState};

pub async fn require_admin(State(state): State<ApiState>, req: Request, next: Next) -> Response {
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

/// A browser names the page's origin on writes; it must be this server's.
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

    struct NoSlots;

    impl SlotAdmin for NoSlots {
        fn load(&self, _: &SlotName) {}
        fn unload(&self, _: &SlotName) {}
        fn logs(&self, _: &SlotName, _: usize) -> Option<Vec<String>> {
            None
        }
    }

    fn state(listen: &str) -> ApiState {
        ApiState {
            statuses: watch::channel(Arc::default()).1,
            desired: watch::channel(Arc::default()).1,
            reports: watch::channel(Arc::default()).1,
            store: Arc::new(ConfigStore::new("/nonexistent/hal0.toml")),
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
