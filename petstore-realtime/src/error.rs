//! The one mapping from core errors to this crate's wire errors: the `code` of a
//! WebSocket `error` frame, and for a refused SSE request or WebSocket handshake the
//! shared edge's `application/problem+json` answer (the status of core's one table).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use petstore_core::{Error, FieldError};
use petstore_http::Problem;

/// An error as this adapter puts it on the wire.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WireError {
    /// The stable machine-readable code: a core kind code (`invalid_input`,
    /// `unauthenticated`, `forbidden`, `resume_expired`, ...) or one of this adapter
    /// (`bad_request`, `too_many_subscriptions`, `already_subscribed`,
    /// `not_subscribed`, `message_too_large`).
    pub(crate) code: &'static str,
    /// For humans (an internal error's details stay in the log).
    pub(crate) message: String,
    /// The invalid fields, if any.
    pub(crate) fields: Vec<FieldError>,
    /// The HTTP answer, before a stream starts.
    problem: Problem,
}

impl WireError {
    /// A core error: the only place this adapter maps an [`petstore_core::ErrorKind`].
    pub(crate) fn from_core(error: &Error) -> Self {
        let problem = Problem::from(error);
        Self {
            code: error.kind().code(),
            message: problem.detail().to_owned(),
            fields: error.field_errors().to_vec(),
            problem,
        }
    }

    /// An error of this adapter (not of the core).
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self {
            code,
            problem: Problem::new(status, code, message.clone()),
            message,
            fields: Vec::new(),
        }
    }

    /// A malformed request or frame.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// A 401 for a credential that was sent (as `?token=`) and rejected.
    pub(crate) fn invalid_token(mut self) -> Self {
        self.problem = self.problem.invalid_token();
        self
    }

    /// The HTTP status.
    #[cfg(test)]
    pub(crate) fn status(&self) -> StatusCode {
        self.problem.status()
    }
}

impl IntoResponse for WireError {
    fn into_response(self) -> Response {
        self.problem.into_response()
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
        assert_eq!(wire.message, petstore_http::INTERNAL_ERROR_TEXT);
        let conflict = Error::new(ErrorKind::Conflict, "pet_1 is sold");
        assert_eq!(WireError::from_core(&conflict).message, "pet_1 is sold");
    }

    #[test]
    fn invalid_input_is_422_like_every_http_adapter() {
        let wire = WireError::from_core(&Error::invalid_field("channels", "unknown channel"));
        assert_eq!(wire.status(), 422);
        assert_eq!(WireError::bad_request("no").status(), 400);
    }
}
