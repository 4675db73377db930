//! MCP over streamable HTTP at `/mcp`, with bearer authentication.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::header::CONTENT_TYPE;
use petstore_core::{Error, ErrorKind, PetStore};
use petstore_http::{Caller, Edge, Problem};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use crate::config::McpConfig;
use crate::metadata::ProtectedResource;
use crate::resources::ListenFrom;
use crate::server::PetStoreMcp;

/// The path MCP is served at.
pub(crate) const PATH: &str = "/mcp";

/// An axum router serving MCP over streamable HTTP at `/mcp`: clients of the current
/// protocol (stateless, `server/discover`) and of 2025-11-25 (`initialize`, with a
/// session when [`McpConfig::legacy_sessions`] is on), behind `edge`. Merge it into an
/// app with `app.merge(petstore_mcp::router(store, config, &edge, shutdown))`.
///
/// `Authorization: Bearer <jwt>` is mapped to the core principal of each request (the
/// edge authenticates it once): write tools need the token's scopes. A bad token gets
/// 401 with the edge's `WWW-Authenticate: Bearer` challenge, which points to the OAuth
/// protected-resource metadata (RFC 9728) served at
/// `/.well-known/oauth-protected-resource/mcp` (and `/.well-known/oauth-protected-resource`);
/// a missing one is anonymous (reads only) unless reads are closed
/// ([`McpConfig::require_auth_for_reads`] or the store's own setting), then 401 too.
/// With a rate limiter on the edge, every HTTP request counts once.
///
/// Cancelling `shutdown` ends every session (its open streams end) and the open
/// `subscriptions/listen` streams, so that graceful shutdown finishes.
pub fn router(
    store: PetStore,
    config: McpConfig,
    edge: &Edge,
    shutdown: CancellationToken,
) -> Router {
    let require_token = config.require_auth_for_reads || store.config().require_auth_for_reads;
    let metadata = ProtectedResource::new(&config);
    let edge = edge.clone().resource_metadata(metadata.url());
    let server = PetStoreMcp::new(store.clone()).with_legacy_sessions(config.legacy_sessions);
    let http = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(config.legacy_sessions)
        .with_allowed_hosts(config.allowed_hosts)
        .with_allowed_origins(config.allowed_origins)
        .enforce_origin_validation()
        // A child: rmcp ends its sessions with it, and cannot cancel the server's token.
        .with_cancellation_token(shutdown.child_token());
    // One server value per session (or per request when stateless): cloning starts a
    // fresh set of resource subscriptions.
    let mut sessions = LocalSessionManager::default();
    // rmcp ends a session whose worker hears nothing for `keep_alive`, and drops it
    // from the map: its id then answers 404.
    sessions.session_config.keep_alive = Some(config.session_idle_timeout);
    let sessions = Arc::new(sessions);
    let cap = SessionCap {
        sessions: sessions.clone(),
        max: config.max_sessions,
        pending: Arc::new(AtomicUsize::new(0)),
        store: store.clone(),
    };
    let service = StreamableHttpService::new(move || Ok(server.clone()), sessions, http);
    Router::new()
        .route_service(PATH, service)
        .layer(middleware::from_fn(move |request, next| {
            check_json_rpc(cap.clone(), request, next)
        }))
        .layer(middleware::from_fn(move |request, next| {
            authenticate(require_token, request, next)
        }))
        .merge(metadata.router())
        .layer(edge.layer(store))
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

/// The bound on open sessions: rmcp's session map, read before an `initialize` that
/// would open one more.
#[derive(Clone)]
struct SessionCap {
    sessions: Arc<LocalSessionManager>,
    max: usize,
    /// `initialize` requests admitted whose session is not in `sessions` yet: each
    /// holds a place until rmcp has answered it.
    pending: Arc<AtomicUsize>,
    /// Read for the log head where a `subscriptions/listen` starts ([`ListenFrom`]).
    store: PetStore,
}

impl SessionCap {
    /// A place for a new session, or the refusal of an `initialize` that would open
    /// more than `max` sessions (503, like any capacity limit of the server, with a
    /// JSON-RPC error saying which). The place is reserved until the returned guard
    /// drops (after rmcp answered, when the session is in its map), so initializes
    /// racing at the cap cannot pass it together. Between rmcp adding the session and
    /// the guard dropping, the session counts twice: an `initialize` racing that
    /// moment at the cap is refused (503 with `Retry-After`), never admitted beyond it.
    /// `Ok(None)` for other requests.
    async fn reserve(&self, opens_session: bool) -> Result<Option<Reserved>, Response> {
        if !opens_session {
            return Ok(None);
        }
        let reserved = Reserved(self.pending.clone());
        let pending = self.pending.fetch_add(1, Ordering::SeqCst) + 1;
        let open = self.sessions.sessions.read().await.len();
        if open + pending <= self.max {
            return Ok(Some(reserved));
        }
        drop(reserved);
        tracing::warn!(
            open,
            max = self.max,
            "MCP session cap reached: initialize refused"
        );
        let mut response = json_rpc_error(
            StatusCode::SERVICE_UNAVAILABLE,
            -32000,
            &format!(
                "too many MCP sessions open (at most {}): retry later, or use the stateless protocol",
                self.max
            ),
        );
        response.headers_mut().insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("30"),
        );
        Err(response)
    }
}

