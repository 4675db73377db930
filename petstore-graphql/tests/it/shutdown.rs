//! Shutdown: cancelling the token given to `router` closes GraphQL WebSocket
//! connections (both protocols) with 1001, so that graceful shutdown finishes.

use petstore_core::{PetStore, Principal};
use petstore_graphql::GraphQlConfig;
use petstore_http::Edge;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::common::{Frame, Ws, start_full};
use crate::subscriptions::new_pet;

/// The next close frame, skipping protocol messages; then reads on until the socket is
/// gone, which sends the client's answer to the close.
async fn closed(ws: &mut Ws) -> (u16, String) {
    let frame = loop {
        match ws.frame().await {
            Frame::Json(message) => {
                assert_ne!(message["type"], "next", "nothing after shutdown: {message}");
            }
            Frame::Closed(frame) => break frame.expect("a close code"),
        }
    };
    while let Frame::Closed(Some(_)) | Frame::Json(_) = ws.frame().await {}
    (u16::from(frame.code), frame.reason.to_string())
}

#[tokio::test]
async fn cancelling_closes_websockets_with_1001_and_lets_graceful_shutdown_finish() {
    let store = PetStore::in_memory();
    let shutdown = CancellationToken::new();
    let server = start_full(
        store.clone(),
        GraphQlConfig::default(),
        &Edge::new(),
        shutdown.clone(),
    )
    .await;
    let since = store.head().await.unwrap().to_string();
    let query = "subscription($since: String) { events(since: $since) { subject } }";

    let mut current = server.ws("graphql-transport-ws").await;
    current.init(json!({})).await;
    current
        .send(json!({ "type": "subscribe", "id": "1", "payload": {
            "query": query, "variables": { "since": since }
        }}))
        .await;
    let mut legacy = server.ws("graphql-ws").await;
    legacy.init(json!({})).await;
    legacy
        .send(json!({ "type": "start", "id": "1", "payload": {
            "query": query, "variables": { "since": since }
        }}))
        .await;

    // Both are live: an event reaches both.
    let pet = store
        .create_pet(&Principal::system("test"), new_pet("Before"))
        .await
        .unwrap();
    for (ws, kind) in [(&mut current, "next"), (&mut legacy, "data")] {
        let message = ws.next().await;
        assert_eq!(message["type"], kind, "{message}");
        assert_eq!(
            message["payload"]["data"]["events"]["subject"],
            pet.id.as_str()
        );
    }

    shutdown.cancel();
    for ws in [&mut current, &mut legacy] {
        assert_eq!(closed(ws).await, (1001, "server shutting down".to_owned()));
    }
    server.stopped().await;
}
