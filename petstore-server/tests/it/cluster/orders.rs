//! The order/pet state machine and idempotency keys hold across two instances on one
//! PostgreSQL: concurrent orders for one pet, spread over both instances and every
//! command protocol, place exactly one (the others get their protocol's conflict);
//! an `Idempotency-Key` sent to one instance and then the other (or to both at once)
//! returns one order and creates one.

use petstore_grpc::pb;
use petstore_grpc::pb::store_service_client::StoreServiceClient;
use reqwest::StatusCode;
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};

use super::create_pet;
use crate::support::mcp::{self, Mcp};
use crate::support::process::{
    Instance, all_events_after, events_page, new_postgres_database, postgres_cluster,
};
use crate::support::{grpc, within};

/// The command protocols.
#[derive(Debug, Clone, Copy)]
enum Api {
    Rest,
    GraphQl,
    Grpc,
    Mcp,
}

/// How one order request ended, read in its protocol's own terms.
#[derive(Debug)]
enum Placed {
    /// The order's id.
    Order(String),
    /// The protocol's conflict answer.
    Conflict,
}

/// One instance's clients.
#[derive(Clone)]
struct Clients {
    name: &'static str,
    base: String,
    token: String,
    http: reqwest::Client,
    grpc: tonic::transport::Channel,
    mcp: std::sync::Arc<Mcp>,
}

impl Clients {
    async fn connect(name: &'static str, instance: &Instance) -> Self {
        let mcp = mcp::connect(&instance.url, Some(&instance.token)).await;
        Self {
            name,
            base: instance.url.clone(),
            token: instance.token.clone(),
            http: reqwest::Client::new(),
            grpc: grpc::connect(instance.grpc.clone()).await,
            mcp: std::sync::Arc::new(mcp.unwrap_or_else(|e| panic!("{name}: MCP: {e}"))),
        }
    }

    /// Orders one of pet `pet` through `api`.
    async fn place_order(&self, api: Api, pet: &str) -> Placed {
        let on = self.name;
        match api {
            Api::Rest => {
                let response = self
                    .http
                    .post(format!("{}/v1/orders", self.base))
                    .bearer_auth(&self.token)
                    .json(&json!({ "pet_id": pet, "quantity": 1 }))
                    .send();
                let response = within("REST POST /v1/orders", response).await.unwrap();
                let status = response.status();
                let kind = response.headers().get("content-type").cloned();
                let body: Value = response.json().await.expect("a JSON body");
                match status {
                    StatusCode::CREATED => Placed::Order(body["id"].as_str().unwrap().to_owned()),
                    StatusCode::CONFLICT => {
                        let kind = kind.expect("a content type");
                        assert_eq!(kind, "application/problem+json", "{on}: {body}");
                        assert_eq!(body["code"], "conflict", "{on}: {body}");
                        Placed::Conflict
                    }
                    other => panic!("{on}: REST order answered {other}: {body}"),
                }
            }
            Api::GraphQl => {
                let query =
                    "mutation($petId: ID!) { placeOrder(petId: $petId) { replayed order { id } } }";
                let response = self
                    .http
                    .post(format!("{}/graphql", self.base))
                    .bearer_auth(&self.token)
                    .json(&json!({ "query": query, "variables": { "petId": pet } }))
                    .send();
                let response = within("GraphQL placeOrder", response).await.unwrap();
                let body: Value = response.json().await.expect("GraphQL answers JSON");
                if let Some(errors) = body.get("errors") {
                    let code = &errors[0]["extensions"]["code"];
                    assert_eq!(code, "CONFLICT", "{on}: GraphQL placeOrder: {body}");
                    return Placed::Conflict;
                }
                let placed = &body["data"]["placeOrder"];
                assert_eq!(placed["replayed"], false, "{on}: {body}");
                Placed::Order(placed["order"]["id"].as_str().unwrap().to_owned())
            }
            Api::Grpc => {
                let request = pb::PlaceOrderRequest {
                    pet_id: pet.to_owned(),
                    quantity: Some(1),
                };
                let request = grpc::bearer(request, Some(&self.token));
                let mut store = StoreServiceClient::new(self.grpc.clone());
                let call = store.place_order(request);
                match within("gRPC PlaceOrder", call).await {
                    Ok(order) => Placed::Order(order.into_inner().id),
                    Err(status) => {
                        use tonic_types::StatusExt as _;
                        assert_eq!(
                            status.code(),
                            tonic::Code::FailedPrecondition,
                            "{on}: gRPC PlaceOrder: {status:?}"
                        );
                        let info = status.get_details_error_info();
                        let reason = info.map(|i| i.reason).unwrap_or_default();
                        assert_eq!(reason, "CONFLICT", "{on}: {status:?}");
                        Placed::Conflict
                    }
                }
            }
            Api::Mcp => {
                let Value::Object(arguments) = json!({ "pet_id": pet }) else {
                    unreachable!()
                };
                let call = CallToolRequestParams::new("place_order").with_arguments(arguments);
                let result = within("MCP place_order", self.mcp.call_tool(call))
                    .await
                    .unwrap_or_else(|e| panic!("{on}: MCP place_order: {e}"));
                if result.is_error == Some(true) {
                    let text: Vec<&str> = result
                        .content
                        .iter()
                        .filter_map(|c| c.as_text())
                        .map(|t| t.text.as_str())
                        .collect();
                    let text = text.join("\n");
                    assert!(
                        text.starts_with("conflict:"),
                        "{on}: MCP place_order: {text}"
                    );
                    return Placed::Conflict;
                }
                let placed = result.structured_content.expect("structured content");
                assert_eq!(placed["replayed"], false, "{on}: {placed}");
                Placed::Order(placed["order"]["id"].as_str().unwrap().to_owned())
            }
        }
    }

