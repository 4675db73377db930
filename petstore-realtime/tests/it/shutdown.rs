//! Shutdown: cancelling the token given to `router` ends open SSE streams and closes
//! WebSockets with 1001, so that graceful shutdown finishes.

use futures_util::StreamExt;
use petstore_core::PetStore;
use petstore_realtime::RealtimeConfig;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::support::{WAIT, add_pet, expect, next_sse, sse, subscribe, ws};

#[tokio::test]
async fn cancelling_ends_streams_and_lets_graceful_shutdown_finish() {
    let store = PetStore::in_memory();
    let shutdown = CancellationToken::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = petstore_realtime::router(
        store.clone(),
        RealtimeConfig::default(),
        &petstore_http::Edge::new(),
        shutdown.clone(),
    );
    let server = tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .into_future(),
    );

    let mut stream = sse(&format!("http://{addr}/v1/stream/pets"), &[]).await;
    let mut socket = ws(&format!("ws://{addr}/v1/ws")).await;
    subscribe(&mut socket, "pets").await;
    // Both are live: an event reaches both.
    let pet = add_pet(&store, "Before").await;
    assert!(next_sse(&mut stream).await.data.contains(pet.id.as_str()));
    let frame = expect(&mut socket, "event").await;
    assert_eq!(frame["event"]["subject"], pet.id.as_str());

    shutdown.cancel();
    let after = add_pet(&store, "After").await;

    // The SSE response ends: the stream is over, and the later event is not in it.
    let rest = tokio::time::timeout(WAIT, stream.collect::<Vec<_>>())
        .await
        .expect("the SSE stream ends after shutdown");
    assert!(
        !rest
            .iter()
            .any(|m| m.as_ref().is_ok_and(|m| m.data.contains(after.id.as_str()))),
        "{rest:?}"
    );
    // The WebSocket is closed with 1001 (going away).
    let close = loop {
        match tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("a close frame after shutdown")
        {
            Some(Ok(Message::Close(frame))) => break frame.expect("a close code"),
            Some(Ok(Message::Text(text))) => {
                assert!(!text.contains(after.id.as_str()), "{text}");
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(u16::from(close.code), 1001, "{close:?}");
    assert_eq!(close.reason.as_str(), "server shutting down");
    // With the SSE connection gone, graceful shutdown completes.
    tokio::time::timeout(WAIT, server)
        .await
        .expect("graceful shutdown finishes once the streams have ended")
        .unwrap()
        .unwrap();
}
