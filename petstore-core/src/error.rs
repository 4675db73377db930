//! The one error type of the Pet Store. Every adapter maps [`ErrorKind`] to its wire
//! error in exactly one function.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A `Result` whose error is the core [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, in terms every protocol can express.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// The input broke a validation rule; [`Error::field_errors`] names the fields.
    InvalidInput,
    /// The addressed resource does not exist.
    NotFound,
    /// The request conflicts with the current state (e.g. ordering a pet that is not
    /// available, or a concurrent modification).
    Conflict,
    /// A precondition given by the caller (an expected version / `If-Match`) did not hold.
    PreconditionFailed,
    /// No credential, or a credential that is malformed, forged or expired.
    Unauthenticated,
    /// A valid credential that lacks the scope the operation needs.
    Forbidden,
    /// The caller sent too many requests; [`Error::retry_after`] may say when to retry.
    RateLimited,
    /// A resume token is too old (outside retention) or from another log epoch:
    /// the client must reload its state instead of resuming.
    ResumeExpired,
    /// A subscriber fell too far behind the live log and was cut off; it can resume
    /// from the last position it processed.
    Lagged,
    /// A dependency or the service itself is temporarily unavailable (e.g. shutting down).
    Unavailable,
    /// A bug or an unexpected failure of a backend.
    Internal,
}

impl ErrorKind {
    /// Every kind, in declaration order.
    pub const ALL: [ErrorKind; 11] = [
        Self::InvalidInput,
        Self::NotFound,
        Self::Conflict,
        Self::PreconditionFailed,
        Self::Unauthenticated,
        Self::Forbidden,
        Self::RateLimited,
        Self::ResumeExpired,
        Self::Lagged,
        Self::Unavailable,
        Self::Internal,
    ];

    /// A stable, machine-readable code (`snake_case`), e.g. `"not_found"`.
    pub const fn code(self) -> &'static str {
        match self {
            Self::InvalidInput => "invalid_input",
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::PreconditionFailed => "precondition_failed",
            Self::Unauthenticated => "unauthenticated",
            Self::Forbidden => "forbidden",
            Self::RateLimited => "rate_limited",
            Self::ResumeExpired => "resume_expired",
            Self::Lagged => "lagged",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
        }
    }

    /// The HTTP status every HTTP adapter answers for this kind: the one table, kept
    /// in core as a plain number so that core stays transport-free.
    ///
    /// [`ErrorKind::Lagged`] has no request to answer (a stream ends); it maps to 503
    /// for the rare case it surfaces in a request.
    pub const fn http_status(self) -> u16 {
        match self {
            Self::InvalidInput => 422,
            Self::NotFound => 404,
            Self::Conflict => 409,
            Self::PreconditionFailed => 412,
            Self::Unauthenticated => 401,
            Self::Forbidden => 403,
            Self::RateLimited => 429,
            Self::ResumeExpired => 410,
            Self::Lagged | Self::Unavailable => 503,
            Self::Internal => 500,
        }
    }

    /// A short human-readable title, e.g. `"Not Found"`.
    pub const fn title(self) -> &'static str {
        match self {
            Self::InvalidInput => "Invalid input",
            Self::NotFound => "Not found",
            Self::Conflict => "Conflict",
            Self::PreconditionFailed => "Precondition failed",
            Self::Unauthenticated => "Unauthenticated",
            Self::Forbidden => "Forbidden",
            Self::RateLimited => "Too many requests",
            Self::ResumeExpired => "Resume token expired",
            Self::Lagged => "Subscriber lagged",
            Self::Unavailable => "Service unavailable",
            Self::Internal => "Internal error",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// One invalid field of an input, named by its JSON path (`"name"`, `"price.amount"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FieldError {
    /// The field's JSON name or dotted path.
    pub field: String,
    /// Why the value is invalid.
    pub message: String,
}

