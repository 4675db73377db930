//! RFC 9457 problem details: the one mapping from the core [`ErrorKind`] to HTTP, and
//! the problems of the HTTP layer itself (malformed JSON, wrong media type, ...).

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use petstore_core::{Error, ErrorKind, FieldError, Payment};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The media type of every error body.
pub(crate) const PROBLEM_JSON: &str = "application/problem+json";

/// Prefix of every problem `type`: a URN, so that nobody expects to dereference it.
const TYPE_PREFIX: &str = "urn:petstore:problem:";

/// An RFC 9457 problem details object: every error response of this API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Problem {
    /// `urn:petstore:problem:<code>`.
    #[serde(rename = "type")]
    pub(crate) problem_type: String,
    /// A short summary of the problem type.
    pub(crate) title: String,
    /// The HTTP status code.
    pub(crate) status: u16,
    /// What went wrong this time, for humans.
    pub(crate) detail: String,
    /// A stable machine-readable code: a core error kind (`invalid_input`, `not_found`,
    /// `conflict`, `precondition_failed`, `unauthenticated`, `forbidden`,
    /// `rate_limited`, `resume_expired`, `lagged`, `unavailable`, `internal`) or an
    /// HTTP-level one (`malformed_json`, `bad_request`, `unsupported_media_type`,
    /// `payload_too_large`, `method_not_allowed`, `no_route`, `timeout`,
    /// `payment_declined`).
    pub(crate) code: String,
    /// The invalid fields (422 and some 400 responses).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) errors: Vec<FieldError>,
    /// The declined payment (402 responses only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) payment: Option<Payment>,
}

/// The HTTP status of each core error kind. This and [`problem_response`] are the only
/// places that map core errors to HTTP.
pub fn status_for(kind: ErrorKind) -> StatusCode {
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

/// The `application/problem+json` response for a core error: status from
/// [`status_for`], `type` `urn:petstore:problem:<kind code>`, `errors` for invalid
/// fields, `WWW-Authenticate` on 401/403 and `Retry-After` when the error carries a
/// retry hint.
pub fn problem_response(error: &Error) -> Response {
    let kind = error.kind();
    let status = status_for(kind);
    if status.is_server_error() {
        tracing::error!(error = ?error, "request failed");
    }
    // A backend failure's message (and source) stays in the server log.
    let detail = error.public_message().unwrap_or("unexpected server error");
    let mut problem = Problem::new(status, kind.code(), detail);
    problem.title = kind.title().to_owned();
    problem.errors = error.field_errors().to_vec();
    let mut response = problem.into_response();
    let headers = response.headers_mut();
    match kind {
        ErrorKind::Unauthenticated => {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Bearer realm="petstore""#),
            );
        }
        ErrorKind::Forbidden => {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Bearer realm="petstore", error="insufficient_scope""#),
            );
        }
        _ => {}
    }
    if let Some(secs) = error.retry_after_secs() {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

impl Problem {
    /// A problem of the HTTP layer (no core error behind it).
    pub(crate) fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> Self {
        Self {
            problem_type: format!("{TYPE_PREFIX}{code}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            code: code.to_owned(),
            errors: Vec::new(),
            payment: None,
        }
    }

    fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self).unwrap_or_default();
        (
            self.status(),
            [(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON))],
            body,
        )
            .into_response()
    }
}

/// The error of every handler and extractor.
#[derive(Debug)]
pub(crate) enum ApiError {
    /// A core error, mapped by [`problem_response`].
    Core(Error),
    /// A problem of the HTTP layer.
    Http(Box<Problem>),
}

impl ApiError {
    /// 400: the request is malformed (query, header or path syntax).
    pub(crate) fn bad_request(detail: impl Into<String>, fields: Vec<FieldError>) -> Self {
        let mut p = Problem::new(StatusCode::BAD_REQUEST, "bad_request", detail);
        p.errors = fields;
        Self::Http(Box::new(p))
    }

