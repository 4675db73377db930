//! The axum router: GraphQL over HTTP (`POST` / `GET /graphql`), the WebSocket upgrade
//! on the same path, and GraphiQL.

use petstore_core::telemetry;
use std::convert::Infallible;
use std::sync::Arc;
use tracing::Instrument as _;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use juniper::InputValue;
use juniper::http::GraphQLRequest;
use petstore_core::{Error, PetStore, Principal, RateLimiter};
use petstore_http::{Caller, Edge, Problem, is_json, media_type};
use serde::Deserialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::config::GraphQlConfig;
use crate::error::{code, graphql_errors, request_error};
use crate::limits::{Limits, OperationKind};
use crate::schema::{Context, Schema};

/// Everything a request handler needs.
pub(crate) struct AppState {
    pub(crate) service: PetStore,
    pub(crate) schema: Arc<Schema>,
    pub(crate) limits: Limits,
    pub(crate) config: GraphQlConfig,
    /// The edge's limiter (`None` when rate limiting is off), which also counts the
    /// operations started on a WebSocket.
    pub(crate) limiter: Option<Arc<RateLimiter>>,
    /// Cancelled when the server shuts down: WebSocket connections close with 1001.
    pub(crate) shutdown: CancellationToken,
}

/// The GraphQL routes over `store`:
///
/// - `POST /graphql` (`application/json` or `application/graphql` body) and
///   `GET /graphql?query=…` (queries only) with `Authorization: Bearer <jwt>`;
/// - WebSocket subscriptions on `/graphql`, `graphql-transport-ws` or the legacy
///   `graphql-ws`, chosen by `Sec-WebSocket-Protocol`;
/// - `GET /graphiql`, the GraphiQL IDE (unless switched off), with its scripts and
///   stylesheets under `/graphiql/assets/`, all served from this crate.
///
/// The routes sit behind `edge` (request ids, authentication once per request, rate
/// limiting, one bearer challenge). A bad bearer token is refused with HTTP 401 (body:
/// a GraphQL error with `extensions.code = "UNAUTHENTICATED"`); no token means an
/// anonymous caller. Errors the edge raises itself (two `Authorization` headers: 400,
/// a spent rate limit: 429) are GraphQL errors too, with the status and problem `type`
/// every HTTP adapter answers for them.
///
/// With a rate limiter on the edge, every HTTP request counts (the WebSocket handshake
/// included), and so does every operation started on a WebSocket; serve the app with
/// `app.into_make_service_with_connect_info::<std::net::SocketAddr>()` so that
/// anonymous callers are counted per client IP (without it they share one bucket).
///
/// Cancelling `shutdown` closes open WebSocket connections with 1001 (going away).
pub fn router(
    store: PetStore,
    config: GraphQlConfig,
    edge: &Edge,
    shutdown: CancellationToken,
) -> Router {
    let schema = crate::schema::schema();
    let schema = if config.introspection {
        schema
    } else {
        schema.disable_introspection()
    };
    let app = Arc::new(AppState {
        service: store.clone(),
        schema: Arc::new(schema),
        limits: Limits::new(&config),
        limiter: edge.limiter().cloned(),
        config: config.clone(),
        shutdown,
    });
    let mut router = Router::new().route("/graphql", get(get_graphql).post(post_graphql));
    if config.graphiql {
        router = router.merge(crate::graphiql::routes());
    }
    router
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .with_state(app)
        .layer(edge.layer_with(store, problem_response))
}

/// A GraphQL response made of errors only, raised before execution.
pub(crate) fn errors_response(status: StatusCode, errors: Vec<serde_json::Value>) -> Response {
    (status, axum::Json(json!({ "errors": errors }))).into_response()
}

fn bad_request(message: impl Into<String>) -> Response {
    errors_response(
        StatusCode::BAD_REQUEST,
        vec![request_error("BAD_REQUEST", message)],
    )
}

/// A problem of the HTTP layer (raised by the edge, or a rejected credential) as a
/// GraphQL response: the problem's status (core's one table for a core error kind), and
/// one error whose `extensions` carry this adapter's `code`, the problem `type` every
/// HTTP adapter answers with, and `retryAfter` when there is one.
pub(crate) fn problem_response(problem: Problem) -> Response {
    let code = match problem.kind() {
        Some(kind) => code(kind).to_owned(),
        None => problem.code().to_ascii_uppercase(),
    };
    let mut error = request_error(&code, problem.detail());
    error["extensions"]["type"] = problem.problem_type().into();
    if let Some(secs) = problem.retry_after() {
        error["extensions"]["retryAfter"] = secs.max(1).into();
    }
    let mut response = errors_response(problem.status(), vec![error]);
    problem.decorate(&mut response);
    response
}

/// The caller, as the edge authenticated it from the `Authorization` header.
pub(crate) struct Who(pub(crate) Result<Principal, Error>);

impl<S: Send + Sync> FromRequestParts<S> for Who {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(Self(Caller::from_extensions(&parts.extensions)))
    }
}

