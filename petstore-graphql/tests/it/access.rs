//! Every mutation needs its scope: `UNAUTHENTICATED` without a token, HTTP 401 with a
//! bad one, `FORBIDDEN` with a token lacking the scope, and nothing changes.
//!
//! The mutations come from the served schema (introspection), so a new mutation cannot
//! escape this test: one it does not know fails it.

use petstore_core::{NewOrder, OrderQuery, PetQuery, PetStatus, Principal, Scope};
use petstore_graphql::GraphQlConfig;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Server, codes, start};

/// Everything a refused mutation must leave alone: the log head and every resource.
async fn state(server: &Server) -> (String, Value, Value) {
    let system = Principal::system("test");
    let head = server.store.head().await.unwrap().to_string();
    let pets = server
        .store
        .pets(&system, &PetQuery::default().limit(100))
        .await
        .unwrap();
    let orders = server
        .store
        .orders(&system, &OrderQuery::default().limit(100))
        .await
        .unwrap();
    (
        head,
        serde_json::to_value(pets.data).unwrap(),
        serde_json::to_value(orders.data).unwrap(),
    )
}

const PET: &str = r#"{name: "Max", species: "dog", price: {amount: "5.00", currency: "USD"}}"#;

#[tokio::test]
async fn every_mutation_needs_its_scope_and_changes_nothing() {
    let server = start(GraphQlConfig::default()).await;
    let system = Principal::system("test");
    let available = server
        .store
        .pets(&system, &PetQuery::default().status(PetStatus::Available))
        .await
        .unwrap()
        .data;
    let (pet, held) = (&available[0].id, &available[1].id);
    let order = server
        .store
        .place_order(&system, NewOrder::new(held.clone()), None)
        .await
        .unwrap()
        .order
        .id;

    // Every mutation with a valid operation on real resources, and the scope it needs.
    let operation = |name: &str| -> Option<(String, Scope)> {
        Some(match name {
            "createPet" => (
                format!("createPet(input: {PET}) {{ id }}"),
                Scope::PetsWrite,
            ),
            "updatePet" => (
                format!(r#"updatePet(id: "{pet}", input: {{name: "Max"}}) {{ id }}"#),
                Scope::PetsWrite,
            ),
            "replacePet" => (
                format!(r#"replacePet(id: "{pet}", input: {PET}) {{ id }}"#),
                Scope::PetsWrite,
            ),
            "deletePet" => (format!(r#"deletePet(id: "{pet}")"#), Scope::PetsWrite),
            "placeOrder" => (
                format!(r#"placeOrder(petId: "{pet}") {{ replayed }}"#),
                Scope::OrdersWrite,
            ),
            "payOrder" => (
                format!(r#"payOrder(id: "{order}") {{ id }}"#),
                Scope::OrdersWrite,
            ),
            "cancelOrder" => (
                format!(r#"cancelOrder(id: "{order}") {{ id }}"#),
                Scope::OrdersWrite,
            ),
            "deliverOrder" => (
                format!(r#"deliverOrder(id: "{order}") {{ id }}"#),
                Scope::Admin,
            ),
            "postChatMessage" => (
                r#"postChatMessage(room: "support", text: "hi") { id }"#.to_owned(),
                Scope::ChatWrite,
            ),
            _ => return None,
        })
    };

    let schema = server
        .data(
            None,
            "{ __schema { mutationType { fields { name } } } }",
            json!({}),
        )
        .await;
    let names: Vec<String> = schema["__schema"]["mutationType"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(names.len() >= 10, "{names:?}");

    let before = state(&server).await;
    for name in names.iter().filter(|n| *n != "issueToken") {
        let (selection, scope) = operation(name).unwrap_or_else(|| {
            panic!("mutation `{name}` is not covered: add it with the scope it needs")
        });
        let query = format!("mutation {{ {selection} }}");

        let (status, body) = server.post(None, &query, json!({})).await;
        assert_eq!(status, StatusCode::OK, "{name}: {body:#}");
        assert_eq!(
            codes(&body["errors"]),
            ["UNAUTHENTICATED"],
            "{name}: {body:#}"
        );
        assert!(body["data"].is_null(), "{name}: {body:#}");

        let (status, body) = server.post(Some("not.a.jwt"), &query, json!({})).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}: {body:#}");
        assert_eq!(
            codes(&body["errors"]),
            ["UNAUTHENTICATED"],
            "{name}: {body:#}"
        );

        // Every other scope, but not this one (nor admin, which grants all).
        let others: Vec<Scope> = Scope::ALL
            .into_iter()
            .filter(|s| *s != scope && *s != Scope::Admin)
            .collect();
        let (status, body) = server
            .post(Some(&server.token(&others)), &query, json!({}))
            .await;
        assert_eq!(status, StatusCode::OK, "{name}: {body:#}");
        assert_eq!(codes(&body["errors"]), ["FORBIDDEN"], "{name}: {body:#}");
        let message = body["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains(scope.as_str()), "{name}: {message}");
    }
    assert_eq!(
        state(&server).await,
        before,
        "a refused mutation changed something"
    );
}
