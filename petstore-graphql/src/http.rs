//! The axum router: GraphQL over HTTP (`POST` / `GET /graphql`), the WebSocket upgrade
//! on the same path, and GraphiQL.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use juniper::InputValue;
use juniper::http::GraphQLRequest;
use petstore_core::{Error, ErrorKind, PetStore, Principal, RateLimiter};
use serde::Deserialize;
use serde_json::json;

use crate::config::GraphQlConfig;
use crate::error::{code, graphql_errors, request_error};
use crate::limits::{Limits, OperationKind};
use crate::schema::{Context, Schema};

/// Everything a request handler needs.
pub(crate) struct App {
    pub(crate) store: PetStore,
    pub(crate) schema: Arc<Schema>,
    pub(crate) limits: Limits,
    pub(crate) config: GraphQlConfig,
    /// `None` when rate limiting is off.
    pub(crate) limiter: Option<RateLimiter>,
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
/// A bad bearer token is refused with HTTP 401 (body: a GraphQL error with
/// `extensions.code = "UNAUTHENTICATED"`); no token means an anonymous caller.
///
/// With [`GraphQlConfig::rate_limit`] on, serve the app with
/// `app.into_make_service_with_connect_info::<std::net::SocketAddr>()` so that
/// anonymous callers are counted per client IP (without it they share one bucket).
pub fn router(store: PetStore, config: GraphQlConfig) -> Router {
    let schema = crate::schema::schema();
    let schema = if config.introspection {
        schema
    } else {
        schema.disable_introspection()
    };
    let app = Arc::new(App {
        store,
        schema: Arc::new(schema),
        limits: Limits::new(&config),
        limiter: config
            .rate_limit
            .enabled
            .then(|| RateLimiter::new(config.rate_limit.clone())),
        config: config.clone(),
    });
    let mut router = Router::new().route("/graphql", get(get_graphql).post(post_graphql));
    if config.graphiql {
        router = router.merge(crate::graphiql::routes());
    }
    router
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(middleware::from_fn_with_state(
            app.clone(),
            crate::rate::limit,
        ))
        .with_state(app)
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

/// HTTP 401 for a bad credential.
pub(crate) fn unauthenticated(err: &Error) -> Response {
    let mut response = errors_response(
        StatusCode::UNAUTHORIZED,
        vec![request_error(code(err.kind()), err.message())],
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer error=\"invalid_token\""),
    );
    response
}

/// The caller named by an `Authorization` header (anonymous without one).
pub(crate) fn principal(store: &PetStore, headers: &HeaderMap) -> Result<Principal, Error> {
    let value = headers
        .get(header::AUTHORIZATION)
        .map(|v| {
            v.to_str().map_err(|_| {
                Error::new(
                    ErrorKind::Unauthenticated,
                    "the Authorization header is not valid text",
                )
            })
        })
        .transpose()?;
    store.authenticate_header(value)
}

async fn post_graphql(
    State(app): State<Arc<App>>,
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
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let request = if content_type.starts_with("application/json") {
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
    } else if content_type.starts_with("application/graphql") {
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
    execute(&app, &headers, Method::POST, request).await
}

/// The query string of `GET /graphql`.
#[derive(Debug, Deserialize)]
struct GetParams {
    query: Option<String>,
    #[serde(rename = "operationName")]
    operation_name: Option<String>,
    variables: Option<String>,
}

async fn get_graphql(State(app): State<Arc<App>>, request: Request<Body>) -> Response {
    let (parts, _) = request.into_parts();
    let upgrade = parts
        .headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if upgrade {
        return crate::ws::upgrade(app, parts).await;
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
    execute(&app, &parts.headers, Method::GET, request).await
}

async fn execute(
    app: &App,
    headers: &HeaderMap,
    method: Method,
    request: GraphQLRequest,
) -> Response {
    let principal = match principal(&app.store, headers) {
        Ok(p) => p,
        Err(e) => return unauthenticated(&e),
    };
    let variables = request.variables();
    let int_variable = |name: &str| {
        variables
            .get(name)
            .and_then(InputValue::as_scalar)
            .and_then(juniper::ScalarValue::try_to_int)
            .map(i64::from)
    };
    match app.limits.check(
        &request.query,
        request.operation_name.as_deref(),
        &int_variable,
    ) {
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
    let context = Context::new(app.store.clone(), principal);
    match request.execute(&app.schema, &context).await.into_result() {
        Ok((data, errors)) => {
            let mut body = json!({ "data": data });
            if !errors.is_empty() {
                body["errors"] = serde_json::to_value(&errors).unwrap_or_default();
            }
            (StatusCode::OK, axum::Json(body)).into_response()
        }
        Err(e) => errors_response(StatusCode::BAD_REQUEST, graphql_errors(&e)),
    }
}
