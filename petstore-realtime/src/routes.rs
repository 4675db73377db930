//! The router and what every endpoint shares.

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, header};
use axum::routing::get;
use petstore_core::{Error, ErrorKind, PetStore, Principal};
use tokio_util::sync::CancellationToken;

use crate::config::RealtimeConfig;
use crate::frame::FrameCache;
use crate::{sse, ws};

/// The state of every endpoint.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) store: PetStore,
    pub(crate) config: RealtimeConfig,
    /// Cancelled when the server shuts down: streams end, WebSockets close with 1001.
    pub(crate) shutdown: CancellationToken,
    /// Event frames shared by the WebSocket connections of a channel.
    pub(crate) frames: FrameCache,
    /// Event messages shared by the SSE streams.
    pub(crate) sse_messages: Arc<sse::MessageCache>,
}

/// The SSE and WebSocket endpoints over `store`:
///
/// - `GET /v1/stream?channels=pets,orders` and `GET /v1/stream/{channel}`: Server-Sent
///   Events;
/// - `GET /v1/ws`: WebSocket with JSON frames (subscribe, unsubscribe, chat, ping);
/// - `GET /v1/ws/chat`: the same, subscribed to `chat` as soon as it is authenticated.
///
/// Mount it with `app.merge(petstore_realtime::router(store, config))`. Open streams
/// last until their clients leave; to end them when the server stops, use
/// [`router_with_shutdown`].
pub fn router(store: PetStore, config: RealtimeConfig) -> Router {
    router_with_shutdown(store, config, CancellationToken::new())
}

/// [`router`], with open connections ended when `shutdown` is cancelled: SSE
/// responses end (after the events already taken from the log), WebSocket connections
/// send what is queued and close with 1001 (going away). Cancel it together with
/// `axum::serve(..).with_graceful_shutdown(..)`, which waits for open connections.
///
/// ```
/// use petstore_core::PetStore;
/// use petstore_realtime::RealtimeConfig;
/// use tokio_util::sync::CancellationToken;
///
/// let shutdown = CancellationToken::new();
/// let store = PetStore::in_memory();
/// let app = petstore_realtime::router_with_shutdown(store, RealtimeConfig::default(), shutdown.clone());
/// # drop(app);
/// // ... later, when the server stops:
/// shutdown.cancel();
/// ```
pub fn router_with_shutdown(
    store: PetStore,
    config: RealtimeConfig,
    shutdown: CancellationToken,
) -> Router {
    let shared = Arc::new(Shared {
        store,
        config,
        shutdown,
        frames: FrameCache::default(),
        sse_messages: Arc::default(),
    });
    Router::new()
        .route("/v1/stream", get(sse::stream))
        .route("/v1/stream/{*channel}", get(sse::stream_channel))
        .route("/v1/ws", get(ws::connect))
        .route("/v1/ws/chat", get(ws::connect_chat))
        .with_state(shared)
}

/// The caller: the `Authorization` header when present, else the `token` query
/// parameter (browsers cannot set headers on `EventSource` and `WebSocket`), else
/// anonymous. A credential that is present but bad is an error.
pub(crate) fn principal(
    store: &PetStore,
    headers: &HeaderMap,
    token: Option<&str>,
) -> Result<Principal, Error> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().map_err(|_| {
            Error::new(
                ErrorKind::Unauthenticated,
                "the Authorization header is not valid text",
            )
        })?;
        return store.authenticate_header(Some(value));
    }
    authenticate_token(store, token)
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
