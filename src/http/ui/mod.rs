//! The management web UI: one HTML page at `/` with hash routes (`#/queues`), its
//! stylesheet and JavaScript modules under `/assets/`. Every file is compiled into the
//! binary; the page loads nothing from other hosts (its Content-Security-Policy forbids
//! it) and talks to the JSON API under `/api/` with the user's basic-auth credentials.

use super::Api;
use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// One embedded file: its path under `/assets/` and its media type.
struct Asset {
    path: &'static str,
    mime: &'static str,
    body: &'static [u8],
}

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const SVG: &str = "image/svg+xml";

macro_rules! asset {
    ($path:literal, $mime:expr) => {
        Asset {
            path: $path,
            mime: $mime,
            body: include_bytes!(concat!("assets/", $path)),
        }
    };
}

/// The page itself, served at `/`.
const INDEX: Asset = asset!("index.html", HTML);

/// Everything the page loads, served at `/assets/<path>`.
const ASSETS: &[Asset] = &[
    asset!("app.css", CSS),
    asset!("favicon.svg", SVG),
    asset!("js/api.js", JS),
    asset!("js/app.js", JS),
    asset!("js/chart.js", JS),
    asset!("js/page.js", JS),
    asset!("js/ui.js", JS),
    asset!("js/pages/access.js", JS),
    asset!("js/pages/bindings.js", JS),
    asset!("js/pages/connections.js", JS),
    asset!("js/pages/definitions.js", JS),
    asset!("js/pages/exchange.js", JS),
    asset!("js/pages/exchanges.js", JS),
    asset!("js/pages/messages.js", JS),
    asset!("js/pages/overview.js", JS),
    asset!("js/pages/policies.js", JS),
    asset!("js/pages/queue.js", JS),
    asset!("js/pages/queues.js", JS),
];

/// Scripts, styles, images and API calls from this origin only; no framing, no plugins.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

/// The routes of the page and its assets. Unknown paths fall through to the API's 404.
pub fn routes() -> Router<Api> {
    let mut router = Router::new().route("/", get(|| async { serve(&INDEX) }));
    for asset in ASSETS {
        router = router.route(
            &format!("/assets/{}", asset.path),
            get(move || async move { serve(asset) }),
        );
    }
    router
}

fn serve(asset: &'static Asset) -> Response {
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static(asset.mime)),
        // Revalidate every time: a new binary serves new files under the same names.
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            HeaderValue::from_static("same-origin"),
        ),
    ];
    (headers, asset.body).into_response()
}
