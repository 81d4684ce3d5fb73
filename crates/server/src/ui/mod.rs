//! The web UI at `/ui`: a dashboard of services, instances, checks and gateway traffic.
//!
//! It is three hand-written files (`assets/`: HTML, CSS and vanilla JavaScript with inline SVG
//! charts) compiled into the binary, so an operator gets it with nothing to install and no
//! Node build step, and it can never be out of step with the agent that serves it (issue 8).
//! The page reads only the public API — `/v1/watch` (Server-Sent Events) for instances and
//! their health as they change, `/v1/health/state/any` for check output and latency,
//! `/v1/routes` and `/v1/agent/metrics` for the gateway — so it shows nothing a script could
//! not, and needs no API of its own.
//!
//! These are pages, not API operations: they are merged beside the documented routes
//! ([`crate::api::router`]) and are deliberately absent from `/v1/openapi.json`.

mod asset;

use asset::Asset;
use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The page itself.
const INDEX: Asset = Asset::new(
    include_bytes!("assets/index.html"),
    "text/html; charset=utf-8",
);
/// The script that fills the page from the API.
const APP_JS: Asset = Asset::new(
    include_bytes!("assets/app.js"),
    "text/javascript; charset=utf-8",
);
/// The page's styles.
const STYLE_CSS: Asset = Asset::new(
    include_bytes!("assets/style.css"),
    "text/css; charset=utf-8",
);

/// The UI's routes: `/ui` and `/ui/` (the page), `/ui/app.js`, `/ui/style.css`, and a plain 404
/// for anything else under `/ui/`. Generic over the state so it merges into any router.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/ui", get(|h: HeaderMap| async move { INDEX.serve(&h) }))
        .route("/ui/", get(|h: HeaderMap| async move { INDEX.serve(&h) }))
        .route(
            "/ui/app.js",
            get(|h: HeaderMap| async move { APP_JS.serve(&h) }),
        )
        .route(
            "/ui/style.css",
            get(|h: HeaderMap| async move { STYLE_CSS.serve(&h) }),
        )
        .route("/ui/{*rest}", get(unknown_asset))
}

/// Anything else under `/ui/`: a short text 404 (a browser shows it as it is; the API's JSON
/// errors are for programs).
async fn unknown_asset() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "no such file in the Wayfinder UI; the page is at /ui\n",
    )
        .into_response()
}
