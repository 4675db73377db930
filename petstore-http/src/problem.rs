//! RFC 9457 problem details: the one mapping from a core [`Error`] to an HTTP answer,
//! and the problems of the HTTP layer itself (malformed JSON, wrong media type, ...).

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use petstore_core::{Error, ErrorKind, FieldError, RequestContext};
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::auth::Challenge;

/// The media type of every problem body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Prefix of every problem `type`: a URN, so that nobody expects to dereference it.
pub const PROBLEM_TYPE_PREFIX: &str = "urn:petstore:problem:";

/// What a client is told about an [`ErrorKind::Internal`] error, on every protocol: the
/// error itself may name internals (a path, a query, a backend's reply) and stays in the
/// server log.
pub const INTERNAL_ERROR_TEXT: &str = "unexpected server error";

/// The HTTP status of a core error kind: [`ErrorKind::http_status`], the one table.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    StatusCode::from_u16(kind.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// An RFC 9457 problem details object: every error answer of the HTTP adapters.
///
/// Built from a core error ([`Problem::from`], status from [`ErrorKind::http_status`],
/// `code` the kind's code, `errors` its invalid fields, the fixed
/// [`INTERNAL_ERROR_TEXT`] for internal errors) or for a problem of the HTTP layer
/// ([`Problem::new`]). The request id of the current [`RequestContext`] is in the body
/// as `request_id`.
///
/// ```
/// use petstore_core::Error;
/// use petstore_http::Problem;
///
/// let problem = Problem::from(Error::invalid_field("name", "must not be empty"));
/// assert_eq!(problem.status(), 422);
/// assert_eq!(problem.problem_type(), "urn:petstore:problem:invalid_input");
/// assert_eq!(problem.errors()[0].field, "name");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Problem(Box<Body>);

/// The members of a [`Problem`], boxed so that `Result<_, Problem>` stays small.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
struct Body {
    /// `urn:petstore:problem:<code>`.
    #[serde(rename = "type")]
    problem_type: String,
    /// A short summary of the problem type.
    title: String,
    /// The HTTP status code.
    status: u16,
    /// What went wrong this time, for humans.
    detail: String,
    /// A stable machine-readable code: a core error kind (`invalid_input`, `not_found`,
    /// `conflict`, `precondition_failed`, `unauthenticated`, `forbidden`,
    /// `rate_limited`, `resume_expired`, `lagged`, `unavailable`, `internal`) or one of
    /// the HTTP layer (`malformed_json`, `bad_request`, `unsupported_media_type`,
    /// `payload_too_large`, `method_not_allowed`, `no_route`, `timeout`, ...).
    code: String,
    /// The invalid fields (422 and some 400 responses); absent when there are none.
    // `default`: the schema (read as a client reads a body) must not require a member
    // that is left out when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    errors: Vec<FieldError>,
    /// The id of the request (also in the `x-request-id` response header), to quote
    /// when reporting the problem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
    /// Members a route adds (e.g. the declined `payment` of a 402).
    #[serde(flatten)]
    #[schemars(skip)]
    members: Map<String, Value>,
    #[serde(skip)]
    #[schemars(skip)]
    kind: Option<ErrorKind>,
    #[serde(skip)]
    #[schemars(skip)]
    retry_after: Option<u64>,
    #[serde(skip)]
    #[schemars(skip)]
    challenge: Option<Challenge>,
}

impl Serialize for Problem {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl JsonSchema for Problem {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Problem".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        Body::json_schema(generator)
    }
}

impl Problem {
    /// A problem of the HTTP layer, with no core error behind it: `code` names it
    /// (`malformed_json`, `bad_request`, ...), the title is the status's reason phrase.
    pub fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> Self {
        Self(Box::new(Body {
            problem_type: format!("{PROBLEM_TYPE_PREFIX}{code}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            code: code.to_owned(),
            errors: Vec::new(),
            request_id: RequestContext::current().request_id().map(str::to_owned),
            members: Map::new(),
            kind: None,
            retry_after: None,
            challenge: None,
        }))
    }

    /// 400 `bad_request`: a query, header or path that does not parse.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", detail)
    }

