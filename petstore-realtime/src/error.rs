//! The one mapping from core errors to this crate's wire errors: the HTTP status and
//! `application/problem+json` body of a refused SSE request or WebSocket handshake,
//! and the `code` of a WebSocket `error` frame.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use petstore_core::{Error, ErrorKind, FieldError};
use serde_json::json;

/// An error as this adapter puts it on the wire.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WireError {
    /// The HTTP status (before a stream starts).
    pub(crate) status: StatusCode,
    /// The stable machine-readable code: a core kind code (`invalid_input`,
    /// `unauthenticated`, `forbidden`, `resume_expired`, ...) or one of this adapter
    /// (`bad_request`, `too_many_subscriptions`, `already_subscribed`,
    /// `not_subscribed`, `message_too_large`).
    pub(crate) code: &'static str,
    /// For humans.
    pub(crate) message: String,
    /// The invalid fields, if any.
    pub(crate) fields: Vec<FieldError>,
}

impl WireError {
    /// The mapping of every core [`ErrorKind`]: the only place that decides it.
    pub(crate) fn from_core(error: &Error) -> Self {
        let kind = error.kind();
        let status = match kind {
            // Adapter inputs are query parameters and frames, not documents: 400.
            ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::ResumeExpired => StatusCode::GONE,
            ErrorKind::Lagged | ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::error!(error = ?error, "realtime request failed");
        }
        Self {
            status,
            code: kind.code(),
            // An internal error's message stays in the log written above.
            message: error
                .public_message()
                .unwrap_or("unexpected server error")
                .to_owned(),
            fields: error.field_errors().to_vec(),
        }
    }

    /// An error of this adapter (not of the core).
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            fields: Vec::new(),
        }
    }

    /// A malformed request or frame.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

impl IntoResponse for WireError {
    /// An RFC 9457 problem, shaped like the REST adapter's.
    fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error").to_owned();
        let mut body = json!({
            "type": format!("urn:petstore:problem:{}", self.code),
            "title": title,
            "status": self.status.as_u16(),
            "detail": self.message,
            "code": self.code,
        });
        if !self.fields.is_empty() {
            body["errors"] = serde_json::to_value(&self.fields).unwrap_or_default();
        }
        let mut response = (self.status, body.to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Bearer realm="petstore""#),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use petstore_core::{Error, ErrorKind};

    use super::WireError;

    #[test]
    fn an_internal_error_message_stays_in_the_log() {
        let internal = Error::new(
            ErrorKind::Internal,
            "pool at db.internal:5432: password hunter2",
        );
        let wire = WireError::from_core(&internal);
        assert_eq!(wire.code, "internal");
        assert_eq!(wire.message, "unexpected server error");
        let conflict = Error::new(ErrorKind::Conflict, "pet_1 is sold");
        assert_eq!(WireError::from_core(&conflict).message, "pet_1 is sold");
    }
}
