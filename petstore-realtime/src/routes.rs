//! The router and what every endpoint shares.

use std::sync::Arc;

use std::convert::Infallible;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::routing::get;
use petstore_core::{Error, PetStore, Principal};
use petstore_http::{Caller, Edge};
use tokio_util::sync::CancellationToken;

use crate::config::RealtimeConfig;
use crate::error::WireError;
use crate::frame::FrameCache;
use crate::quota::StreamQuota;
use crate::{sse, ws};

/// The state of every endpoint.
#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) service: PetStore,
    pub(crate) config: RealtimeConfig,
    /// Cancelled when the server shuts down: streams end, WebSockets close with 1001.
    pub(crate) shutdown: CancellationToken,
    /// Event frames shared by the WebSocket connections of a channel.
    pub(crate) frames: FrameCache,
    /// Event messages shared by the SSE streams.
    pub(crate) sse_messages: Arc<sse::MessageCache>,
    /// Open SSE streams per caller.
    pub(crate) sse_quota: Arc<StreamQuota>,
}

/// The SSE and WebSocket endpoints over `store`, behind `edge`:
///
/// - `GET /v1/stream?channels=pets,orders` and `GET /v1/stream/{channel}`: Server-Sent
///   Events;
/// - `GET /v1/ws`: WebSocket with JSON frames (subscribe, unsubscribe, chat, ping);
/// - `GET /v1/ws/chat`: the same, subscribed to `chat` as soon as it is authenticated.
///
/// Mount it with `app.merge(petstore_realtime::router(store, config, &edge, shutdown))`.
/// Open connections end when `shutdown` is cancelled: SSE responses end (after the
/// events already taken from the log), WebSocket connections send what is queued and
/// close with 1001 (going away). Cancel it together with
/// `axum::serve(..).with_graceful_shutdown(..)`, which waits for open connections.
///
/// ```
/// use petstore_core::PetStore;
/// use petstore_http::Edge;
/// use petstore_realtime::RealtimeConfig;
/// use tokio_util::sync::CancellationToken;
///
/// let shutdown = CancellationToken::new();
/// let store = PetStore::in_memory();
/// let app = petstore_realtime::router(store, RealtimeConfig::default(), &Edge::new(), shutdown.clone());
/// # drop(app);
/// // ... later, when the server stops:
/// shutdown.cancel();
/// ```
pub fn router(
    store: PetStore,
    config: RealtimeConfig,
    edge: &Edge,
    shutdown: CancellationToken,
) -> Router {
    let shared = Arc::new(AppState {
        service: store.clone(),
        config,
        shutdown,
        frames: FrameCache::default(),
        sse_messages: Arc::default(),
        sse_quota: Arc::default(),
    });
    Router::new()
        .route("/v1/stream", get(sse::stream))
        .route("/v1/stream/{*channel}", get(sse::stream_channel))
        .route("/v1/ws", get(ws::connect))
        .route("/v1/ws/chat", get(ws::connect_chat))
        .with_state(shared)
        .layer(edge.layer(store))
}

/// The `Authorization` header as the edge read it.
#[derive(Debug)]
pub(crate) struct HeaderCredential {
    presented: bool,
    caller: Result<Principal, Error>,
}

impl<S: Send + Sync> FromRequestParts<S> for HeaderCredential {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(Self {
            presented: Caller::presented(&parts.extensions),
            caller: Caller::from_extensions(&parts.extensions),
        })
    }
}

/// The caller: the `Authorization` header when present, else the `token` query
/// parameter (browsers cannot set headers on `EventSource` and `WebSocket`), else
/// anonymous. A credential that is present but bad is an error.
pub(crate) fn principal(
    store: &PetStore,
    header: HeaderCredential,
    token: Option<&str>,
) -> Result<Principal, WireError> {
    match token {
        Some(token) if !header.presented && !token.trim().is_empty() => {
            let who = authenticate_token(store, Some(token))
                .map_err(|e| WireError::from_core(&e).invalid_token())?;
            // The edge saw no header: the request's span learns the caller here.
            if let Some(sub) = who.subject() {
                tracing::Span::current().record("sub", tracing::field::display(sub));
            }
            Ok(who)
        }
        _ => header.caller.map_err(|e| WireError::from_core(&e)),
    }
}

/// A bare token (a `Bearer ` prefix is tolerated); empty means none.
pub(crate) fn authenticate_token(
    store: &PetStore,
    token: Option<&str>,
) -> Result<Principal, Error> {
    let token = token.map(str::trim).filter(|t| !t.is_empty());
    match token {
        Some(t)
            if t.get(..7)
                .is_some_and(|p| p.eq_ignore_ascii_case("bearer ")) =>
        {
            store.authenticate_header(Some(t))
        }
        other => store.authenticate(other),
    }
}