    /// `POST /v1/orders` for `pet` with `Idempotency-Key: key`: the status, the body,
    /// and whether `Idempotent-Replayed: true` came with it.
    async fn order_once(&self, pet: &str, key: &str) -> (StatusCode, Value, bool) {
        let response = self
            .http
            .post(format!("{}/v1/orders", self.base))
            .bearer_auth(&self.token)
            .header("idempotency-key", key)
            .json(&json!({ "pet_id": pet, "quantity": 1 }))
            .send();
        let response = within("REST POST /v1/orders", response).await.unwrap();
        let status = response.status();
        let replayed = response
            .headers()
            .get("idempotent-replayed")
            .is_some_and(|v| v == "true");
        (
            status,
            response.json().await.expect("a JSON body"),
            replayed,
        )
    }
}

/// The subjects of the `order.created` events after `since`, polled from `on`, whose
/// order is for `pet`.
async fn orders_created(
    client: &reqwest::Client,
    on: &Instance,
    since: &str,
    pet: &str,
) -> Vec<String> {
    all_events_after(client, on, since)
        .await
        .into_iter()
        .filter(|e| e["type"] == "order.created" && e["data"]["pet_id"] == pet)
        .map(|e| e["subject"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orders_and_idempotency_keys_hold_across_instances() {
    let Some(cluster) = postgres_cluster() else {
        return;
    };
    let url = new_postgres_database(&cluster).await;
    let client = reqwest::Client::new();
    let a = Instance::start(&url).await;
    let b = Instance::start(&url).await;
    let both = [
        Clients::connect("A", &a).await,
        Clients::connect("B", &b).await,
    ];
    let (_, since) = events_page(&client, &a, None).await;

    // One pet, 16 concurrent orders: each instance, each protocol, twice.
    let contested = create_pet(&client, &a, "Contested").await;
    let apis = [Api::Rest, Api::GraphQl, Api::Grpc, Api::Mcp];
    let orders: Vec<_> = (0..16)
        .map(|i| {
            let (clients, api) = (both[i % 2].clone(), apis[(i / 2) % 4]);
            let pet = contested.clone();
            tokio::spawn(async move { (clients.name, api, clients.place_order(api, &pet).await) })
        })
        .collect();
    let mut placed = Vec::new();
    for order in orders {
        let (on, api, outcome) = order.await.expect("the request task");
        if let Placed::Order(id) = outcome {
            placed.push((on, api, id));
        }
    }
    assert_eq!(placed.len(), 1, "exactly one order for the pet: {placed:?}");
    let order_id = &placed[0].2;
    assert_eq!(
        orders_created(&client, &b, &since, &contested).await,
        [order_id.as_str()],
        "one order.created for the pet"
    );
    for on in [&a, &b] {
        let pet: Value = client
            .get(format!("{}/v1/pets/{contested}", on.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(pet["status"], "pending", "{pet}");
    }

    // One key, to A and then to B: one order, the second a replay of the first.
    let pet = create_pet(&client, &a, "Keyed").await;
    let key = uuid::Uuid::new_v4().to_string();
    let (status, first, replayed) = both[0].order_once(&pet, &key).await;
    assert_eq!((status, replayed), (StatusCode::CREATED, false), "{first}");
    let (status, second, replayed) = both[1].order_once(&pet, &key).await;
    assert_eq!((status, replayed), (StatusCode::CREATED, true), "{second}");
    assert_eq!(second, first, "B replays A's order");
    // The same key for another request is refused on either instance, changing nothing.
    let other = create_pet(&client, &b, "Other").await;
    for clients in &both {
        let (status, problem, _) = clients.order_once(&other, &key).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    }
    let created = orders_created(&client, &a, &since, &pet).await;
    assert_eq!(
        created,
        [first["id"].as_str().unwrap()],
        "one order for the key"
    );
    assert!(orders_created(&client, &a, &since, &other).await.is_empty());

    // One key sent to both at once, four times each: one order, every answer it.
    let pet = create_pet(&client, &b, "Raced").await;
    let key = uuid::Uuid::new_v4().to_string();
    let racers: Vec<_> = (0..8)
        .map(|i| {
            let (clients, pet, key) = (both[i % 2].clone(), pet.clone(), key.clone());
            tokio::spawn(async move { clients.order_once(&pet, &key).await })
        })
        .collect();
    let mut fresh = 0;
    let mut ids = std::collections::BTreeSet::new();
    for racer in racers {
        let (status, order, replayed) = racer.await.expect("the request task");
        assert_eq!(status, StatusCode::CREATED, "{order}");
        ids.insert(order["id"].as_str().unwrap().to_owned());
        fresh += usize::from(!replayed);
    }
    assert_eq!(ids.len(), 1, "every answer is the same order: {ids:?}");
    assert_eq!(fresh, 1, "one answer placed it, the others replayed it");
    let created = orders_created(&client, &b, &since, &pet).await;
    assert_eq!(
        created,
        ids.into_iter().collect::<Vec<_>>(),
        "one order for the key"
    );

    for clients in both {
        if let Ok(mcp) = std::sync::Arc::try_unwrap(clients.mcp) {
            let _ = mcp.cancel().await;
        }
    }
    a.kill().await;
    b.kill().await;
}
