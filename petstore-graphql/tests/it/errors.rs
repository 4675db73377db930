//! Error codes, and bad input that changes nothing.

use petstore_core::{NewOrder, PetId, Principal, Scope};
use petstore_graphql::GraphQlConfig;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{codes, start};

const CREATE: &str = "mutation($input: NewPetInput!) { createPet(input: $input) { id } }";

fn valid_pet() -> Value {
    json!({ "name": "Rex II", "species": "dog", "price": { "amount": "10.00", "currency": "USD" } })
}

#[tokio::test]
async fn invalid_input_is_bad_user_input_with_field_errors_and_creates_nothing() {
    let server = start(GraphQlConfig::default()).await;
    let token = server.token(&[Scope::PetsWrite]);
    let before = server.pet_count().await;
    let (status, body) = server
        .post(
            Some(&token),
            CREATE,
            json!({ "input": {
                "name": "", "species": "d0g", "age": -1,
                "photoUrls": ["ftp://nope"],
                "price": { "amount": "ten", "currency": "usd" }
            }}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(codes(&body["errors"]), ["BAD_USER_INPUT"], "{body:#}");
    let fields: Vec<&str> = body["errors"][0]["extensions"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    // Conversion problems are reported first (the core never sees the input).
    assert_eq!(
        fields,
        ["price.amount", "price.currency", "age"],
        "{body:#}"
    );

    let (_, body) = server
        .post(
            Some(&token),
            CREATE,
            json!({ "input": {
                "name": "", "species": "d0g", "photoUrls": ["ftp://nope"],
                "price": { "amount": "10000000.01", "currency": "USD" }
            }}),
        )
        .await;
    assert_eq!(codes(&body["errors"]), ["BAD_USER_INPUT"]);
    let fields: Vec<&str> = body["errors"][0]["extensions"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["name", "species", "photoUrls[0]", "price.amount"]);
    assert!(body["errors"][0]["path"] == json!(["createPet"]));
    assert_eq!(server.pet_count().await, before, "nothing was created");
}

#[tokio::test]
async fn missing_and_insufficient_credentials_are_unauthenticated_and_forbidden() {
    let server = start(GraphQlConfig::default()).await;
    let before = server.pet_count().await;
    let (status, body) = server
        .post(None, CREATE, json!({ "input": valid_pet() }))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(codes(&body["errors"]), ["UNAUTHENTICATED"], "{body:#}");
    assert!(body["data"].is_null(), "a failed non-null root nulls data");

    let reader = server.token(&[Scope::PetsRead]);
    let (_, body) = server
        .post(Some(&reader), CREATE, json!({ "input": valid_pet() }))
        .await;
    assert_eq!(codes(&body["errors"]), ["FORBIDDEN"]);
    assert_eq!(server.pet_count().await, before);
}

#[tokio::test]
async fn a_bad_token_is_refused_with_401() {
    let server = start(GraphQlConfig::default()).await;
    let forged =
        petstore_core::TokenAuthority::new(b"another secret", std::time::Duration::from_secs(60))
            .issue("mallory", Scope::ALL)
            .unwrap()
            .access_token;
    let (status, body) = server
        .post(Some(&forged), "{ viewer { subject } }", json!({}))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(codes(&body["errors"]), ["UNAUTHENTICATED"]);
    assert!(body.get("data").is_none());

    let response = server
        .client()
        .post(server.url("/graphql"))
        .header("authorization", "Basic YWRtaW46YWRtaW4=")
        .json(&json!({ "query": "{ viewer { subject } }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(
        response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
}

#[tokio::test]
async fn not_found_conflict_and_precondition_failed() {
    let server = start(GraphQlConfig::default()).await;
    let admin = server.token(&[Scope::Admin]);

    for (token, query) in [
        (None, "{ pet(id: \"pet_0000000000000000\") { id } }"),
        (None, "{ pet(id: \"not-a-pet-id\") { id } }"),
        (
            Some(&admin),
            "{ order(id: \"ord_0000000000000000\") { id } }",
        ),
        (
            Some(&admin),
            "{ payment(id: \"pay_0000000000000000\") { id } }",
        ),
    ] {
        let (status, body) = server
            .post(token.map(String::as_str), query, json!({}))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(codes(&body["errors"]), ["NOT_FOUND"], "{query}: {body:#}");
        assert_eq!(
            body["data"].as_object().unwrap().values().next(),
            Some(&Value::Null)
        );
    }

    let pets = server
        .data(
            None,
            "{ pets(first: 1, status: AVAILABLE) { nodes { id version } } }",
            json!({}),
        )
        .await;
    let pet = pets["pets"]["nodes"][0]["id"].as_str().unwrap().to_owned();
    let place = "mutation($pet: ID!) { placeOrder(petId: $pet) { order { id } } }";
    server
        .data(Some(&admin), place, json!({ "pet": pet }))
        .await;
    let (_, body) = server
        .post(Some(&admin), place, json!({ "pet": pet }))
        .await;
    assert_eq!(
        codes(&body["errors"]),
        ["CONFLICT"],
        "the pet is pending now"
    );

    let (_, body) = server
        .post(
            Some(&admin),
            "mutation($id: ID!) { updatePet(id: $id, ifVersion: 1, input: { name: \"Stale\" }) { name } }",
            json!({ "id": pet }),
        )
        .await;
    assert_eq!(codes(&body["errors"]), ["PRECONDITION_FAILED"], "{body:#}");
    let name = server
        .data(
            None,
            "query($id: ID!) { pet(id: $id) { name } }",
            json!({ "id": pet }),
        )
        .await;
    assert_ne!(name["pet"]["name"], "Stale");
}

#[tokio::test]
async fn partial_results_keep_the_fields_that_worked() {
    let server = start(GraphQlConfig::default()).await;
    let (status, body) = server
        .post(
            None,
            "{ inventory { available } missing: pet(id: \"pet_0000\") { id } }",
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["data"]["inventory"]["available"].as_i64().unwrap() > 0);
    assert!(body["data"]["missing"].is_null());
    assert_eq!(codes(&body["errors"]), ["NOT_FOUND"]);
    assert_eq!(body["errors"][0]["path"], json!(["missing"]));
}

#[tokio::test]
async fn bad_cursors_and_pages_are_bad_user_input() {
    let server = start(GraphQlConfig::default()).await;
    for query in [
        "{ pets(after: \"garbage!\") { nodes { id } } }",
        "{ pets(first: 0) { nodes { id } } }",
        "{ pets(first: -5) { nodes { id } } }",
        "{ events(since: \"nope\") { next } }",
    ] {
        let (_, body) = server.post(None, query, json!({})).await;
        assert_eq!(
            codes(&body["errors"]),
            ["BAD_USER_INPUT"],
            "{query}: {body:#}"
        );
    }
}

#[tokio::test]
async fn malformed_requests_get_protocol_errors() {
    let server = start(GraphQlConfig::default()).await;
    let post = |body: &'static str, content_type: &'static str| {
        server
            .client()
            .post(server.url("/graphql"))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let response = post("{not json", "application/json").await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(codes(&body["errors"]), ["BAD_REQUEST"]);

    let response = post(
        "[{\"query\":\"{ viewer { subject } }\"}]",
        "application/json",
    )
    .await
    .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::BAD_REQUEST,
        "batches are refused"
    );

    let response = post("{ viewer { subject } }", "text/plain").await.unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let response = post("{ viewer { authenticated } }", "application/graphql")
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let (status, body) = server.post(None, "{ pets { nodes { id } ", json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(codes(&body["errors"]), ["GRAPHQL_PARSE_FAILED"]);

    let (status, body) = server
        .post(None, "{ pets { nodes { colour } } }", json!({}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        codes(&body["errors"]),
        ["GRAPHQL_VALIDATION_FAILED"],
        "{body:#}"
    );

    let (status, body) = server
        .post(None, "subscription { events { id } }", json!({}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("WebSocket")
    );
}

#[tokio::test]
async fn an_oversized_body_is_413_and_runs_nothing() {
    let server = start(GraphQlConfig::default().max_body_bytes(1024)).await;
    let token = server.token(&[Scope::PetsWrite]);
    let before = server.pet_count().await;
    let mut input = valid_pet();
    input["tags"] = json!(vec!["x".repeat(25); 60]);
    let (status, body) = server
        .post(Some(&token), CREATE, json!({ "input": input }))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(codes(&body["errors"]), ["PAYLOAD_TOO_LARGE"]);
    assert_eq!(server.pet_count().await, before);
}

#[tokio::test]
async fn order_errors_from_the_core_keep_their_codes() {
    let server = start(GraphQlConfig::default()).await;
    let buyer = server.token(&[Scope::OrdersWrite]);
    // The buyer's own order (tokens of this server are for subject `tester`).
    let system = Principal::new("tester", [Scope::OrdersWrite]);
    let pet: PetId = server
        .data(
            None,
            "{ pets(first: 1, status: AVAILABLE) { nodes { id } } }",
            json!({}),
        )
        .await["pets"]["nodes"][0]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let order = server
        .store
        .place_order(&system, NewOrder::new(pet), None)
        .await
        .unwrap()
        .order;

    // Delivering needs admin; a placed order cannot be delivered anyway.
    let (_, body) = server
        .post(
            Some(&buyer),
            "mutation($id: ID!) { deliverOrder(id: $id) { status } }",
            json!({ "id": order.id.as_str() }),
        )
        .await;
    assert_eq!(codes(&body["errors"]), ["FORBIDDEN"]);

    let (_, body) = server
        .post(
            Some(&buyer),
            "mutation($id: ID!) { placeOrder(petId: $id, quantity: 11) { order { id } } }",
            json!({ "id": order.pet_id.as_str() }),
        )
        .await;
    assert_eq!(codes(&body["errors"]), ["BAD_USER_INPUT"]);
    assert_eq!(
        body["errors"][0]["extensions"]["fields"][0]["field"],
        "quantity"
    );

    // A declined card is a result, not an error; paying twice is a conflict.
    let pay =
        "mutation($id: ID!, $t: String!) { payOrder(id: $id, token: $t) { status failureReason } }";
    let data = server
        .data(
            Some(&buyer),
            pay,
            json!({ "id": order.id.as_str(), "t": "tok_declined" }),
        )
        .await;
    assert_eq!(data["payOrder"]["status"], "FAILED");
    server
        .data(
            Some(&buyer),
            pay,
            json!({ "id": order.id.as_str(), "t": "tok_visa" }),
        )
        .await;
    let (_, body) = server
        .post(
            Some(&buyer),
            pay,
            json!({ "id": order.id.as_str(), "t": "tok_visa" }),
        )
        .await;
    assert_eq!(codes(&body["errors"]), ["CONFLICT"]);
}

/// Authenticate, authorise, then validate: an invalid input from a caller without the
/// scope is refused for the credential, and says nothing about the input rules.
#[tokio::test]
async fn credentials_come_before_the_arguments() {
    let server = start(GraphQlConfig::default()).await;
    let reader = server.token(&[Scope::PetsRead]);
    let bad = json!({
        "name": "",
        "species": "d0g",
        "price": {"amount": "ten", "currency": "usd"},
    });
    let (_, body) = server.post(None, CREATE, json!({ "input": bad })).await;
    assert_eq!(codes(&body["errors"]), ["UNAUTHENTICATED"], "{body:#}");
    let (_, body) = server
        .post(Some(&reader), CREATE, json!({ "input": bad }))
        .await;
    assert_eq!(codes(&body["errors"]), ["FORBIDDEN"], "{body:#}");
    for (mutation, variables) in [
        (
            "mutation($id: ID!) { placeOrder(petId: $id, quantity: 0) { replayed } }",
            json!({"id": "not-a-pet"}),
        ),
        (
            "mutation($id: ID!) { payOrder(id: $id, token: \"bogus\") { id } }",
            json!({"id": "not-an-order"}),
        ),
        (
            "mutation { postChatMessage(room: \"No Room!\", text: \"\") { id } }",
            json!({}),
        ),
        (
            "mutation { updatePet(id: \"x\", input: {name: \"\"}, ifVersion: -1) { id } }",
            json!({}),
        ),
    ] {
        let (_, body) = server.post(None, mutation, variables).await;
        assert_eq!(
            codes(&body["errors"]),
            ["UNAUTHENTICATED"],
            "{mutation}: {body:#}"
        );
    }
}
