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

/// The webhooks management API and the outbound deliveries are in the OpenAPI document
/// (issue 19): every route of the webhooks router, with its operation, and one entry of
/// the `webhooks` section per event type the server delivers.
#[test]
fn the_openapi_document_has_the_webhook_routes_and_deliveries() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
    let document: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("openapi.json")).expect("JSON");
    let routes = [
        ("/v1/webhooks", &["get", "post"][..]),
        ("/v1/webhooks/event-types", &["get"]),
        ("/v1/webhooks/{id}", &["get", "patch", "delete"]),
        ("/v1/webhooks/{id}/secret", &["get"]),
        ("/v1/webhooks/{id}/rotate-secret", &["post"]),
        ("/v1/webhooks/{id}/messages", &["get"]),
        (
            "/v1/webhooks/{id}/messages/{message_id}/redeliver",
            &["post"],
        ),
        ("/v1/webhooks/{id}/attempts", &["get"]),
        ("/v1/webhooks/{id}/replay", &["post"]),
        ("/v1/webhooks/{id}/test", &["post"]),
        ("/v1/payments/webhook", &["post"]),
    ];
    for (route, methods) in routes {
        for method in methods {
            let op = &document["paths"][route][method];
            assert!(
                op["operationId"].is_string(),
                "{method} {route} is not documented"
            );
            assert!(op["responses"]["default"].is_object(), "{method} {route}");
        }
    }
    let create = &document["paths"]["/v1/webhooks"]["post"];
    assert_eq!(create["security"][0]["bearerAuth"][0], "admin");
    assert_eq!(
        create["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/NewWebhookEndpoint"
    );
    let deliveries = document["webhooks"]
        .as_object()
        .expect("a webhooks section");
    let mut expected: Vec<&str> = petstore_core::EventType::ALL
        .iter()
        .map(|t| t.as_str())
        .chain(["webhook.test"])
        .collect();
    expected.sort_unstable();
    let mut documented: Vec<&str> = deliveries.keys().map(String::as_str).collect();
    documented.sort_unstable();
    assert_eq!(documented, expected);
    for (name, item) in deliveries {
        let post = &item["post"];
        let names: Vec<&str> = post["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        for header in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
            assert!(names.contains(&header), "{name} lacks {header}");
        }
        assert!(
            post["requestBody"]["content"]["application/json"]["schema"].is_object(),
            "{name}"
        );
    }
}
