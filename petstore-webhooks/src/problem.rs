//! RFC 9457 problem details: the one mapping from core errors to HTTP errors, in the
//! style of the REST adapter (`type` `urn:petstore:problem:<code>`, `code`, `errors`).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use petstore_core::{Error, ErrorKind};
use serde_json::json;

/// Prefix of every problem `type`: a URN, so that nobody expects to dereference it.
const TYPE_BASE: &str = "urn:petstore:problem:";

/// The HTTP status of a core error kind.
pub(crate) fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidInput => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::ResumeExpired => StatusCode::GONE,
        ErrorKind::Lagged | ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// An error answer, rendered as `application/problem+json`: a core error with the
/// status of its kind, or a problem of the HTTP layer (`malformed_json`,
/// `payload_too_large`, `bad_request`) with its own status and code.
#[derive(Debug)]
pub(crate) struct Problem {
    error: Error,
    http: Option<(StatusCode, &'static str)>,
}

impl Problem {
    /// A problem of the HTTP layer, e.g. `(400, "malformed_json")`.
    pub(crate) fn http(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            error: Error::new(ErrorKind::InvalidInput, detail.into()),
            http: Some((status, code)),
        }
    }
}

impl From<Error> for Problem {
    fn from(error: Error) -> Self {
        Self { error, http: None }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let err = &self.error;
        let kind = err.kind();
        let (status, code, title) = match self.http {
            Some((status, code)) => (status, code, status.canonical_reason().unwrap_or("Error")),
            None => (status_of(kind), kind.code(), kind.title()),
        };
        let detail = match err.public_message() {
            Some(message) => message.to_owned(),
            None => {
                // Internals stay in the server log.
                tracing::error!(error = ?err, "internal error in the webhooks adapter");
                "an unexpected error occurred".to_owned()
            }
        };
        let mut body = json!({
            "type": format!("{TYPE_BASE}{code}"),
            "title": title,
            "status": status.as_u16(),
            "detail": detail,
            "code": code,
        });
        if !err.field_errors().is_empty() {
            body["errors"] = serde_json::to_value(err.field_errors()).unwrap_or_default();
        }
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        let challenge = match kind {
            ErrorKind::Unauthenticated => Some(r#"Bearer realm="petstore""#),
            ErrorKind::Forbidden => Some(r#"Bearer realm="petstore", error="insufficient_scope""#),
            _ => None,
        };
        if let Some(challenge) = challenge {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        if let Some(secs) = err.retry_after_secs() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        response
    }
}
