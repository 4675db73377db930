//! Rate limiting: the core [`RateLimiter`] in front of every route, keyed by the
//! token's subject or the client's IP address, with the IETF `RateLimit` headers.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use petstore_core::{Principal, RateDecision, RateLimiter};

use crate::extract::Caller;
use crate::problem::problem_response;
use crate::routes::AppState;

/// `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers): `"anonymous";q=300;w=60`.
pub(crate) const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit` (draft-ietf-httpapi-ratelimit-headers): `"anonymous";r=42;t=17`.
pub(crate) const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// What the middleware needs: the app (to authenticate) and the limiter.
#[derive(Debug, Clone)]
pub(crate) struct Limit {
    pub(crate) state: AppState,
    pub(crate) limiter: Arc<RateLimiter>,
}

/// Counts the request against its caller's quota before anything else runs: a
/// refused request gets 429 (problem+json, `Retry-After`) and never reaches a
/// handler, so it changes nothing. The caller is the token's subject; an anonymous
/// caller, or one whose token is rejected (it gets its 401 later, from the route),
/// is keyed by its IP address when the server provides `ConnectInfo<SocketAddr>`, else
/// by one shared key.
pub(crate) async fn limit(
    State(limit): State<Limit>,
    mut request: Request,
    next: Next,
) -> Response {
    let ip = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    let principal = match Caller::authenticate(request.headers(), &limit.state) {
        Ok(caller) => {
            let principal = caller.0.clone();
            // The route's guard and the handler reuse it instead of verifying again.
            request.extensions_mut().insert(caller);
            principal
        }
        Err(_) => Principal::anonymous(),
    };
    let decision = limit.limiter.check(&principal, ip);
    let mut response = match decision.error() {
        Some(refused) => problem_response(&refused),
        None => next.run(request).await,
    };
    set_headers(response.headers_mut(), &decision);
    response
}

fn set_headers(headers: &mut HeaderMap, decision: &RateDecision) {
    for (name, value) in decision.headers() {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    if let Some(secs) = decision.retry_after_secs() {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
}