/// A session place held by an `initialize` in flight (see [`SessionCap::reserve`]).
struct Reserved(Arc<AtomicUsize>);

impl Drop for Reserved {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Reads POST bodies before rmcp does, so that a body that is not JSON-RPC 2.0 gets
/// 400 with a JSON-RPC error (`-32700` parse error, `-32600` invalid request) and an
/// oversize one 413 (rmcp 3.11 itself answers 415 with plain text), and an
/// `initialize` over the session cap 503.
async fn check_json_rpc(cap: SessionCap, request: Request, next: Next) -> Response {
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
    let message = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Err(_) => {
            return json_rpc_error(
                StatusCode::BAD_REQUEST,
                -32700,
                "parse error: the body is not JSON",
            );
        }
        Ok(message) => message,
    };
    let valid =
        message.is_object() && message.get("jsonrpc").and_then(|v| v.as_str()) == Some("2.0");
    if !valid {
        return json_rpc_error(
            StatusCode::BAD_REQUEST,
            -32600,
            "invalid request: expected one JSON-RPC 2.0 message object",
        );
    }
    let method = message.get("method").and_then(|m| m.as_str());
    let opens_session =
        method == Some("initialize") && !parts.headers.contains_key("mcp-session-id");
    let place = match cap.reserve(opens_session).await {
        Ok(place) => place,
        Err(refused) => return refused,
    };
    let mut parts = parts;
    if method == Some("subscriptions/listen") {
        // Where its feed starts: rmcp acknowledges before the handler runs.
        match cap.store.head().await {
            Ok(head) => {
                parts.extensions.insert(ListenFrom(head));
            }
            Err(e) => tracing::warn!(error = %e, "MCP listen: the log head cannot be read"),
        }
    }
    let response = next
        .run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await;
    drop(place);
    response
}

/// The HTTP request an MCP message came in: its request context (request id, the
/// caller's `traceparent`) and its `http_request` span, for the handler that rmcp runs
/// in a task of its own.
#[derive(Clone)]
pub(crate) struct HttpOrigin {
    pub(crate) context: petstore_core::RequestContext,
    pub(crate) span: tracing::Span,
}

/// Puts the caller the edge authenticated into the request's extensions as the core
/// `Principal`, where the MCP handler finds it (rmcp hands it the request's
/// `http::request::Parts`). A rejected token, or no token where reads are closed, is a
/// 401 problem (the edge adds the challenge).
async fn authenticate(require_token: bool, mut request: Request, next: Next) -> Response {
    match Caller::from_extensions(request.extensions()) {
        Ok(principal) if require_token && !principal.is_authenticated() => Problem::from(
            Error::new(ErrorKind::Unauthenticated, "a bearer token is required"),
        )
        .into_response(),
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            // rmcp runs the handler in a task of its own, outside the edge's scope.
            request.extensions_mut().insert(HttpOrigin {
                context: petstore_core::RequestContext::current(),
                span: tracing::Span::current(),
            });
            next.run(request).await
        }
        Err(e) => Problem::from(e).into_response(),
    }
}
