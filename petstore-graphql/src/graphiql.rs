//! GraphiQL, served whole from this crate: the page and every script and stylesheet
//! it loads (vendored from the npm registry, see `assets/graphiql/README.md`), each
//! with a Content-Security-Policy that allows nothing from elsewhere, and that no
//! other site may frame.

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// One file under `/graphiql/assets/`.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    /// Versioned names never change content: browsers may keep them.
    immutable: bool,
}

macro_rules! asset {
    ($name:literal, $type:expr, $immutable:literal) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_bytes!(concat!("../assets/graphiql/", $name)),
            immutable: $immutable,
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

static ASSETS: [Asset; 6] = [
    asset!("react-18.3.1.production.min.js", JS, true),
    asset!("react-dom-18.3.1.production.min.js", JS, true),
    asset!("graphiql-4.1.2.min.js", JS, true),
    asset!("graphiql-4.1.2.min.css", CSS, true),
    asset!("boot.js", JS, false),
    asset!("page.css", CSS, false),
];

const PAGE: &str = include_str!("../assets/graphiql/graphiql.html");

/// What the page may load: scripts, styles and fonts from this origin only (the
/// stylesheet embeds its fonts and icons as `data:`), requests to this origin (the
/// WebSocket for subscriptions included), and the one `<style>` element GraphiQL
/// creates, by nonce.
fn page_policy(nonce: &str) -> String {
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self' 'nonce-{nonce}'; \
         font-src 'self' data:; img-src 'self' data:; connect-src 'self'; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
}

/// An asset opened as a page of its own may do nothing at all.
const ASSET_POLICY: &str = "default-src 'none'; frame-ancestors 'none'";

/// The headers every GraphiQL response carries besides its policy.
fn hardening(policy: HeaderValue) -> [(HeaderName, HeaderValue); 3] {
    [
        (header::CONTENT_SECURITY_POLICY, policy),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
    ]
}

/// `GET /graphiql` and `GET /graphiql/assets/<file>`.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let mut router = Router::new().route("/graphiql", get(page));
    for asset in &ASSETS {
        router = router.route(
            &format!("/graphiql/assets/{}", asset.name),
            get(move || async move { serve(asset) }),
        );
    }
    router
}

async fn page() -> Response {
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    // A hex nonce always makes a valid header; the fallback only drops the nonce.
    let policy = HeaderValue::from_str(&page_policy(&nonce))
        .unwrap_or_else(|_| HeaderValue::from_static(ASSET_POLICY));
    (
        hardening(policy),
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        PAGE.replace("{nonce}", &nonce),
    )
        .into_response()
}

fn serve(asset: &'static Asset) -> Response {
    let cache = if asset.immutable {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    (
        hardening(HeaderValue::from_static(ASSET_POLICY)),
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        ],
        asset.body,
    )
        .into_response()
}
