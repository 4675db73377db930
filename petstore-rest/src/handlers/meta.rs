//! `GET /openapi.json` and `GET /docs`.

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::routes::AppState;

pub(crate) async fn openapi(State(s): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        s.openapi.clone(),
    )
        .into_response()
}

/// What the docs page may do: run its own script and stylesheet, call this API, and
/// nothing else (no remote origin, no inline code, no framing by other sites).
const PAGE_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
/// A script or stylesheet opened as a page of its own may do nothing at all.
const ASSET_POLICY: &str = "default-src 'none'; frame-ancestors 'none'";

/// A file of the docs page with its type and policy, plus no sniffing and no referrer.
fn page_file(content_type: &'static str, policy: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, policy),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// A page (everything it loads is served beside it) that renders `openapi.json` and
/// can send requests.
pub(crate) async fn docs() -> Response {
    page_file(
        "text/html; charset=utf-8",
        PAGE_POLICY,
        include_str!("../docs.html"),
    )
}

/// The docs page's script.
pub(crate) async fn docs_script() -> Response {
    page_file(
        "text/javascript; charset=utf-8",
        ASSET_POLICY,
        include_str!("../docs.js"),
    )
}

/// The docs page's stylesheet.
pub(crate) async fn docs_stylesheet() -> Response {
    page_file(
        "text/css; charset=utf-8",
        ASSET_POLICY,
        include_str!("../docs.css"),
    )
}
