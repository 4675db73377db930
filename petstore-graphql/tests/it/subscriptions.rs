//! Subscriptions over WebSocket: `graphql-transport-ws` and the legacy `graphql-ws`.
//!
//! Every subscription that must see an event starts from the log head (`since`), so the
//! event cannot slip in before the subscription is registered: no sleeping.

use std::time::Duration;

use petstore_core::{
    MemoryStore, NewOrder, NewPet, PaymentRequest, PetId, PetStatus, PetStore, Principal, Scope,
    ServiceConfig, TokenAuthority,
};
use petstore_graphql::GraphQlConfig;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

use crate::common::{Frame, Server, bearer, codes, start, start_with};

fn system() -> Principal {
    Principal::system("test")
}

pub(crate) fn new_pet(name: &str) -> NewPet {
    NewPet {
        name: name.to_owned(),
        species: "dog".to_owned(),
        breed: None,
        age: None,
        status: None,
        tags: vec![],
        photo_urls: vec![],
        price: petstore_core::Money::parse("10.00", petstore_core::Currency::USD).unwrap(),
    }
}

async fn head(server: &Server) -> String {
    server.store.head().await.unwrap().to_string()
}

async fn available_pet(server: &Server) -> PetId {
    let query = petstore_core::PetQuery::default()
        .status(PetStatus::Available)
        .limit(1);
    server.store.pets(&system(), &query).await.unwrap().data[0]
        .id
        .clone()
}

fn subscribe(id: &str, query: &str, variables: Value) -> Value {
    json!({ "type": "subscribe", "id": id, "payload": { "query": query, "variables": variables } })
}

fn start_legacy(id: &str, query: &str, variables: Value) -> Value {
    json!({ "type": "start", "id": id, "payload": { "query": query, "variables": variables } })
}

const ORDER_CHANGED: &str = "subscription($since: String) {
  orderChanged(since: $since) {
    event { type offset subject }
    order { id status petId total { amount currency } }
    previousStatus
  }
}";

#[tokio::test]
async fn graphql_transport_ws_delivers_an_event_caused_by_a_core_command() {
    let server = start(GraphQlConfig::default()).await;
    let mut ws = server.ws("graphql-transport-ws").await;
    ws.init(bearer(&server.token(&[Scope::OrdersRead]))).await;
    ws.send(subscribe(
        "1",
        ORDER_CHANGED,
        json!({ "since": head(&server).await }),
    ))
    .await;

    // The REST-equivalent command, on the same store, by the subscriber (a customer's
    // order feed carries their own orders).
    let buyer = Principal::new("tester", [Scope::OrdersWrite]);
    let pet = available_pet(&server).await;
    let placed = server
        .store
        .place_order(&buyer, NewOrder::new(pet.clone()), None)
        .await
        .unwrap()
        .order;

    let next = ws.next().await;
    assert_eq!(next["type"], "next", "{next}");
    assert_eq!(next["id"], "1");
    let change = &next["payload"]["data"]["orderChanged"];
    assert_eq!(change["event"]["type"], "order.created");
    assert_eq!(change["event"]["subject"], placed.id.as_str());
    assert_eq!(change["order"]["id"], placed.id.as_str());
    assert_eq!(change["order"]["status"], "PLACED");
    assert_eq!(change["order"]["petId"], pet.as_str());
    assert!(change["previousStatus"].is_null());

    server
        .store
        .pay_order(&buyer, &placed.id, PaymentRequest::default())
        .await
        .unwrap();
    let next = ws.next().await;
    let change = &next["payload"]["data"]["orderChanged"];
    assert_eq!(change["event"]["type"], "order.status_changed");
    assert_eq!(change["order"]["status"], "APPROVED");
    assert_eq!(change["previousStatus"], "PLACED");

    ws.send(json!({ "type": "complete", "id": "1" })).await;
    let done = ws.next().await;
    assert_eq!(done, json!({ "type": "complete", "id": "1" }));
}