    /// 500 `internal` with the fixed [`INTERNAL_ERROR_TEXT`] (e.g. for a panic).
    pub fn internal() -> Self {
        let mut problem = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::Internal.code(),
            INTERNAL_ERROR_TEXT,
        );
        problem.0.title = ErrorKind::Internal.title().to_owned();
        problem.0.kind = Some(ErrorKind::Internal);
        problem
    }

    /// Sets the invalid fields.
    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.0.errors = errors;
        self
    }

    /// Adds an extension member (RFC 9457 section 3.2), e.g. the declined payment of a
    /// 402. A member named like a standard one is ignored.
    pub fn with_member(mut self, name: &str, value: impl Serialize) -> Self {
        const RESERVED: [&str; 7] = [
            "type",
            "title",
            "status",
            "detail",
            "code",
            "errors",
            "request_id",
        ];
        if !RESERVED.contains(&name) {
            let value = serde_json::to_value(value).unwrap_or(Value::Null);
            self.0.members.insert(name.to_owned(), value);
        }
        self
    }

    /// Marks a 401 as the answer to a credential that was presented and rejected
    /// (`error="invalid_token"` in the challenge), for credentials the edge does not
    /// read itself (a `?token=` query parameter, a first WebSocket frame).
    pub fn invalid_token(mut self) -> Self {
        if self.0.status == StatusCode::UNAUTHORIZED.as_u16() {
            self.0.challenge = Some(Challenge::InvalidToken);
        }
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The problem `type` (`urn:petstore:problem:<code>`).
    pub fn problem_type(&self) -> &str {
        &self.0.problem_type
    }

    /// The machine-readable code.
    pub fn code(&self) -> &str {
        &self.0.code
    }

    /// The title.
    pub fn title(&self) -> &str {
        &self.0.title
    }

    /// The detail, for humans.
    pub fn detail(&self) -> &str {
        &self.0.detail
    }

    /// The invalid fields.
    pub fn errors(&self) -> &[FieldError] {
        &self.0.errors
    }

    /// The request id in the body, if the problem was made while serving a request.
    pub fn request_id(&self) -> Option<&str> {
        self.0.request_id.as_deref()
    }

    /// The core error kind behind the problem, if any.
    pub fn kind(&self) -> Option<ErrorKind> {
        self.0.kind
    }

    /// The `Retry-After` seconds, if any.
    pub fn retry_after(&self) -> Option<u64> {
        self.0.retry_after
    }

    /// The `WWW-Authenticate` challenge this problem calls for, if any.
    pub fn challenge(&self) -> Option<Challenge> {
        self.0.challenge
    }

    /// The body as JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The response headers every rendering of this problem carries: `Retry-After`,
    /// and the challenge as a response extension that the edge turns into one
    /// `WWW-Authenticate` header. Adapters that render a problem in their own protocol
    /// (GraphQL) call it on their response.
    pub fn decorate(&self, response: &mut Response) {
        if let Some(secs) = self.0.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        if let Some(challenge) = self.0.challenge {
            response.extensions_mut().insert(challenge);
        }
    }
}

impl From<&Error> for Problem {
    fn from(error: &Error) -> Self {
        let kind = error.kind();
        let status = status_of(kind);
        let detail = match error.public_message() {
            Some(message) => message,
            None => {
                // Internals stay in the server log.
                tracing::error!(error = ?error, "request failed");
                INTERNAL_ERROR_TEXT
            }
        };
        let mut problem = Self::new(status, kind.code(), detail);
        problem.0.title = kind.title().to_owned();
        problem.0.errors = error.field_errors().to_vec();
        problem.0.kind = Some(kind);
        problem.0.retry_after = error.retry_after_secs();
        problem.0.challenge = match kind {
            ErrorKind::Unauthenticated => Some(Challenge::Required),
            ErrorKind::Forbidden => Some(Challenge::InsufficientScope),
            _ => None,
        };
        problem
    }
}

impl From<Error> for Problem {
    fn from(error: Error) -> Self {
        Self::from(&error)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut response = (
            self.status(),
            [(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON))],
            self.to_json(),
        )
            .into_response();
        self.decorate(&mut response);
        response
    }
}

