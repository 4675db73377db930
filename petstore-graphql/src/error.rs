//! Errors on the wire: core errors become GraphQL errors with `extensions.code` in
//! [`field_error`], the one mapping function of this adapter; errors raised before
//! execution (parse, validation, limits, credentials) get codes here too.

use juniper::parser::ParseError;
use juniper::{FieldError, GraphQLError, IntoFieldError, Object, ScalarValue, Value};
use petstore_core::{Error, ErrorKind};
use serde_json::json;

/// A core error on its way to a GraphQL response. Resolvers return it (never a bare
/// `FieldError`, whose blanket `From<impl Display>` would drop the code).
#[derive(Debug)]
pub(crate) struct ApiError(pub(crate) Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        Self(e)
    }
}

impl<S: ScalarValue> IntoFieldError<S> for ApiError {
    fn into_field_error(self) -> FieldError<S> {
        field_error(&self.0)
    }
}

/// The result type of resolvers.
pub(crate) type ApiResult<T> = Result<T, ApiError>;

/// The `extensions.code` of a core error kind.
pub(crate) fn code(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidInput => "BAD_USER_INPUT",
        ErrorKind::NotFound => "NOT_FOUND",
        ErrorKind::Conflict => "CONFLICT",
        ErrorKind::PreconditionFailed => "PRECONDITION_FAILED",
        ErrorKind::Unauthenticated => "UNAUTHENTICATED",
        ErrorKind::Forbidden => "FORBIDDEN",
        ErrorKind::RateLimited => "RATE_LIMITED",
        ErrorKind::ResumeExpired => "RESUME_EXPIRED",
        ErrorKind::Lagged => "LAGGED",
        ErrorKind::Unavailable => "UNAVAILABLE",
        _ => "INTERNAL_SERVER_ERROR",
    }
}

/// Maps a core error to a GraphQL field error: `message`, `extensions.code`, and for
/// validation errors `extensions.fields = [{field, message}]` with GraphQL (camelCase)
/// field names. Internal errors are logged and their details withheld.
pub(crate) fn field_error<S: ScalarValue>(err: &Error) -> FieldError<S> {
    let kind = err.kind();
    let mut ext = Object::with_capacity(3);
    ext.add_field("code", Value::scalar(code(kind).to_owned()));
    if !err.field_errors().is_empty() {
        let fields = err
            .field_errors()
            .iter()
            .map(|f| {
                let mut o = Object::with_capacity(2);
                o.add_field("field", Value::scalar(graphql_path(&f.field)));
                o.add_field("message", Value::scalar(f.message.clone()));
                Value::object(o)
            })
            .collect();
        ext.add_field("fields", Value::list(fields));
    }
    if let Some(secs) = err.retry_after_secs() {
        let secs = i32::try_from(secs.max(1)).unwrap_or(i32::MAX);
        ext.add_field("retryAfter", Value::scalar(secs));
    }
    let message = match err.public_message() {
        Some(message) => message.to_owned(),
        None => {
            tracing::error!(error = ?err, "internal error while resolving a GraphQL field");
            petstore_http::INTERNAL_ERROR_TEXT.to_owned()
        }
    };
    FieldError::new(message, Value::object(ext))
}

/// A core error raised outside a resolver (e.g. by the rate limiter on a WebSocket), as a GraphQL
/// error object: the same `message` and `extensions` as [`field_error`] gives.
pub(crate) fn core_error(err: &Error) -> serde_json::Value {
    let error: FieldError = field_error(err);
    json!({
        "message": error.message(),
        "extensions": serde_json::to_value(error.extensions()).unwrap_or_default(),
    })
}

/// `photo_urls[0]` -> `photoUrls[0]`, `price.amount` -> `price.amount`.
fn graphql_path(path: &str) -> String {
    path.split('.')
        .map(|segment| juniper::to_camel_case(segment).into_owned())
        .collect::<Vec<_>>()
        .join(".")
}

/// A GraphQL error object raised before execution.
pub(crate) fn request_error(code: &str, message: impl Into<String>) -> serde_json::Value {
    json!({ "message": message.into(), "extensions": { "code": code } })
}

