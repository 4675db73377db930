//! `POST /v1/auth/token`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use petstore_core::Credentials;
use petstore_http::Problem;

use crate::extract::JsonBody;
use crate::routes::AppState;

pub(crate) async fn token(
    State(s): State<AppState>,
    JsonBody(credentials): JsonBody<Credentials>,
) -> Result<Response, Problem> {
    let token = s.service.issue_token(&credentials).await?;
    let mut response = Json(token).into_response();
    // RFC 6749 5.1: token responses must not be cached.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
