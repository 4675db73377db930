//! MCP over streamable HTTP at `/mcp`, with bearer authentication.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderValue, StatusCode};
use petstore_core::PetStore;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};

use crate::config::McpConfig;
use crate::server::PetStoreMcp;

/// The path MCP is served at.
const PATH: &str = "/mcp";

/// An axum router serving MCP over streamable HTTP at `/mcp`: clients of the current
/// protocol (stateless, `server/discover`) and of 2025-11-25 (`initialize`, with a
/// session when [`McpConfig::legacy_sessions`] is on). Merge it into an app with
/// `app.merge(petstore_mcp::router(store, config))`.
///
/// `Authorization: Bearer <jwt>` is mapped to the core principal of each request:
/// write tools need the token's scopes. A bad token gets 401 with `WWW-Authenticate:
/// Bearer`; a missing one is anonymous (reads only) unless reads are closed
/// ([`McpConfig::require_auth_for_reads`] or the store's own setting), then 401 too.
pub fn router(store: PetStore, config: McpConfig) -> Router {
    let auth = Auth {
        require_token: config.require_auth_for_reads || store.config().require_auth_for_reads,
        store: store.clone(),
    };
    let server = PetStoreMcp::new(store).with_legacy_sessions(config.legacy_sessions);
    let http = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(config.legacy_sessions)
        .with_allowed_hosts(config.allowed_hosts)
        .with_allowed_origins(config.allowed_origins)
        .enforce_origin_validation();
    // One server value per session (or per request when stateless): cloning starts a
    // fresh set of resource subscriptions.
    let service = StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(LocalSessionManager::default()),
        http,
    );
    Router::new()
        .route_service(PATH, service)
        .layer(middleware::from_fn(check_json_rpc))
        .layer(middleware::from_fn_with_state(auth, authenticate))
}

/// Largest JSON-RPC message accepted over HTTP.
const MAX_BODY: usize = 1024 * 1024;
/// How much of an oversize body is read (and dropped) before answering 413.
const MAX_DRAIN: usize = 16 * 1024 * 1024;

/// A JSON-RPC error response (`id` null: the request could not be read).
fn json_rpc_error(status: StatusCode, code: i64, message: &str) -> Response {
    let body = serde_json::json!({"jsonrpc": "2.0", "id": null, "error": {"code": code, "message": message}});
    (
        status,
        [(CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Reads POST bodies before rmcp does, so that a body that is not JSON-RPC 2.0 gets
/// 400 with a JSON-RPC error (`-32700` parse error, `-32600` invalid request) and an
/// oversize one 413; rmcp 3.11 itself answers 415 with plain text.
async fn check_json_rpc(request: Request, next: Next) -> Response {
    if request.method() != http::Method::POST {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    // Read up to MAX_BODY; past it keep draining (up to MAX_DRAIN) before answering, so
    // that the client finishes sending and reads the 413 instead of a reset.
    let mut chunks = body.into_data_stream();
    let mut bytes = Vec::new();
    let mut seen = 0usize;
    while let Some(chunk) = futures_util::StreamExt::next(&mut chunks).await {
        let Ok(chunk) = chunk else {
            return json_rpc_error(
                StatusCode::BAD_REQUEST,
                -32700,
                "the body could not be read",
            );
        };
        seen += chunk.len();
        if seen > MAX_DRAIN {
            break;
        }
        if seen <= MAX_BODY {
            bytes.extend_from_slice(&chunk);
        }
    }
    if seen > MAX_BODY {
        return json_rpc_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            -32600,
            "the message is larger than 1 MiB",
        );
    }
    let valid = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Err(_) => {
            return json_rpc_error(
                StatusCode::BAD_REQUEST,
                -32700,
                "parse error: the body is not JSON",
            );
        }
        Ok(serde_json::Value::Object(message)) => {
            message.get("jsonrpc").and_then(|v| v.as_str()) == Some("2.0")
        }
        Ok(_) => false,
    };
    if !valid {
        return json_rpc_error(
            StatusCode::BAD_REQUEST,
            -32600,
            "invalid request: expected one JSON-RPC 2.0 message object",
        );
    }
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

#[derive(Clone)]
struct Auth {
    store: PetStore,
    require_token: bool,
}

/// Maps the bearer token to a core `Principal` in the request's extensions, where
/// the MCP handler finds it (rmcp hands it the request's `http::request::Parts`).
async fn authenticate(State(auth): State<Auth>, mut request: Request, next: Next) -> Response {
    let header = match request
        .headers()
        .get(AUTHORIZATION)
        .map(HeaderValue::to_str)
    {
        None => None,
        Some(Ok(value)) => Some(value),
        Some(Err(_)) => {
            return unauthorized(Some("the Authorization header is not valid text"));
        }
    };
    match auth.store.authenticate_header(header) {
        Ok(principal) if auth.require_token && !principal.is_authenticated() => unauthorized(None),
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(e) => unauthorized(Some(e.message())),
    }
}

/// 401 with a `WWW-Authenticate: Bearer` challenge (RFC 6750): without a reason when
/// no token was sent, with `error="invalid_token"` when the token was rejected.
fn unauthorized(reason: Option<&str>) -> Response {
    let (challenge, message) = match reason {
        None => (
            r#"Bearer realm="petstore""#.to_owned(),
            "a bearer token is required",
        ),
        Some(reason) => (
            format!(
                r#"Bearer realm="petstore", error="invalid_token", error_description="{}""#,
                reason.replace(['"', '\\'], "'")
            ),
            reason,
        ),
    };
    let body = serde_json::json!({"code": "unauthenticated", "message": message}).to_string();
    let mut response = (StatusCode::UNAUTHORIZED, body).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let challenge = HeaderValue::from_str(&challenge).unwrap_or_else(|_| {
        HeaderValue::from_static(r#"Bearer realm="petstore", error="invalid_token""#)
    });
    headers.insert(WWW_AUTHENTICATE, challenge);
    response
}
