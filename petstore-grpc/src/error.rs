//! The one mapping from core errors to gRPC statuses.

use std::collections::HashMap;

use petstore_core::{Error, ErrorKind, FieldError};
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt as _};

/// The `google.rpc.ErrorInfo` domain of every error.
pub(crate) const DOMAIN: &str = "petstore";

/// Maps a core error to a gRPC status with rich details:
///
/// | core kind | gRPC code |
/// |---|---|
/// | InvalidInput | INVALID_ARGUMENT + `google.rpc.BadRequest` field violations |
/// | NotFound | NOT_FOUND |
/// | Conflict (state forbids it: pet not available, order not placed, held pet) | FAILED_PRECONDITION |
/// | PreconditionFailed (`expected_version` mismatch) | ABORTED (re-read, then retry) |
/// | Unauthenticated | UNAUTHENTICATED |
/// | Forbidden | PERMISSION_DENIED |
/// | RateLimited | RESOURCE_EXHAUSTED (+ `RetryInfo`) |
/// | ResumeExpired | OUT_OF_RANGE (reload, then watch from the new position) |
/// | Lagged | ABORTED (resume from the last offset processed) |
/// | Unavailable | UNAVAILABLE (+ `RetryInfo`) |
/// | Internal and anything newer | INTERNAL |
///
/// Every status carries a `google.rpc.ErrorInfo` with domain `petstore` and the
/// upper-case kind as reason (`NOT_FOUND`, `RESUME_EXPIRED`, `LAGGED`, ...), so that
/// clients can tell apart kinds sharing a code. An error with a retry hint also has
/// `retry-after` metadata (seconds, rounded up) beside its `RetryInfo`.
pub(crate) fn status(err: Error) -> Status {
    let kind = err.kind();
    let code = match kind {
        ErrorKind::InvalidInput => Code::InvalidArgument,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::Conflict => Code::FailedPrecondition,
        ErrorKind::PreconditionFailed => Code::Aborted,
        ErrorKind::Unauthenticated => Code::Unauthenticated,
        ErrorKind::Forbidden => Code::PermissionDenied,
        ErrorKind::RateLimited => Code::ResourceExhausted,
        ErrorKind::ResumeExpired => Code::OutOfRange,
        ErrorKind::Lagged => Code::Aborted,
        ErrorKind::Unavailable => Code::Unavailable,
        _ => Code::Internal,
    };
    let message = match err.public_message() {
        Some(message) => message.to_owned(),
        None => {
            // Backend failures stay in the server log, not on the wire.
            tracing::error!(error = ?err, "internal error in a gRPC call");
            "internal error".to_owned()
        }
    };
    let mut details = ErrorDetails::new();
    details.set_error_info(kind.code().to_ascii_uppercase(), DOMAIN, HashMap::new());
    if !err.field_errors().is_empty() {
        details.set_bad_request(
            err.field_errors()
                .iter()
                .map(|f| FieldViolation::new(&f.field, &f.message))
                .collect::<Vec<_>>(),
        );
    }
    if let Some(after) = err.retry_after() {
        details.set_retry_info(Some(after));
    }
    let mut status = Status::with_error_details(code, message, details);
    if let Some(secs) = err.retry_after_secs() {
        // For clients that read metadata rather than details.
        status
            .metadata_mut()
            .insert("retry-after", MetadataValue::from(secs));
    }
    status
}

/// Prefixes the field names of an `InvalidInput` error, for requests that nest the
/// validated input (`name` becomes `pet.name`).
pub(crate) fn nest_fields(err: Error, prefix: &str) -> Error {
    if err.field_errors().is_empty() {
        return err;
    }
    let fields = err
        .field_errors()
        .iter()
        .map(|f| FieldError::new(format!("{prefix}{}", f.field), f.message.clone()))
        .collect();
    Error::new(err.kind(), err.message().to_owned()).with_fields(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_input_carries_bad_request_and_error_info() {
        let s = status(Error::invalid(vec![
            FieldError::new("name", "must not be empty"),
            FieldError::new("price.amount", "must not be negative"),
        ]));
        assert_eq!(s.code(), Code::InvalidArgument);
        let details = s.get_error_details();
        let fields: Vec<_> = details
            .bad_request()
            .unwrap()
            .field_violations
            .iter()
            .map(|v| v.field.as_str())
            .collect();
        assert_eq!(fields, ["name", "price.amount"]);
        let info = details.error_info().unwrap();
        assert_eq!(
            (info.reason.as_str(), info.domain.as_str()),
            ("INVALID_INPUT", DOMAIN)
        );
    }

    #[test]
    fn every_kind_has_its_code() {
        let cases = [
            (ErrorKind::NotFound, Code::NotFound),
            (ErrorKind::Conflict, Code::FailedPrecondition),
            (ErrorKind::PreconditionFailed, Code::Aborted),
            (ErrorKind::Unauthenticated, Code::Unauthenticated),
            (ErrorKind::Forbidden, Code::PermissionDenied),
            (ErrorKind::RateLimited, Code::ResourceExhausted),
            (ErrorKind::ResumeExpired, Code::OutOfRange),
            (ErrorKind::Lagged, Code::Aborted),
            (ErrorKind::Unavailable, Code::Unavailable),
            (ErrorKind::Internal, Code::Internal),
        ];
        for (kind, code) in cases {
            let s = status(Error::new(kind, "boom"));
            assert_eq!(s.code(), code, "{kind:?}");
            assert_eq!(
                s.get_details_error_info().unwrap().reason,
                kind.code().to_ascii_uppercase()
            );
        }
        assert_eq!(
            status(Error::new(ErrorKind::Internal, "db password")).message(),
            "internal error"
        );
    }

    #[test]
    fn retry_after_becomes_retry_info() {
        let s = status(
            Error::new(ErrorKind::RateLimited, "slow down")
                .with_retry_after(std::time::Duration::from_secs(2)),
        );
        assert_eq!(
            s.get_details_retry_info().unwrap().retry_delay,
            Some(std::time::Duration::from_secs(2))
        );
        assert_eq!(s.metadata().get("retry-after").unwrap(), "2");
    }

    #[test]
    fn nested_fields_get_the_prefix() {
        let e = nest_fields(Error::invalid_field("name", "bad"), "pet.");
        assert_eq!(e.field_errors()[0].field, "pet.name");
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    }
}
