//! Queries and mutations over HTTP.

use petstore_core::Scope;
use petstore_graphql::GraphQlConfig;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{codes, start};

const PAGE: &str = "query($after: String) {
  pets(first: 3, after: $after) {
    nodes { id name species status price { amount currency } version }
    pageInfo { hasNextPage endCursor }
    position
  }
}";

#[tokio::test]
async fn pets_page_through_the_whole_catalogue_with_cursors() {
    let server = start(GraphQlConfig::default()).await;
    let mut seen = Vec::new();
    let mut after = Value::Null;
    let mut pages = 0;
    loop {
        let data = server.data(None, PAGE, json!({ "after": after })).await;
        let page = &data["pets"];
        pages += 1;
        assert!(page["nodes"].as_array().unwrap().len() <= 3);
        assert!(page["position"].as_str().is_some_and(|p| p.contains('-')));
        for pet in page["nodes"].as_array().unwrap() {
            assert_eq!(pet["price"]["currency"], "USD");
            assert!(
                pet["price"]["amount"].is_string(),
                "money is a decimal string"
            );
            assert_eq!(pet["version"], 1);
            seen.push(pet["id"].as_str().unwrap().to_owned());
        }
        if page["pageInfo"]["hasNextPage"] == false {
            assert!(page["pageInfo"]["endCursor"].is_null());
            break;
        }
        after = page["pageInfo"]["endCursor"].clone();
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "no pet twice");
    assert_eq!(seen.len(), server.pet_count().await);
    assert_eq!(pages, 3, "8 seeded pets in pages of 3");
}