async fn post_graphql(
    State(app): State<Arc<AppState>>,
    Who(who): Who,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return errors_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                vec![request_error(
                    "PAYLOAD_TOO_LARGE",
                    format!(
                        "the request body is larger than {} bytes",
                        app.config.max_body_bytes
                    ),
                )],
            );
        }
        Err(rejection) => return bad_request(rejection.body_text()),
    };
    let content_type = media_type(&headers).unwrap_or_default();
    let request = if is_json(&content_type) {
        if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
            return bad_request("batched operations are not supported: send one at a time");
        }
        let value = match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(value) => value,
            Err(e) => return bad_request(format!("the body is not a GraphQL request: {e}")),
        };
        // juniper silently drops `variables` that are not an object: refuse them.
        if let Some(vars) = value.get("variables")
            && !(vars.is_null() || vars.is_object())
        {
            return bad_request("`variables` must be a JSON object");
        }
        match serde_json::from_value::<GraphQLRequest>(value) {
            Ok(request) => request,
            Err(e) => return bad_request(format!("the body is not a GraphQL request: {e}")),
        }
    } else if content_type == "application/graphql" {
        match String::from_utf8(body.to_vec()) {
            Ok(query) => GraphQLRequest::new(query, None, None),
            Err(_) => return bad_request("the body is not UTF-8"),
        }
    } else {
        return errors_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            vec![request_error(
                "BAD_REQUEST",
                "send `Content-Type: application/json` (or `application/graphql`)",
            )],
        );
    };
    execute(&app, who, Method::POST, request).await
}

/// The query string of `GET /graphql`.
#[derive(Debug, Deserialize)]
struct GetParams {
    query: Option<String>,
    #[serde(rename = "operationName")]
    operation_name: Option<String>,
    variables: Option<String>,
}

async fn get_graphql(State(app): State<Arc<AppState>>, request: Request<Body>) -> Response {
    let (parts, _) = request.into_parts();
    let who = Caller::from_extensions(&parts.extensions);
    let upgrade = parts
        .headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if upgrade {
        return crate::ws::upgrade(app, who, parts).await;
    }
    let params = match Query::<GetParams>::try_from_uri(&parts.uri) {
        Ok(Query(params)) => params,
        Err(e) => return bad_request(e.body_text()),
    };
    let Some(query) = params.query else {
        return bad_request(
            "GET /graphql needs a `query` parameter (or a WebSocket upgrade for subscriptions)",
        );
    };
    let variables = match params
        .variables
        .as_deref()
        .map(serde_json::from_str::<InputValue>)
    {
        None => None,
        Some(Ok(v)) => Some(v),
        Some(Err(e)) => return bad_request(format!("`variables` is not a JSON object: {e}")),
    };
    let request = GraphQLRequest::new(query, params.operation_name, variables);
    execute(&app, who, Method::GET, request).await
}

async fn execute(
    app: &AppState,
    who: Result<Principal, Error>,
    method: Method,
    request: GraphQLRequest,
) -> Response {
    let principal = match who {
        Ok(p) => p,
        Err(e) => return problem_response(Problem::from(e)),
    };
    let variables = request.variables();
    let int_variable = |name: &str| {
        variables
            .get(name)
            .and_then(InputValue::as_scalar)
            .and_then(juniper::ScalarValue::try_to_int)
            .map(i64::from)
    };
    let checked = app.limits.check(
        &request.query,
        request.operation_name.as_deref(),
        &int_variable,
    );
    let kind = match &checked {
        Ok(Some(OperationKind::Mutation)) => "mutation",
        Ok(Some(OperationKind::Subscription)) => "subscription",
        _ => "query",
    };
    match checked {
        Err(rejection) => {
            return errors_response(
                StatusCode::BAD_REQUEST,
                vec![request_error(rejection.code, rejection.message)],
            );
        }
        Ok(Some(OperationKind::Subscription)) => {
            return bad_request(
                "subscriptions run over a WebSocket on /graphql (graphql-transport-ws or graphql-ws)",
            );
        }
        Ok(Some(OperationKind::Mutation)) if method == Method::GET => {
            let mut response = errors_response(
                StatusCode::METHOD_NOT_ALLOWED,
                vec![request_error(
                    "BAD_REQUEST",
                    "mutations need POST (GET runs queries only)",
                )],
            );
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            return response;
        }
        Ok(_) => {}
    }
    // The operation name is the client's choice: in the span, not in a metric label.
    let span = tracing::info_span!(
        "graphql_operation",
        kind,
        name = request.operation_name.as_deref(),
        sub = principal.subject(),
    );
    let started = std::time::Instant::now();
    let context = Context::new(app.service.clone(), principal);
    let (outcome, response) = match request
        .execute(&app.schema, &context)
        .instrument(span.clone())
        .await
        .into_result()
    {
        Ok((data, errors)) => {
            let mut body = json!({ "data": data });
            let outcome = if errors.is_empty() { "ok" } else { "error" };
            if !errors.is_empty() {
                body["errors"] = serde_json::to_value(&errors).unwrap_or_default();
            }
            (outcome, (StatusCode::OK, axum::Json(body)).into_response())
        }
        Err(e) => (
            "error",
            errors_response(StatusCode::BAD_REQUEST, graphql_errors(&e)),
        ),
    };
    let elapsed = started.elapsed();
    tracing::debug!(parent: &span, outcome, "GraphQL operation finished");
    telemetry::record_request("graphql", kind, outcome, elapsed);
    response
}
