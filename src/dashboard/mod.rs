//! The web dashboard at `/`: one page (HTML, CSS and JavaScript embedded in the binary, no
//! build step, no separate server) that drives the management API: the Slots view updating
//! live from `/api/events`, the Add slot form, Load/Unload/Delete, per-slot logs and the
//! config's errors.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

const INDEX: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// The dashboard's routes; stateless, the page talks to `/api` itself.
pub fn router() -> Router {
    Router::new()
        .route("/", get(|| asset("text/html; charset=utf-8", INDEX)))
        .route(
            "/assets/app.js",
            get(|| asset("text/javascript; charset=utf-8", APP_JS)),
        )
        .route(
            "/assets/style.css",
            get(|| asset("text/css; charset=utf-8", STYLE_CSS)),
        )
}

async fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // The page is tiny and changes with the binary; never serve a stale one.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}