#[tokio::test]
async fn pets_filter_by_status_species_tag_and_text() {
    let server = start(GraphQlConfig::default()).await;
    let names = |data: &Value| -> Vec<String> {
        data["pets"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let data = server
        .data(
            None,
            "{ pets(species: \"cat\") { nodes { name } } }",
            json!({}),
        )
        .await;
    assert_eq!(names(&data), ["Milo", "Luna"]);
    let data = server
        .data(
            None,
            "{ pets(status: SOLD) { nodes { name status } } }",
            json!({}),
        )
        .await;
    assert_eq!(names(&data), ["Shelly"]);
    assert_eq!(data["pets"]["nodes"][0]["status"], "SOLD");
    let data = server
        .data(
            None,
            "{ pets(tag: \"aquarium\", status: AVAILABLE) { nodes { name } } }",
            json!({}),
        )
        .await;
    assert_eq!(names(&data), ["Nemo"]);
    let data = server
        .data(
            None,
            "{ pets(q: \"lab\") { nodes { name breed tags } } }",
            json!({}),
        )
        .await;
    assert_eq!(names(&data), ["Bella"]);
}

fn get_url(server: &crate::common::Server, params: &[(&str, &str)]) -> reqwest::Url {
    let mut url = reqwest::Url::parse(&server.url("/graphql")).unwrap();
    url.query_pairs_mut().extend_pairs(params);
    url
}

#[tokio::test]
async fn get_runs_queries_but_not_mutations() {
    let server = start(GraphQlConfig::default()).await;
    let response = server
        .client()
        .get(get_url(
            &server,
            &[
                (
                    "query",
                    "query($s: PetStatus) { pets(status: $s) { nodes { name } } }",
                ),
                ("variables", "{\"s\": \"SOLD\"}"),
            ],
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"]["pets"]["nodes"][0]["name"], "Shelly");

    let token = server.token(&[Scope::Admin]);
    let before = server.pet_count().await;
    let response = server
        .client()
        .get(get_url(
            &server,
            &[(
                "query",
                "mutation { createPet(input: {name: \"Via GET\", species: \"dog\", price: {amount: \"1\", currency: \"USD\"}}) { id } }",
            )],
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()["allow"], "POST");
    assert_eq!(server.pet_count().await, before, "nothing created");
}

#[tokio::test]
async fn a_pet_is_bought_paid_and_cancelled_through_mutations() {
    let server = start(GraphQlConfig::default()).await;
    let keeper = server.token(&[Scope::PetsWrite]);
    let buyer = server.token(&[Scope::OrdersWrite, Scope::OrdersRead]);

    let data = server
        .data(
            Some(&keeper),
            "mutation($input: NewPetInput!) { createPet(input: $input) { id name species tags status version price { amount currency } } }",
            json!({ "input": {
                "name": "  Pixel ", "species": "Dog", "tags": ["Tiny", "tiny"],
                "price": { "amount": "12.50", "currency": "EUR" }
            }}),
        )
        .await;
    let pet = &data["createPet"];
    assert_eq!(pet["name"], "Pixel");
    assert_eq!(pet["species"], "dog");
    assert_eq!(pet["tags"], json!(["tiny"]));
    assert_eq!(pet["status"], "AVAILABLE");
    assert_eq!(
        pet["price"],
        json!({ "amount": "12.50", "currency": "EUR" })
    );
    let pet_id = pet["id"].as_str().unwrap().to_owned();

    let data = server
        .data(
            Some(&keeper),
            "mutation($id: ID!) { updatePet(id: $id, ifVersion: 1, input: { breed: \"Pug\", age: 2 }) { breed age version } }",
            json!({ "id": pet_id }),
        )
        .await;
    assert_eq!(
        data["updatePet"],
        json!({ "breed": "Pug", "age": 2, "version": 2 })
    );
    // An explicit null clears a field; an absent one leaves it.
    let data = server
        .data(
            Some(&keeper),
            "mutation($id: ID!) { updatePet(id: $id, input: { breed: null }) { breed age } }",
            json!({ "id": pet_id }),
        )
        .await;
    assert_eq!(data["updatePet"], json!({ "breed": null, "age": 2 }));

    let data = server
        .data(
            Some(&buyer),
            "mutation($pet: ID!) { placeOrder(petId: $pet, quantity: 2, idempotencyKey: \"k1\") { replayed order { id status quantity total { amount currency } pet { status } } } }",
            json!({ "pet": pet_id }),
        )
        .await;
    let placed = &data["placeOrder"];
    assert_eq!(placed["replayed"], false);
    assert_eq!(placed["order"]["status"], "PLACED");
    assert_eq!(
        placed["order"]["total"],
        json!({ "amount": "25.00", "currency": "EUR" })
    );
    assert_eq!(placed["order"]["pet"]["status"], "PENDING");
    let order_id = placed["order"]["id"].as_str().unwrap().to_owned();

    // The same idempotency key replays the first order.
    let data = server
        .data(
            Some(&buyer),
            "mutation($pet: ID!) { placeOrder(petId: $pet, quantity: 2, idempotencyKey: \"k1\") { replayed order { id } } }",
            json!({ "pet": pet_id }),
        )
        .await;
    assert_eq!(
        data["placeOrder"],
        json!({ "replayed": true, "order": { "id": order_id } })
    );

    let data = server
        .data(
            Some(&buyer),
            "mutation($id: ID!) { payOrder(id: $id) { status amount { amount } orderId } }",
            json!({ "id": order_id }),
        )
        .await;
    assert_eq!(data["payOrder"]["status"], "SUCCEEDED");
    assert_eq!(data["payOrder"]["orderId"], order_id);

    let data = server
        .data(
            Some(&buyer),
            "query($id: ID!) { order(id: $id) { status payment { status } } }",
            json!({ "id": order_id }),
        )
        .await;
    assert_eq!(
        data["order"],
        json!({ "status": "APPROVED", "payment": { "status": "SUCCEEDED" } })
    );

    let inventory_before = server
        .data(None, "{ inventory { available pending sold } }", json!({}))
        .await;
    let data = server
        .data(
            Some(&buyer),
            "mutation($id: ID!) { cancelOrder(id: $id) { status pet { status } } }",
            json!({ "id": order_id }),
        )
        .await;
    assert_eq!(
        data["cancelOrder"],
        json!({ "status": "CANCELLED", "pet": { "status": "AVAILABLE" } })
    );
    let inventory_after = server
        .data(
            None,
            "{ inventory { available pending sold position } }",
            json!({}),
        )
        .await;
    assert_eq!(
        inventory_after["inventory"]["available"].as_i64().unwrap(),
        inventory_before["inventory"]["available"].as_i64().unwrap() + 1
    );
    assert_eq!(
        inventory_after["inventory"]["pending"].as_i64().unwrap(),
        inventory_before["inventory"]["pending"].as_i64().unwrap() - 1
    );

    let data = server
        .data(
            Some(&keeper),
            "mutation($id: ID!) { deletePet(id: $id) }",
            json!({ "id": pet_id }),
        )
        .await;
    assert_eq!(data["deletePet"], pet_id);
    let (_, body) = server
        .post(
            None,
            "query($id: ID!) { pet(id: $id) { id } }",
            json!({ "id": pet_id }),
        )
        .await;
    assert_eq!(codes(&body["errors"]), ["NOT_FOUND"]);
}

#[tokio::test]
async fn the_event_log_can_be_polled_from_a_position() {
    let server = start(GraphQlConfig::default()).await;
    let position = server
        .data(None, "{ inventory { position } }", json!({}))
        .await["inventory"]["position"]
        .as_str()
        .unwrap()
        .to_owned();
    let keeper = server.token(&[Scope::PetsWrite]);
    server
        .data(
            Some(&keeper),
            "mutation { createPet(input: {name: \"Polly\", species: \"bird\", price: {amount: \"9.99\", currency: \"USD\"}}) { id } }",
            json!({}),
        )
        .await;
    let data = server
        .data(
            None,
            "query($since: String) { events(since: $since, types: [\"pet.*\"]) { events { type subject offset source data } next } }",
            json!({ "since": position }),
        )
        .await;
    let events = data["events"]["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{data:#}");
    assert_eq!(events[0]["type"], "pet.created");
    assert_eq!(events[0]["source"], "/petstore");
    let payload: Value = serde_json::from_str(events[0]["data"].as_str().unwrap()).unwrap();
    assert_eq!(payload["name"], "Polly");
    assert_eq!(data["events"]["next"], events[0]["offset"]);
}

#[tokio::test]
async fn tokens_come_from_issue_token_and_identify_the_viewer() {
    let server = start(GraphQlConfig::default()).await;
    let data = server
        .data(
            None,
            "mutation { issueToken(username: \"alice\", password: \"alice-password\") { accessToken tokenType expiresIn scope } }",
            json!({}),
        )
        .await;
    let token = data["issueToken"]["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(data["issueToken"]["tokenType"], "Bearer");
    assert!(data["issueToken"]["expiresIn"].as_i64().unwrap() > 0);
    let data = server
        .data(
            Some(&token),
            "{ viewer { authenticated subject scopes } }",
            json!({}),
        )
        .await;
    assert_eq!(data["viewer"]["subject"], "alice");
    assert!(
        data["viewer"]["scopes"]
            .as_array()
            .unwrap()
            .contains(&json!("orders:write"))
    );
    let data = server
        .data(None, "{ viewer { authenticated subject } }", json!({}))
        .await;
    assert_eq!(
        data["viewer"],
        json!({ "authenticated": false, "subject": null })
    );
}
