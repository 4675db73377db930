//! Rate limiting: the core [`RateLimiter`](petstore_core::RateLimiter) in front of every
//! HTTP request and every WebSocket operation, with the IETF `RateLimit` headers.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use petstore_core::{Principal, RateDecision};

use crate::error::core_error;
use crate::http::{App, errors_response, principal};

/// The client address, when the server provides `ConnectInfo<SocketAddr>`.
pub(crate) fn client_ip(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
}

/// Counts the request against its caller's quota before it is read: a refused one gets
/// HTTP 429 with a GraphQL error (`extensions.code = "RATE_LIMITED"`,
/// `extensions.retryAfter`) and `Retry-After`, and never runs. A rejected token counts
/// against the client IP (the handler then answers 401).
pub(crate) async fn limit(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let Some(limiter) = &app.limiter else {
        return next.run(request).await;
    };
    let (parts, body) = request.into_parts();
    let who = principal(&app.store, &parts.headers).unwrap_or_else(|_| Principal::anonymous());
    let decision = limiter.check(&who, client_ip(&parts));
    let mut response = match decision.error() {
        Some(refused) => errors_response(StatusCode::TOO_MANY_REQUESTS, vec![core_error(&refused)]),
        None => next.run(Request::from_parts(parts, body)).await,
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