/// Juniper's pre-execution errors as GraphQL error objects with `extensions.code`.
pub(crate) fn graphql_errors(err: &GraphQLError) -> Vec<serde_json::Value> {
    let code = match err {
        GraphQLError::ParseError(e) => match e.item {
            ParseError::DepthLimitExceeded(_) => "QUERY_TOO_DEEP",
            ParseError::FieldLimitExceeded(_) | ParseError::TokenLimitExceeded(_) => {
                "QUERY_TOO_COMPLEX"
            }
            _ => "GRAPHQL_PARSE_FAILED",
        },
        GraphQLError::ValidationError(_) => "GRAPHQL_VALIDATION_FAILED",
        GraphQLError::NoOperationProvided
        | GraphQLError::MultipleOperationsProvided
        | GraphQLError::UnknownOperationName => "OPERATION_RESOLUTION_FAILURE",
        _ => "BAD_REQUEST",
    };
    let mut errors = match serde_json::to_value(err) {
        Ok(serde_json::Value::Array(errors)) => errors,
        _ => vec![json!({ "message": err.to_string() })],
    };
    for error in &mut errors {
        if let Some(obj) = error.as_object_mut() {
            obj.entry("extensions")
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .map(|ext| ext.entry("code").or_insert_with(|| code.into()));
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use petstore_core::FieldError as CoreFieldError;

    /// Every core kind has a code of its own; only internal errors share the generic one.
    #[test]
    fn each_kind_has_its_code() {
        let codes: Vec<&str> = ErrorKind::ALL.iter().map(|k| code(*k)).collect();
        assert_eq!(
            codes,
            [
                "BAD_USER_INPUT",
                "NOT_FOUND",
                "CONFLICT",
                "PRECONDITION_FAILED",
                "UNAUTHENTICATED",
                "FORBIDDEN",
                "RATE_LIMITED",
                "RESUME_EXPIRED",
                "LAGGED",
                "UNAVAILABLE",
                "INTERNAL_SERVER_ERROR"
            ]
        );
    }

    /// Juniper's pre-execution errors get the Apollo-style code of their cause, and
    /// every error object of a validation failure is kept.
    #[test]
    fn pre_execution_errors_have_their_codes() {
        use juniper::parser::{ParseError, Spanning};
        let codes = |err: &GraphQLError| -> Vec<String> {
            graphql_errors(err)
                .iter()
                .map(|e| e["extensions"]["code"].as_str().unwrap_or("").to_owned())
                .collect()
        };
        let parse = |e: ParseError| GraphQLError::ParseError(Spanning::unlocated(e));
        assert_eq!(
            codes(&parse(ParseError::DepthLimitExceeded(3))),
            ["QUERY_TOO_DEEP"]
        );
        assert_eq!(
            codes(&parse(ParseError::FieldLimitExceeded(3))),
            ["QUERY_TOO_COMPLEX"]
        );
        assert_eq!(
            codes(&parse(ParseError::TokenLimitExceeded(3))),
            ["QUERY_TOO_COMPLEX"]
        );
        assert_eq!(
            codes(&parse(ParseError::UnexpectedEndOfFile)),
            ["GRAPHQL_PARSE_FAILED"]
        );
        for err in [
            GraphQLError::NoOperationProvided,
            GraphQLError::MultipleOperationsProvided,
            GraphQLError::UnknownOperationName,
        ] {
            assert_eq!(codes(&err), ["OPERATION_RESOLUTION_FAILURE"], "{err}");
        }
        assert_eq!(codes(&GraphQLError::IsSubscription), ["BAD_REQUEST"]);
        let origin = juniper::parser::SourcePosition::new_origin();
        let two = GraphQLError::ValidationError(vec![
            juniper::RuleError::new("first", &[origin]),
            juniper::RuleError::new("second", &[origin]),
        ]);
        let errors = graphql_errors(&two);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(errors[1]["message"], "second");
        assert_eq!(errors[1]["extensions"]["code"], "GRAPHQL_VALIDATION_FAILED");
    }

    #[test]
    fn invalid_input_carries_camel_case_fields() {
        let err = Error::invalid(vec![
            CoreFieldError::new("photo_urls[0]", "must be an http(s) URL"),
            CoreFieldError::new("price.amount", "must not be negative"),
        ]);
        let fe: FieldError = field_error(&err);
        let ext = serde_json::to_value(fe.extensions()).unwrap();
        assert_eq!(ext["code"], "BAD_USER_INPUT");
        assert_eq!(ext["fields"][0]["field"], "photoUrls[0]");
        assert_eq!(ext["fields"][1]["field"], "price.amount");
    }

    #[test]
    fn internal_details_are_withheld() {
        let err = Error::new(ErrorKind::Internal, "database password is hunter2");
        let fe: FieldError = field_error(&err);
        assert_eq!(fe.message(), petstore_http::INTERNAL_ERROR_TEXT);
        let ext = serde_json::to_value(fe.extensions()).unwrap();
        assert_eq!(ext["code"], "INTERNAL_SERVER_ERROR");
    }

    #[test]
    fn rate_limited_errors_carry_the_retry_hint() {
        let err = Error::new(ErrorKind::RateLimited, "slow down")
            .with_retry_after(std::time::Duration::from_millis(19_200));
        let json = core_error(&err);
        assert_eq!(json["message"], "slow down");
        assert_eq!(json["extensions"]["code"], "RATE_LIMITED");
        assert_eq!(json["extensions"]["retryAfter"], 20);
    }

    #[test]
    fn every_kind_has_a_code() {
        for (kind, expected) in [
            (ErrorKind::NotFound, "NOT_FOUND"),
            (ErrorKind::Conflict, "CONFLICT"),
            (ErrorKind::PreconditionFailed, "PRECONDITION_FAILED"),
            (ErrorKind::Unauthenticated, "UNAUTHENTICATED"),
            (ErrorKind::Forbidden, "FORBIDDEN"),
            (ErrorKind::RateLimited, "RATE_LIMITED"),
            (ErrorKind::ResumeExpired, "RESUME_EXPIRED"),
            (ErrorKind::Unavailable, "UNAVAILABLE"),
        ] {
            assert_eq!(code(kind), expected);
        }
    }
}
