//! Request handlers: map HTTP to one core call and the result back to HTTP.

pub(crate) mod auth;
pub(crate) mod meta;
pub(crate) mod orders;
pub(crate) mod pets;
pub(crate) mod polling;

use axum::Json;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use petstore_core::{Page, ResumeToken};
use petstore_http::Problem;
use serde::Serialize;

use crate::extract::{condition, etag};

/// Response header naming the event-log position a read reflects.
pub(crate) const X_EVENT_POSITION: HeaderName = HeaderName::from_static("x-event-position");
/// Response header marking an idempotent replay.
pub(crate) const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

fn header_value(text: &str) -> HeaderValue {
    // Ids, versions and tokens are ASCII; a failure here would be a bug.
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// A single resource: JSON body, `ETag`, and `Location` when created.
pub(crate) fn resource<T: Serialize>(
    status: StatusCode,
    body: &T,
    tag: &str,
    location: Option<String>,
) -> Response {
    let mut response = (status, Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::ETAG, header_value(&etag(tag)));
    if let Some(location) = location {
        headers.insert(header::LOCATION, header_value(&location));
    }
    response
}

/// A `GET` of a single resource honouring `If-None-Match` (304).
pub(crate) fn conditional<T: Serialize>(
    request: &HeaderMap,
    body: &T,
    tag: &str,
) -> Result<Response, Problem> {
    if let Some(cond) = condition(request, header::IF_NONE_MATCH)?
        && cond.matches_weakly(tag)
    {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        response
            .headers_mut()
            .insert(header::ETAG, header_value(&etag(tag)));
        return Ok(response);
    }
    Ok(resource(StatusCode::OK, body, tag, None))
}

/// Adds `X-Event-Position`.
pub(crate) fn with_position(mut response: Response, position: Option<ResumeToken>) -> Response {
    if let Some(position) = position {
        response
            .headers_mut()
            .insert(X_EVENT_POSITION, header_value(&position.to_string()));
    }
    response
}

/// A page of a listing, with its log position.
pub(crate) fn page<T: Serialize>(page: Page<T>) -> Response {
    let position = page.position;
    with_position(Json(page).into_response(), position)
}