#[tokio::test]
async fn legacy_graphql_ws_delivers_events_too() {
    let server = start(GraphQlConfig::default()).await;
    let mut ws = server.ws("graphql-ws").await;
    ws.init(json!({})).await;
    ws.send(start_legacy(
        "a",
        "subscription($since: String) { petChanged(since: $since) { event { type } pet { name status } } }",
        json!({ "since": head(&server).await }),
    ))
    .await;
    server
        .store
        .create_pet(&system(), new_pet("Legacy"))
        .await
        .unwrap();

    let data = ws.next().await;
    assert_eq!(data["type"], "data", "{data}");
    assert_eq!(data["id"], "a");
    assert_eq!(
        data["payload"]["data"]["petChanged"],
        json!({ "event": { "type": "pet.created" }, "pet": { "name": "Legacy", "status": "AVAILABLE" } })
    );

    ws.send(json!({ "type": "stop", "id": "a" })).await;
    assert_eq!(ws.next().await, json!({ "type": "complete", "id": "a" }));
}

#[tokio::test]
async fn since_replays_missed_events_then_follows_live() {
    let server = start(GraphQlConfig::default()).await;
    let since = head(&server).await;
    let first = server
        .store
        .create_pet(&system(), new_pet("Missed 1"))
        .await
        .unwrap();
    let second = server
        .store
        .create_pet(&system(), new_pet("Missed 2"))
        .await
        .unwrap();

    let mut ws = server.ws("graphql-transport-ws").await;
    ws.init(json!({})).await;
    ws.send(subscribe(
        "replay",
        "subscription($since: String) { events(types: [\"pet.created\"], since: $since) { id type subject offset data } }",
        json!({ "since": since }),
    ))
    .await;
    let mut offsets = Vec::new();
    for expected in [&first.id, &second.id] {
        let next = ws.next().await;
        let event = &next["payload"]["data"]["events"];
        assert_eq!(event["subject"], expected.as_str(), "{next}");
        offsets.push(event["offset"].as_str().unwrap().to_owned());
    }
    let live = server
        .store
        .create_pet(&system(), new_pet("Live"))
        .await
        .unwrap();
    let next = ws.next().await;
    let event = &next["payload"]["data"]["events"];
    assert_eq!(event["subject"], live.id.as_str());
    let data: Value = serde_json::from_str(event["data"].as_str().unwrap()).unwrap();
    assert_eq!(data["name"], "Live");
    offsets.push(event["offset"].as_str().unwrap().to_owned());

    let positions: Vec<u64> = offsets
        .iter()
        .map(|o| o.rsplit_once('-').unwrap().1.parse().unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{offsets:?}");

    // Resuming from the first event's offset yields exactly what came after it.
    ws.send(subscribe(
        "resume",
        "subscription($since: String) { events(types: [\"pet.created\"], since: $since) { subject } }",
        json!({ "since": offsets[0] }),
    ))
    .await;
    for expected in [&second.id, &live.id] {
        let next = ws.next().await;
        assert_eq!(next["id"], "resume");
        assert_eq!(
            next["payload"]["data"]["events"]["subject"],
            expected.as_str()
        );
    }
}

#[tokio::test]
async fn typed_subscriptions_follow_one_resource() {
    let server = start(GraphQlConfig::default()).await;
    let watched = server
        .store
        .create_pet(&system(), new_pet("Watched"))
        .await
        .unwrap();
    let other = server
        .store
        .create_pet(&system(), new_pet("Other"))
        .await
        .unwrap();
    let mut ws = server.ws("graphql-transport-ws").await;
    ws.init(json!({})).await;
    ws.send(subscribe(
        "w",
        "subscription($id: ID, $since: String) { petChanged(id: $id, since: $since) { event { type } pet { id status } previousStatus } }",
        json!({ "id": watched.id.as_str(), "since": head(&server).await }),
    ))
    .await;
    server
        .store
        .set_pet_status(&system(), &other.id, PetStatus::Sold)
        .await
        .unwrap();
    server
        .store
        .set_pet_status(&system(), &watched.id, PetStatus::Sold)
        .await
        .unwrap();
    let next = ws.next().await;
    assert_eq!(
        next["payload"]["data"]["petChanged"],
        json!({
            "event": { "type": "pet.status_changed" },
            "pet": { "id": watched.id.as_str(), "status": "SOLD" },
            "previousStatus": "AVAILABLE"
        }),
        "only the watched pet's change arrives"
    );
}

#[tokio::test]
async fn an_unusable_resume_token_is_an_error_not_a_silent_skip() {
    let server = start(GraphQlConfig::default()).await;
    let mut ws = server.ws("graphql-transport-ws").await;
    ws.init(json!({})).await;
    // The same offset in another log epoch.
    let head = server.store.head().await.unwrap();
    let foreign = format!("{:016x}-{}", head.epoch.wrapping_add(1), head.offset);
    ws.send(subscribe(
        "old",
        "subscription($since: String) { events(since: $since) { id } }",
        json!({ "since": foreign }),
    ))
    .await;
    let next = ws.next().await;
    assert_eq!(next["type"], "next", "{next}");
    assert_eq!(
        codes(&next["payload"]["errors"]),
        ["RESUME_EXPIRED"],
        "{next}"
    );
    assert_eq!(ws.next().await, json!({ "type": "complete", "id": "old" }));

    ws.send(subscribe(
        "bad",
        "subscription { events(since: \"yesterday\") { id } }",
        json!({}),
    ))
    .await;
    let next = ws.next().await;
    assert_eq!(
        codes(&next["payload"]["errors"]),
        ["BAD_USER_INPUT"],
        "{next}"
    );
}

#[tokio::test]
async fn connection_init_authenticates_the_connection() {
    // Reads closed: a subscription needs a token.
    let store = PetStore::new(
        MemoryStore::default(),
        TokenAuthority::random(Duration::from_secs(600)),
        ServiceConfig::default().require_auth_for_reads(true),
    );
    let server = start_with(store, GraphQlConfig::default()).await;
    let since = head(&server).await;
    let query = "subscription($since: String) { petChanged(since: $since) { pet { name } } }";

    let mut anonymous = server.ws("graphql-transport-ws").await;
    anonymous.init(json!({})).await;
    anonymous
        .send(subscribe("1", query, json!({ "since": since })))
        .await;
    let next = anonymous.next().await;
    assert_eq!(
        codes(&next["payload"]["errors"]),
        ["UNAUTHENTICATED"],
        "{next}"
    );

    let mut reader = server.ws("graphql-transport-ws").await;
    reader.init(bearer(&server.token(&[Scope::PetsRead]))).await;
    reader
        .send(subscribe("1", query, json!({ "since": since })))
        .await;
    server
        .store
        .create_pet(&system(), new_pet("Private"))
        .await
        .unwrap();
    let next = reader.next().await;
    assert_eq!(
        next["payload"]["data"]["petChanged"]["pet"]["name"], "Private",
        "{next}"
    );

    // The bare-token form, and mutations over the socket with the connection's scopes.
    let mut writer = server.ws("graphql-transport-ws").await;
    writer
        .init(json!({ "token": server.token(&[Scope::PetsWrite, Scope::PetsRead]) }))
        .await;
    writer
        .send(subscribe(
            "m",
            "mutation { createPet(input: {name: \"Socket\", species: \"cat\", price: {amount: \"5\", currency: \"USD\"}}) { name } }",
            json!({}),
        ))
        .await;
    let next = writer.next().await;
    assert_eq!(
        next["payload"]["data"]["createPet"]["name"], "Socket",
        "{next}"
    );
    assert_eq!(
        writer.next().await,
        json!({ "type": "complete", "id": "m" })
    );
    writer
        .send(subscribe("v", "{ viewer { subject scopes } }", json!({})))
        .await;
    let next = writer.next().await;
    assert_eq!(next["payload"]["data"]["viewer"]["subject"], "tester");
}

#[tokio::test]
async fn bad_credentials_are_refused_on_every_path() {
    let server = start(GraphQlConfig::default()).await;
    let forged = TokenAuthority::new(b"not the server's", Duration::from_secs(60))
        .issue("mallory", Scope::ALL)
        .unwrap()
        .access_token;

    let mut ws = server.ws("graphql-transport-ws").await;
    ws.send(json!({ "type": "connection_init", "payload": bearer(&forged) }))
        .await;
    match ws.frame().await {
        Frame::Closed(Some(close)) => {
            assert_eq!(u16::from(close.code), 4403);
            assert!(
                close.reason.as_str().starts_with("UNAUTHENTICATED"),
                "{close:?}"
            );
        }
        other => panic!("expected a 4403 close, got {other:?}"),
    }

    let mut ws = server.ws("graphql-ws").await;
    ws.send(json!({ "type": "connection_init", "payload": bearer(&forged) }))
        .await;
    let error = ws.next().await;
    assert_eq!(error["type"], "connection_error", "{error}");
    assert!(
        error["payload"]["message"]
            .as_str()
            .unwrap()
            .starts_with("UNAUTHENTICATED")
    );

    // A bad Authorization header on the upgrade request: 401 at the handshake.
    let mut request = format!("ws://{}/graphql", server.addr)
        .into_client_request()
        .unwrap();
    let headers = request.headers_mut();
    headers.insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    headers.insert("authorization", format!("Bearer {forged}").parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("expected 401, got {:?}", other.map(|(_, r)| r.status())),
    }

    // Operations before connection_init close the socket (graphql-transport-ws: 4401).
    let mut ws = server.ws("graphql-transport-ws").await;
    ws.send(subscribe("1", "{ viewer { subject } }", json!({})))
        .await;
    match ws.frame().await {
        Frame::Closed(Some(close)) => assert_eq!(u16::from(close.code), 4401),
        other => panic!("expected a 4401 close, got {other:?}"),
    }
}

#[tokio::test]
async fn limits_apply_to_websocket_operations() {
    let server = start(
        GraphQlConfig::default()
            .max_subscriptions_per_connection(1)
            .max_depth(3),
    )
    .await;
    let mut ws = server.ws("graphql-transport-ws").await;
    ws.init(json!({})).await;
    ws.send(subscribe(
        "deep",
        "subscription { orderChanged { order { total { amount } } } }",
        json!({}),
    ))
    .await;
    let error = ws.next().await;
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["id"], "deep");
    assert_eq!(codes(&error["payload"]), ["QUERY_TOO_DEEP"]);

    ws.send(subscribe(
        "one",
        "subscription { events { id } }",
        json!({}),
    ))
    .await;
    ws.send(subscribe(
        "two",
        "subscription { events { id } }",
        json!({}),
    ))
    .await;
    let error = ws.next().await;
    assert_eq!(error["id"], "two", "{error}");
    assert_eq!(codes(&error["payload"]), ["TOO_MANY_SUBSCRIPTIONS"]);

    // Completing the first frees its slot.
    ws.send(json!({ "type": "complete", "id": "one" })).await;
    assert_eq!(ws.next().await, json!({ "type": "complete", "id": "one" }));
    ws.send(subscribe(
        "three",
        "subscription($since: String) { events(since: $since) { type } }",
        json!({ "since": head(&server).await }),
    ))
    .await;
    server
        .store
        .create_pet(&system(), new_pet("Third"))
        .await
        .unwrap();
    let next = ws.next().await;
    assert_eq!(next["id"], "three", "{next}");
    assert_eq!(next["payload"]["data"]["events"]["type"], "pet.created");

    // The legacy protocol gets the same refusals (error, then complete).
    let mut legacy = server.ws("graphql-ws").await;
    legacy.init(json!({})).await;
    legacy
        .send(start_legacy(
            "deep",
            "subscription { orderChanged { order { total { amount } } } }",
            json!({}),
        ))
        .await;
    let error = legacy.next().await;
    assert_eq!(codes(&error["payload"]), ["QUERY_TOO_DEEP"], "{error}");
    assert_eq!(
        legacy.next().await,
        json!({ "type": "complete", "id": "deep" })
    );

    // Operations sent right behind connection_init, before the ack arrives, are
    // screened too.
    let mut eager = server.ws("graphql-transport-ws").await;
    eager.send(json!({ "type": "connection_init" })).await;
    eager
        .send(subscribe(
            "eager",
            "subscription { orderChanged { order { total { amount } } } }",
            json!({}),
        ))
        .await;
    assert_eq!(eager.next().await["type"], "connection_ack");
    let error = eager.next().await;
    assert_eq!(codes(&error["payload"]), ["QUERY_TOO_DEEP"], "{error}");

    // A broken document gets a coded error too.
    legacy
        .send(start_legacy(
            "v",
            "subscription { nothing { id } }",
            json!({}),
        ))
        .await;
    let error = legacy.next().await;
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(codes(&error["payload"]), ["GRAPHQL_VALIDATION_FAILED"]);
}

#[tokio::test]
async fn a_socket_that_never_initialises_is_closed() {
    let server =
        start(GraphQlConfig::default().connection_init_timeout(Duration::from_millis(200))).await;
    let mut ws = server.ws("graphql-transport-ws").await;
    match ws.frame().await {
        Frame::Closed(Some(close)) => assert_eq!(u16::from(close.code), 4408),
        other => panic!("expected a 4408 close, got {other:?}"),
    }
    // An initialised one stays open past the timeout.
    let mut ws = server.ws("graphql-transport-ws").await;
    ws.init(json!({})).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    ws.send(subscribe("q", "{ viewer { authenticated } }", json!({})))
        .await;
    let next = ws.next().await;
    assert_eq!(next["payload"]["data"]["viewer"]["authenticated"], false);
}
