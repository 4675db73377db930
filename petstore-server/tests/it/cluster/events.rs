//! A write on either of two instances is the same event on every push channel of both
//! (WebSocket, GraphQL subscriptions over graphql-transport-ws, gRPC `WatchPets`) and in
//! MCP (a session's resource notification, and `recent_events`), each with the id and
//! offset that polling shows. SSE and polling: `two_instances_on_one_postgres_are_one_store`.

use petstore_grpc::pb;
use petstore_grpc::pb::pet_service_client::PetServiceClient;
use rmcp::model::{CallToolRequestParams, SubscribeRequestParams};
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedReceiver;

use super::create_pet;
use crate::support::mcp::{self, Notice, Session};
use crate::support::process::{Instance, events_page, new_postgres_database, postgres_cluster};
use crate::support::{grpc, within, ws};

/// What identifies an event across channels: its id, offset, type and subject.
fn key(envelope: &Value) -> [Value; 4] {
    ["id", "offset", "type", "subject"].map(|k| envelope[k].clone())
}

/// Every event channel of one instance, each following `pet.created` from one position.
struct Feeds {
    on: String,
    ws: ws::Ws,
    graphql: ws::Ws,
    grpc: tonic::Streaming<pb::Event>,
    mcp: Session,
    notices: UnboundedReceiver<Notice>,
}

impl Feeds {
    /// Opens every channel of `instance` after `since` (a resume token): live before
    /// this returns (WebSocket `subscribed`, the gRPC response headers, the MCP
    /// subscription answered); the GraphQL subscription replays from `since` whenever
    /// the server reads its `subscribe`.
    async fn open(name: &str, instance: &Instance, since: &str, watched_pet: &str) -> Self {
        let base = &instance.url;
        let token = &instance.token;

        let mut socket = ws::open(&ws::url(base, &format!("/v1/ws?token={token}"))).await;
        let subscribe = json!({ "type": "subscribe", "channel": "pets", "since": since });
        ws::send(&mut socket, &subscribe).await;
        let subscribed = ws::next_json(&mut socket, |f| f["type"] != "pong").await;
        assert_eq!(
            (&subscribed["type"], &subscribed["position"]),
            (&json!("subscribed"), &json!(since)),
            "{name}: {subscribed}"
        );

        let graphql = ws::graphql(&ws::url(base, "/graphql"), "graphql-transport-ws").await;
        let mut graphql = graphql.unwrap_or_else(|e| panic!("{name}: GraphQL WebSocket: {e}"));
        let init = json!({
            "type": "connection_init",
            "payload": { "authorization": format!("Bearer {token}") },
        });
        ws::send(&mut graphql, &init).await;
        let ack = ws::next_json(&mut graphql, operation).await;
        assert_eq!(ack["type"], "connection_ack", "{name}: {ack}");
        let query = "subscription($since: String) { \
                     events(types: [\"pet.created\"], since: $since) { id type subject offset } }";
        let payload = json!({ "query": query, "variables": { "since": since } });
        let subscribe = json!({ "type": "subscribe", "id": "1", "payload": payload });
        ws::send(&mut graphql, &subscribe).await;

        let channel = grpc::connect(instance.grpc.clone()).await;
        let request = pb::WatchPetsRequest {
            since: Some(since.to_owned()),
            pet_id: None,
            types: vec!["pet.created".into()],
        };
        let mut pets = PetServiceClient::new(channel);
        let watch = pets.watch_pets(grpc::bearer(request, Some(token)));
        let grpc = within("WatchPets", watch)
            .await
            .unwrap_or_else(|e| panic!("{name}: WatchPets: {e:?}"))
            .into_inner();

        let (mcp, notices) = mcp::session(base, token).await;
        let uri = format!("petstore://pets/{watched_pet}");
        #[allow(deprecated)] // `resources/subscribe` is the 2025-11-25 session's way
        within(
            "MCP resources/subscribe",
            mcp.subscribe(SubscribeRequestParams::new(uri)),
        )
        .await
        .unwrap_or_else(|e| panic!("{name}: resources/subscribe: {e}"));

        Self {
            on: name.to_owned(),
            ws: socket,
            graphql,
            grpc,
            mcp,
            notices,
        }
    }