impl FieldError {
    /// A field error for `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The field error of a serde data error: `message` as serde words it, found at
    /// `path` (`""` for the top level). serde names a missing or unknown field inside its
    /// message (``missing field `x` ``); the field error names it as the field instead,
    /// so that the two do not say it twice. serde's trailing position ("at line 1
    /// column 9") is dropped: the field says where.
    pub fn from_serde(path: &str, message: &str) -> Self {
        let message = message
            .rsplit_once(" at line ")
            .map_or(message, |(text, _)| text);
        // serde_path_to_error puts a missing field at its parent, an unknown one at itself.
        let field = |name: &str| match path {
            "" | "." => name.to_owned(),
            path if path == name || path.ends_with(&format!(".{name}")) => path.to_owned(),
            path => format!("{path}.{name}"),
        };
        let named = |prefix: &str| {
            message
                .strip_prefix(prefix)
                .and_then(|rest| rest.split_once('`'))
        };
        if let Some((name, _)) = named("missing field `") {
            return Self::new(field(name), "is required");
        }
        if let Some((name, rest)) = named("unknown field `") {
            let hint = rest.trim_start_matches(", ");
            return Self::new(field(name), format!("is not a field here ({hint})"));
        }
        Self::new(path.trim_start_matches('.'), message)
    }
}

/// The core error: a kind, a message for humans, optional field errors and an
/// optional source.
pub struct Error {
    kind: ErrorKind,
    message: Cow<'static, str>,
    fields: Vec<FieldError>,
    retry_after: Option<Duration>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    /// An error of `kind` with a human-readable `message`.
    pub fn new(kind: ErrorKind, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind,
            message: message.into(),
            fields: Vec::new(),
            retry_after: None,
            source: None,
        }
    }

    /// [`ErrorKind::InvalidInput`] carrying field errors.
    pub fn invalid(fields: Vec<FieldError>) -> Self {
        let message = match fields.as_slice() {
            [one] => format!("invalid `{}`: {}", one.field, one.message),
            many => format!("{} fields are invalid", many.len()),
        };
        Self::new(ErrorKind::InvalidInput, message).with_fields(fields)
    }

    /// [`ErrorKind::InvalidInput`] for one field.
    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::invalid(vec![FieldError::new(field, message)])
    }

    /// [`ErrorKind::NotFound`] for a resource of type `what` with `id`.
    pub fn not_found(what: &str, id: impl fmt::Display) -> Self {
        Self::new(ErrorKind::NotFound, format!("{what} `{id}` does not exist"))
    }

    /// [`ErrorKind::Internal`] wrapping `source`.
    pub fn internal(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::new(ErrorKind::Internal, source.to_string()).with_source(source)
    }

    /// Attaches field errors.
    pub fn with_fields(mut self, fields: Vec<FieldError>) -> Self {
        self.fields = fields;
        self
    }

    /// Attaches a retry hint (for [`ErrorKind::RateLimited`] and [`ErrorKind::Unavailable`]).
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message for humans.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// What is wrong, said once, for a place that names the field itself (a query
    /// parameter's error, a serde error of a typed field): the message of the one
    /// invalid field, else [`Error::message`].
    pub fn reason(&self) -> &str {
        match self.fields.as_slice() {
            [one] => &one.message,
            _ => &self.message,
        }
    }

    /// The message a client may be shown, or `None` when it must stay in the server
    /// log: an [`ErrorKind::Internal`] error's message may name internals (a path, a
    /// query, a backend's reply). Adapters log such an error and send a fixed text.
    pub fn public_message(&self) -> Option<&str> {
        (self.kind != ErrorKind::Internal).then_some(&*self.message)
    }

    /// The invalid fields, for [`ErrorKind::InvalidInput`].
    pub fn field_errors(&self) -> &[FieldError] {
        &self.fields
    }

    /// When the caller may retry, if known.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// [`Error::retry_after`] in whole seconds, rounded up (as `Retry-After` needs: a
    /// client told too little would retry too early).
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after.map(crate::rate::ceil_secs)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind).field("message", &self.message);
        if !self.fields.is_empty() {
            d.field("fields", &self.fields);
        }
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

/// Collects field errors while validating an input.
#[derive(Debug, Default)]
pub(crate) struct Validator {
    fields: Vec<FieldError>,
}

impl Validator {
    pub(crate) fn check(&mut self, ok: bool, field: &str, message: impl Into<String>) {
        if !ok {
            self.fields.push(FieldError::new(field, message));
        }
    }