/// The `application/problem+json` response for a core error.
pub fn problem_response(error: &Error) -> Response {
    Problem::from(error).into_response()
}

fn is_problem(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(PROBLEM_JSON))
}

/// Middleware (for `axum::middleware::map_response`): turns the bare error responses
/// of axum and tower-http (unknown route, wrong method, body over the limit, timeout,
/// extractor rejections) into problems, keeping their headers (e.g. `Allow`).
pub async fn ensure_problem(response: Response) -> Response {
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
        s if s.is_server_error() => ("internal", INTERNAL_ERROR_TEXT.to_owned()),
        _ => ("bad_request", "the request is malformed".to_owned()),
    };
    let (mut parts, body) = response.into_parts();
    // Keep the framework's own explanation (e.g. a path rejection) when it has one.
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let detail = if text.trim().is_empty()
        || status == StatusCode::METHOD_NOT_ALLOWED
        || status.is_server_error()
    {
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

    /// The bare error responses of axum and tower-http become problems with the
    /// status's code, keeping their headers and (but for 405 and 5xx) their text.
    #[tokio::test]
    async fn framework_errors_become_problems() {
        async fn run(status: StatusCode, text: &str) -> (StatusCode, HeaderMap, Value) {
            let mut response = (status, text.to_owned()).into_response();
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
            let response = ensure_problem(response).await;
            let (parts, body) = response.into_parts();
            let body = axum::body::to_bytes(body, 1 << 16).await.unwrap();
            let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
            (parts.status, parts.headers, json)
        }
        let cases = [
            (
                StatusCode::NOT_FOUND,
                "",
                "no_route",
                "no route matches this path",
            ),
            (
                StatusCode::METHOD_NOT_ALLOWED,
                "ignored",
                "method_not_allowed",
                "this path does not support that method (allowed: GET, POST)",
            ),
            (
                StatusCode::PAYLOAD_TOO_LARGE,
                "",
                "payload_too_large",
                "the request body is larger than the limit",
            ),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "",
                "timeout",
                "the request did not complete in time",
            ),
            (
                StatusCode::REQUEST_TIMEOUT,
                "",
                "timeout",
                "the request did not complete in time",
            ),
            (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "",
                "unsupported_media_type",
                "unsupported content type",
            ),
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "stack trace",
                "internal",
                INTERNAL_ERROR_TEXT,
            ),
            (StatusCode::BAD_GATEWAY, "", "internal", INTERNAL_ERROR_TEXT),
            (
                StatusCode::BAD_REQUEST,
                "Failed to parse the path",
                "bad_request",
                "Failed to parse the path",
            ),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                "",
                "bad_request",
                "the request is malformed",
            ),
        ];
        for (status, text, code, detail) in cases {
            let (got, headers, body) = run(status, text).await;
            assert_eq!(got, status);
            assert_eq!(headers[header::CONTENT_TYPE], PROBLEM_JSON, "{status}");
            assert_eq!(
                headers[header::ALLOW],
                "GET, POST",
                "headers kept: {status}"
            );
            assert_eq!(body["code"], code, "{status}");
            assert_eq!(body["detail"], detail, "{status}");
        }
        // A success, and a problem already, pass untouched.
        for status in [StatusCode::OK, StatusCode::NOT_MODIFIED] {
            let (got, headers, body) = run(status, "fine").await;
            assert_eq!(got, status);
            assert!(
                headers.get(header::CONTENT_TYPE) != Some(&HeaderValue::from_static(PROBLEM_JSON))
            );
            assert_eq!(body, Value::Null);
        }
        let problem = Problem::new(StatusCode::CONFLICT, "mine", "kept as it is").into_response();
        let response = ensure_problem(problem).await;
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["code"], "mine");
    }

    /// What a problem made from a core error says, member by member.
    #[test]
    fn a_problem_exposes_what_it_was_made_from() {
        let limited = Error::new(ErrorKind::RateLimited, "slow down")
            .with_retry_after(std::time::Duration::from_millis(1_500));
        let problem = Problem::from(&limited);
        assert_eq!(problem.title(), ErrorKind::RateLimited.title());
        assert_eq!(problem.retry_after(), Some(2));
        assert_eq!(problem.request_id(), None);
        assert_eq!(
            Problem::from(Error::new(ErrorKind::Conflict, "x")).retry_after(),
            None
        );
        assert_eq!(
            Problem::from(Error::new(ErrorKind::Unauthenticated, "who?")).challenge(),
            Some(Challenge::Required)
        );
        assert_eq!(
            Problem::from(Error::new(ErrorKind::Forbidden, "no")).challenge(),
            Some(Challenge::InsufficientScope)
        );
        assert_eq!(
            Problem::from(Error::new(ErrorKind::Conflict, "x")).challenge(),
            None
        );
        let inside = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(
                RequestContext::new()
                    .with_request_id("req-9")
                    .scope(async { Problem::bad_request("no") }),
            );
        assert_eq!(inside.request_id(), Some("req-9"));
    }

    #[test]
    fn every_kind_gets_the_status_of_the_core_table_and_its_type() {
        for kind in ErrorKind::ALL {
            let problem = Problem::from(Error::new(kind, "x"));
            assert_eq!(problem.status().as_u16(), kind.http_status(), "{kind}");
            assert_eq!(
                problem.problem_type(),
                format!("urn:petstore:problem:{}", kind.code())
            );
            assert_eq!(problem.kind(), Some(kind));
        }
    }

    /// The schema requires only the members every problem has: a problem without field
    /// errors or request id leaves those out, and must still fit its schema.
    #[test]
    fn the_schema_requires_only_what_every_problem_carries() {
        let schema = schemars::schema_for!(Problem).to_value();
        assert_eq!(
            schema["required"],
            serde_json::json!(["type", "title", "status", "detail", "code"])
        );
        let body: Value = serde_json::from_str(&Problem::bad_request("x").to_json()).unwrap();
        for member in body.as_object().unwrap().keys() {
            assert!(schema["properties"].get(member).is_some(), "{member}");
        }
    }

    #[test]
    fn an_internal_error_says_the_fixed_text_only() {
        let problem = Problem::from(Error::new(ErrorKind::Internal, "db password is hunter2"));
        assert_eq!(problem.detail(), INTERNAL_ERROR_TEXT);
        assert!(!problem.to_json().contains("hunter2"));
    }

    #[test]
    fn the_body_has_the_fields_the_request_id_and_added_members() {
        let problem = Problem::from(Error::invalid_field("name", "must not be empty"))
            .with_member("payment", serde_json::json!({"id": "pay_1"}))
            .with_member("status", 999);
        let body: Value = serde_json::from_str(&problem.to_json()).unwrap();
        assert_eq!(body["errors"][0]["field"], "name");
        assert_eq!(body["payment"]["id"], "pay_1");
        assert_eq!(
            body["status"], 422,
            "a member cannot replace a standard one"
        );
        assert!(body.get("request_id").is_none(), "outside a request");

        let inside = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(
                RequestContext::new()
                    .with_request_id("req-7")
                    .scope(async { Problem::bad_request("no").to_json() }),
            );
        let body: Value = serde_json::from_str(&inside).unwrap();
        assert_eq!(body["request_id"], "req-7");
    }

    #[test]
    fn responses_carry_retry_after_and_the_challenge_for_the_edge() {
        let response = problem_response(
            &Error::new(ErrorKind::RateLimited, "slow down")
                .with_retry_after(std::time::Duration::from_millis(1500)),
        );
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");

        let response = problem_response(&Error::new(ErrorKind::Forbidden, "no scope"));
        assert_eq!(
            response.extensions().get::<Challenge>(),
            Some(&Challenge::InsufficientScope)
        );
        let problem = Problem::from(Error::new(ErrorKind::Unauthenticated, "bad")).invalid_token();
        assert_eq!(problem.challenge(), Some(Challenge::InvalidToken));
        // Only a 401 can say that a token was invalid.
        let problem = Problem::bad_request("x").invalid_token();
        assert_eq!(problem.challenge(), None);
    }
}