    /// The next `pet.created` on every channel, checked against `truth` (the event as
    /// polling shows it): the same id, offset, type and subject everywhere, a list
    /// change on the MCP session, and `truth` as MCP `recent_events` has it.
    async fn expect(&mut self, truth: &Value) {
        let on = &self.on;
        let frame = ws::next_json(&mut self.ws, |f| f["type"] == "event").await;
        assert_eq!(frame["channel"], "pets", "{on}: {frame}");
        assert_eq!(key(&frame["event"]), key(truth), "{on}: WebSocket");

        let frame = ws::next_json(&mut self.graphql, operation).await;
        assert_eq!(frame["type"], "next", "{on}: {frame}");
        let event = &frame["payload"]["data"]["events"];
        assert_eq!(key(event), key(truth), "{on}: GraphQL subscription");

        let event = within("a WatchPets event", self.grpc.message())
            .await
            .unwrap_or_else(|e| panic!("{on}: WatchPets: {e:?}"))
            .expect("the watch stays open");
        let event = json!({
            "id": event.id, "offset": event.offset, "type": event.r#type, "subject": event.subject,
        });
        assert_eq!(key(&event), key(truth), "{on}: gRPC WatchPets");

        let notice = within("an MCP notification", self.notices.recv()).await;
        assert_eq!(notice, Some(Notice::ListChanged), "{on}: MCP");
        let before: petstore_core::ResumeToken = truth["offset"].as_str().unwrap().parse().unwrap();
        let since = petstore_core::ResumeToken::new(before.epoch, before.offset - 1);
        let arguments = json!({ "since": since.to_string(), "types": ["pet.created"] });
        let Value::Object(arguments) = arguments else {
            unreachable!()
        };
        let call = CallToolRequestParams::new("recent_events").with_arguments(arguments);
        let result = within("MCP recent_events", self.mcp.call_tool(call))
            .await
            .unwrap_or_else(|e| panic!("{on}: recent_events: {e}"));
        assert_ne!(result.is_error, Some(true), "{on}: {:?}", result.content);
        let recent = result.structured_content.expect("structured content");
        assert_eq!(
            key(&recent["events"][0]),
            key(truth),
            "{on}: MCP recent_events"
        );
    }

    async fn close(self) {
        let _ = self.mcp.cancel().await;
    }
}

/// A graphql-transport-ws frame other than a keep-alive.
fn operation(frame: &Value) -> bool {
    !matches!(frame["type"].as_str(), Some("ping" | "pong"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_on_either_instance_is_the_same_event_on_every_channel_of_both() {
    let Some(cluster) = postgres_cluster() else {
        return;
    };
    let url = new_postgres_database(&cluster).await;
    let client = reqwest::Client::new();
    let a = Instance::start(&url).await;
    let b = Instance::start(&url).await;
    let watched = create_pet(&client, &a, "Watched").await;
    let (_, since) = events_page(&client, &a, None).await;

    let mut feeds = vec![
        Feeds::open("A", &a, &since, &watched).await,
        Feeds::open("B", &b, &since, &watched).await,
    ];
    let mut cursor = since;
    for (writer, name) in [(&a, "From A"), (&b, "From B")] {
        let pet = create_pet(&client, writer, name).await;
        // The truth, polled from the other instance: one event since the last.
        let reader = if std::ptr::eq(writer, &a) { &b } else { &a };
        let (events, next) = events_page(&client, reader, Some(&cursor)).await;
        assert_eq!(events.len(), 1, "one event for {name}: {events:?}");
        let truth = &events[0];
        assert_eq!(
            (&truth["type"], &truth["subject"]),
            (&json!("pet.created"), &json!(pet))
        );
        for feed in &mut feeds {
            feed.expect(truth).await;
        }
        cursor = next;
    }
    for feed in feeds {
        feed.close().await;
    }
    a.kill().await;
    b.kill().await;
}
