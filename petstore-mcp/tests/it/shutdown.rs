//! Shutdown: cancelling the token given to `router` ends MCP sessions (their open
//! streams) and `subscriptions/listen` streams, so that graceful shutdown finishes.

use futures_util::StreamExt as _;
use petstore_http::Edge;
use petstore_mcp::McpConfig;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use rmcp::model::SubscriptionFilter;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::http::initialize;
use crate::support::{Http, Protocol, http_client, store, within};

/// A 2025-11-25 session opened by hand, with its standalone SSE stream (GET) open.
async fn session_stream(http: &Http) -> reqwest::Response {
    let client = reqwest::Client::new();
    let post = |body: serde_json::Value, session: Option<&str>| {
        let mut request = client
            .post(http.url())
            .header(ACCEPT, "application/json, text/event-stream")
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_string());
        if let Some(session) = session {
            request = request.header("mcp-session-id", session);
        }
        request.send()
    };
    let initialized = initialize(http).send().await.unwrap();
    assert_eq!(initialized.status(), StatusCode::OK);
    let session = initialized.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    initialized.text().await.unwrap();
    let ack = post(
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        Some(&session),
    )
    .await
    .unwrap();
    assert_eq!(ack.status(), StatusCode::ACCEPTED);
    let stream = client
        .get(http.url())
        .header(ACCEPT, "text/event-stream")
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    stream
}

#[tokio::test]
async fn cancelling_ends_sessions_and_listen_streams_and_lets_graceful_shutdown_finish() {
    let store = store().await;
    let shutdown = CancellationToken::new();
    let http = Http::start_full(&store, McpConfig::default(), &Edge::new(), shutdown.clone()).await;

    let session = session_stream(&http).await;
    let (client, _) = http_client(&http.url(), Protocol::Current, None).await;
    let filter = SubscriptionFilter::builder()
        .resources_list_changed()
        .build();
    let mut listening = within(client.listen(filter)).await.unwrap();

    shutdown.cancel();
    // The session's stream ends...
    let mut body = session.bytes_stream();
    within(async { while let Some(Ok(_)) = body.next().await {} }).await;
    // ...so does the listen stream...
    let next = within(listening.next()).await;
    assert!(
        !matches!(next, Ok(Some(_))),
        "the listen stream ends at shutdown: {next:?}"
    );
    // ...and with every stream gone, graceful shutdown completes.
    http.stopped().await;
}