    pub(crate) fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.fields.push(FieldError::new(field, message));
    }

    pub(crate) fn finish(self) -> Result<()> {
        if self.fields.is_empty() {
            Ok(())
        } else {
            Err(Error::invalid(self.fields))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The HTTP status of each kind: the contract's table (ARCHITECTURE.md, "Errors"),
    /// which every HTTP adapter answers through `petstore-http`.
    #[test]
    fn each_kind_has_the_contract_status_and_a_title_of_its_own() {
        let statuses: Vec<u16> = ErrorKind::ALL.iter().map(|k| k.http_status()).collect();
        assert_eq!(
            statuses,
            [422, 404, 409, 412, 401, 403, 429, 410, 503, 503, 500]
        );
        let titles: Vec<&str> = ErrorKind::ALL.iter().map(|k| k.title()).collect();
        assert_eq!(titles[0], "Invalid input");
        assert_eq!(titles[6], "Too many requests");
        let mut distinct = titles.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), ErrorKind::ALL.len(), "{titles:?}");
        assert!(titles.iter().all(|t| !t.is_empty() && !t.contains("xyzzy")));
    }

    /// An internal error's message is never shown to a caller; every other one is.
    #[test]
    fn only_internal_messages_are_withheld() {
        for kind in ErrorKind::ALL {
            let error = Error::new(kind, "the text");
            let expected = (kind != ErrorKind::Internal).then_some("the text");
            assert_eq!(error.public_message(), expected, "{kind}");
        }
    }

    /// `Retry-After` is whole seconds, rounded up, and absent when unknown.
    #[test]
    fn retry_after_is_whole_seconds_rounded_up() {
        let error = Error::new(ErrorKind::RateLimited, "slow down");
        assert_eq!(error.retry_after_secs(), None);
        let error = error.with_retry_after(Duration::from_millis(2_100));
        assert_eq!(error.retry_after_secs(), Some(3));
        let error =
            Error::new(ErrorKind::Unavailable, "busy").with_retry_after(Duration::from_secs(7));
        assert_eq!(error.retry_after_secs(), Some(7));
    }

    /// The debug form names the kind and message, the fields only when there are some.
    #[test]
    fn the_debug_form_shows_what_is_there() {
        let plain = format!("{:?}", Error::new(ErrorKind::Conflict, "taken"));
        assert!(
            plain.contains("Conflict") && plain.contains("taken"),
            "{plain}"
        );
        assert!(!plain.contains("fields"), "{plain}");
        let invalid = format!("{:?}", Error::invalid_field("name", "is required"));
        assert!(
            invalid.contains("fields") && invalid.contains("is required"),
            "{invalid}"
        );
    }

    #[test]
    fn invalid_names_the_single_field() {
        let e = Error::invalid_field("name", "must not be empty");
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert_eq!(e.field_errors().len(), 1);
        assert!(e.message().contains("`name`"), "{}", e.message());
    }

    #[test]
    fn serde_errors_name_their_field_once() {
        let f = FieldError::from_serde(".", "missing field `price` at line 1 column 30");
        assert_eq!(f, FieldError::new("price", "is required"));
        let f = FieldError::from_serde("price", "missing field `currency`");
        assert_eq!(f, FieldError::new("price.currency", "is required"));
        let f = FieldError::from_serde("price.colour", "unknown field `colour`");
        assert_eq!(f.field, "price.colour");
        let f = FieldError::from_serde("", "unknown field `colour`, expected `name` or `age`");
        assert_eq!(f.field, "colour");
        assert_eq!(f.message, "is not a field here (expected `name` or `age`)");
        let f = FieldError::from_serde("age", "invalid type: string \"x\", expected u32");
        assert_eq!(
            f,
            FieldError::new("age", "invalid type: string \"x\", expected u32")
        );
        let e = Error::invalid_field("since", "`x` is not a resume token");
        assert_eq!(e.reason(), "`x` is not a resume token");
        assert_eq!(e.message(), "invalid `since`: `x` is not a resume token");
    }

    #[test]
    fn codes_are_snake_case_and_match_serde() {
        for kind in [
            ErrorKind::InvalidInput,
            ErrorKind::PreconditionFailed,
            ErrorKind::ResumeExpired,
        ] {
            let json = serde_json::to_value(kind).unwrap();
            assert_eq!(json, kind.code());
        }
    }
}
