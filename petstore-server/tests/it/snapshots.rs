//! The checked-in API documents are what the server serves: `openapi.json` and
//! `asyncapi.json` at the crate root, as `GET /openapi.json` and `GET /asyncapi.json` of
//! a server with its default settings answer them. A change to the wire shows up as a
//! diff of these files in review.
//!
//! `UPDATE_OPENAPI=1` / `UPDATE_ASYNCAPI=1` rewrite them (never in CI, which refuses
//! the switches).

use std::path::Path;

use serde_json::Value;

use crate::support::{start, within};

/// The document at `route`, pretty-printed as checked in (with a final newline).
async fn served(base: &str, route: &str) -> String {
    let response = within(route, reqwest::get(format!("{base}{route}")))
        .await
        .unwrap_or_else(|e| panic!("GET {route}: {e}"));
    assert_eq!(response.status(), 200, "GET {route}");
    let document: Value = response.json().await.expect("a JSON document");
    let mut text = serde_json::to_string_pretty(&document).expect("JSON");
    text.push('\n');
    text
}

/// Compares `file` with the live document; rewrites it when `switch` is set.
fn check(file: &str, live: &str, switch: &str) -> Result<(), String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    if std::env::var_os(switch).is_some() {
        std::fs::write(&path, live).unwrap_or_else(|e| panic!("write {file}: {e}"));
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    if checked_in == live {
        return Ok(());
    }
    let first = checked_in
        .lines()
        .zip(live.lines())
        .position(|(a, b)| a != b)
        .unwrap_or_else(|| checked_in.lines().count().min(live.lines().count()));
    Err(format!(
        "{file} is stale (first difference at line {}): run `{switch}=1 cargo test -p \
         petstore-server --test it snapshots` and review the diff",
        first + 1
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checked_in_documents_match_the_served_ones() {
    let s = start().await;
    let base = s.http_url();
    let openapi = served(&base, "/openapi.json").await;
    let asyncapi = served(&base, "/asyncapi.json").await;
    s.shutdown().await.unwrap();
    let stale: Vec<String> = [
        check("openapi.json", &openapi, "UPDATE_OPENAPI"),
        check("asyncapi.json", &asyncapi, "UPDATE_ASYNCAPI"),
    ]
    .into_iter()
    .filter_map(Result::err)
    .collect();
    assert!(stale.is_empty(), "{}", stale.join("\n"));
}

/// The AsyncAPI document's WebSocket messages are the frames' derived schemas: one
/// message per frame `type`, each requiring its `type` constant, and the `chat.send`
/// text carries the core's length rule.
#[test]
fn websocket_messages_come_from_the_frame_types() {
    let document = petstore_server::asyncapi::document();
    let messages = document["components"]["messages"]
        .as_object()
        .expect("messages");
    let frames = petstore_realtime::frame_schemas();
    let kinds: Vec<&str> = frames
        .client
        .iter()
        .chain(&frames.server)
        .map(|(kind, _)| kind.as_str())
        .collect();
    assert_eq!(
        kinds,
        [
            "auth",
            "subscribe",
            "unsubscribe",
            "chat.send",
            "ping",
            "authenticated",
            "subscribed",
            "unsubscribed",
            "event",
            "chat.message",
            "chat.sent",
            "error",
            "pong"
        ]
    );
    for (kind, name) in [
        ("auth", "WsAuth"),
        ("chat.send", "WsChatSend"),
        ("chat.message", "WsChatMessage"),
        ("error", "WsError"),
    ] {
        let payload = &messages[name]["payload"];
        assert_eq!(payload["properties"]["type"]["const"], kind, "{name}");
        assert!(
            payload["required"]
                .as_array()
                .is_some_and(|r| r.contains(&Value::from("type"))),
            "{name}: {payload}"
        );
    }
    let text = &messages["WsChatSend"]["payload"]["properties"]["text"];
    assert_eq!(
        text["maxLength"],
        petstore_core::NewChatMessage::TEXT_MAX,
        "{text}"
    );
    // Every reference resolves inside the document.
    let text = document.to_string();
    for reference in text.split("\"$ref\":\"").skip(1) {
        let target = reference.split('"').next().unwrap_or_default();
        let pointer = target.trim_start_matches('#');
        assert!(
            document.pointer(pointer).is_some(),
            "unresolved reference {target}"
        );
    }
}
