//! Slow consumers: cut off with a reason, without holding up fast ones, and able to
//! resume from their last offset without loss.
//!
//! The slow clients use tiny TCP buffers (and the server a tiny send buffer) and do
//! not read while events are written, so their connections back up at once.

use bytes::Bytes;
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use petstore_core::{Channel, Event, EventFilter, LogConfig, ResumeToken};
use petstore_realtime::RealtimeConfig;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::support::*;

const BATCHES: usize = 150;
const BATCH: usize = 4;

/// A server whose log cuts off subscribers 32 events behind.
fn server() -> Server {
    let store = store_with(LogConfig::default().subscriber_buffer(32));
    serve_on(
        small_buffer_listener(),
        store,
        RealtimeConfig::default().outbound_queue(4),
    )
}

/// Writes `BATCHES` batches of pet events; after each, waits until the fast client
/// got it (so the fast client never falls behind, while the slow one never reads).
async fn write_events(
    store: &petstore_core::PetStore,
    mut fast_next: impl AsyncFnMut() -> Event,
) -> Vec<Event> {
    let start = store.head().await.unwrap();
    let mut fast_seen = Vec::new();
    for batch in 0..BATCHES {
        for i in 0..BATCH {
            add_pet(
                store,
                &format!("Pet {batch}-{i} with a name of some length"),
            )
            .await;
        }
        while fast_seen.len() < (batch + 1) * BATCH {
            fast_seen.push(fast_next().await);
        }
    }
    let all = log_after(store, start, EventFilter::channels([Channel::Pets])).await;
    assert_eq!(all.len(), BATCHES * BATCH);
    assert_eq!(fast_seen, all, "the fast client got every event, in order");
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_websocket_client_is_cut_off_while_a_fast_one_gets_everything() {
    let server = server();
    let url = server.ws_url("/v1/ws");
    let mut fast = ws(&url).await;
    subscribe(&mut fast, "pets").await;
    let (mut slow, _) = tokio_tungstenite::client_async(
        url.as_str(),
        tokio_tungstenite::MaybeTlsStream::Plain(small_buffer_connection(server.addr).await),
    )
    .await
    .unwrap();
    subscribe(&mut slow, "pets").await;

    let all = write_events(&server.store, async || {
        event_of(&expect(&mut fast, "event").await)
    })
    .await;

    // Now the slow client reads: what was in flight, then a close with a reason.
    let (frames, close) = until_close(&mut slow).await;
    let got: Vec<Event> = frames.iter().map(event_of).collect();
    assert_eq!(close.code, CloseCode::Again, "1013: {close:?}");
    let token: ResumeToken = close
        .reason
        .as_str()
        .strip_prefix("slow consumer; resume from ")
        .unwrap_or_else(|| panic!("reason: {close:?}"))
        .parse()
        .unwrap();
    assert!(
        got.len() < all.len() / 2,
        "cut off early: got {}",
        got.len()
    );
    assert_eq!(
        got[..],
        all[..got.len()],
        "what it got is a gap-free prefix"
    );
    // Everything up to the token was delivered.
    assert!(got.iter().any(|e| e.offset() == token) || got.is_empty());

    // It resumes from the token and misses nothing.
    let mut again = ws(&url).await;
    send(
        &mut again,
        json!({"type": "subscribe", "channel": "pets", "since": token}),
    )
    .await;
    assert_eq!(expect(&mut again, "subscribed").await["recovered"], true);
    let rest_start = all
        .iter()
        .position(|e| e.offset() == token)
        .map_or(0, |i| i + 1);
    for want in &all[rest_start..] {
        assert_eq!(&event_of(&expect(&mut again, "event").await), want);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_sse_client_is_cut_off_while_a_fast_one_gets_everything() {
    let server = server();
    let url = server.http("/v1/stream/pets");
    let mut fast = sse(&url, &[]).await;

    // A raw HTTP/1.0 client (the body is then plain SSE until the server closes).
    let mut slow = small_buffer_connection(server.addr).await;
    slow.write_all(b"GET /v1/stream/pets HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 1024];
    while !received.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, slow.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "response head");
        received.extend_from_slice(&buf[..n]);
    }
    assert!(received.starts_with(b"HTTP/1.0 200") || received.starts_with(b"HTTP/1.1 200"));

    let all = write_events(&server.store, async || envelope(&next_sse(&mut fast).await)).await;

    // Now the slow client reads to the end: events, then the error, then EOF.
    tokio::time::timeout(WAIT, slow.read_to_end(&mut received))
        .await
        .expect("the server ends the slow stream")
        .unwrap();
    let split = received.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let body = Bytes::copy_from_slice(&received[split..]);
    let messages: Vec<_> = futures_util::stream::iter([Ok::<_, std::convert::Infallible>(body)])
        .eventsource()
        .map(|m| m.unwrap())
        .collect()
        .await;
    let (last, events) = messages.split_last().unwrap();
    let got: Vec<Event> = events.iter().map(envelope).collect();
    // The error is a message too (no `event:` line): `onmessage` sees it.
    assert_eq!(last.event, "message");
    let data: Value = serde_json::from_str(&last.data).unwrap();
    assert_eq!(data["type"], "error");
    assert_eq!(data["code"], "lagged");
    assert!(
        got.len() < all.len() / 2,
        "cut off early: got {}",
        got.len()
    );
    assert_eq!(
        got[..],
        all[..got.len()],
        "what it got is a gap-free prefix"
    );
    let resume_from = data["resume_from"].as_str().unwrap();
    assert_eq!(
        resume_from,
        got.last().map_or(String::new(), |e| e.offset().to_string()),
        "resume from the last event delivered"
    );

    // Resuming with Last-Event-ID delivers exactly the rest.
    let mut again = sse(&url, &[("last-event-id", resume_from)]).await;
    for want in &all[got.len()..] {
        assert_eq!(&envelope(&next_sse(&mut again).await), want);
    }
}