    /// A problem with any status.
    pub(crate) fn http(status: StatusCode, code: &str, detail: impl Into<String>) -> Self {
        Self::Http(Box::new(Problem::new(status, code, detail)))
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        Self::Core(e)
    }
}

impl From<Problem> for ApiError {
    fn from(p: Problem) -> Self {
        Self::Http(Box::new(p))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Core(e) => problem_response(&e),
            ApiError::Http(p) => p.into_response(),
        }
    }
}

fn is_problem(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(PROBLEM_JSON))
}

/// Middleware: turns the bare error responses of axum and tower-http (unknown route,
/// wrong method, body over the limit, timeout, extractor rejections) into problems,
/// keeping their headers (e.g. `Allow`).
pub(crate) async fn ensure_problem(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_problem(response.headers()) {
        return response;
    }
    let (code, detail) = match status {
        StatusCode::NOT_FOUND => ("no_route", "no route matches this path".to_owned()),
        StatusCode::METHOD_NOT_ALLOWED => {
            let allow = response
                .headers()
                .get(header::ALLOW)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            (
                "method_not_allowed",
                format!("this path does not support that method (allowed: {allow})"),
            )
        }
        StatusCode::PAYLOAD_TOO_LARGE => (
            "payload_too_large",
            "the request body is larger than the limit".to_owned(),
        ),
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::REQUEST_TIMEOUT => {
            ("timeout", "the request did not complete in time".to_owned())
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            "unsupported content type".to_owned(),
        ),
        s if s.is_server_error() => ("internal", "unexpected server error".to_owned()),
        _ => ("bad_request", "the request is malformed".to_owned()),
    };
    let (mut parts, body) = response.into_parts();
    // Keep the framework's own explanation (e.g. a path rejection) when it has one.
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let detail = if text.trim().is_empty() || status == StatusCode::METHOD_NOT_ALLOWED {
        detail
    } else {
        text.trim().to_owned()
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_TYPE);
    let problem = Problem::new(status, code, detail).into_response();
    let (new_parts, body) = problem.into_parts();
    parts.headers.extend(new_parts.headers);
    Response::from_parts(parts, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_status() {
        let table = [
            (ErrorKind::InvalidInput, 422),
            (ErrorKind::NotFound, 404),
            (ErrorKind::Conflict, 409),
            (ErrorKind::PreconditionFailed, 412),
            (ErrorKind::Unauthenticated, 401),
            (ErrorKind::Forbidden, 403),
            (ErrorKind::RateLimited, 429),
            (ErrorKind::ResumeExpired, 410),
            (ErrorKind::Lagged, 503),
            (ErrorKind::Unavailable, 503),
            (ErrorKind::Internal, 500),
        ];
        for (kind, status) in table {
            assert_eq!(status_for(kind).as_u16(), status, "{kind}");
        }
    }

    /// The body of a problem response (built from an in-memory body, so it is ready).
    fn body_text(r: Response) -> String {
        let body = r.into_body();
        let bytes = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(axum::body::to_bytes(body, 1 << 16))
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn problems_carry_fields_and_headers() {
        let r = problem_response(&Error::invalid_field("name", "must not be empty"));
        assert_eq!(r.status(), 422);
        assert_eq!(r.headers()[header::CONTENT_TYPE], PROBLEM_JSON);

        let r = problem_response(&Error::new(ErrorKind::Internal, "db password is hunter2"));
        assert_eq!(r.status(), 500);
        let body = body_text(r);
        assert!(!body.contains("hunter2"), "{body}");

        let r = problem_response(&Error::new(ErrorKind::Unauthenticated, "no token"));
        assert!(r.headers().contains_key(header::WWW_AUTHENTICATE));

        let r = problem_response(
            &Error::new(ErrorKind::RateLimited, "slow down")
                .with_retry_after(std::time::Duration::from_millis(1500)),
        );
        assert_eq!(r.headers()[header::RETRY_AFTER], "2");
    }
}
