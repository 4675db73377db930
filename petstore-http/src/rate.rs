//! The IETF `RateLimit` headers (draft-ietf-httpapi-ratelimit-headers) of a
//! [`RateDecision`].

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use petstore_core::RateDecision;

/// `RateLimit-Policy`: `"anonymous";q=300;w=60`.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`: `"anonymous";r=42;t=17`.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// Sets `RateLimit-Policy`, `RateLimit` and, for a refusal, `Retry-After`.
pub fn set_rate_limit_headers(headers: &mut HeaderMap, decision: &RateDecision) {
    for (name, value) in decision.headers() {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    if let Some(secs) = decision.retry_after_secs() {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    }
}
