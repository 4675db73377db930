//! Every tool that is not read-only needs its scope: `unauthenticated` without a token,
//! `forbidden` with a token lacking the scope, and nothing changes.
//!
//! The tools come from the server's own `tools/list`, so a new tool cannot escape this
//! test: one it does not know fails it.

use petstore_core::{NewOrder, OrderQuery, PetQuery, Principal, Scope};
use petstore_mcp::McpConfig;
use serde_json::{Value, json};

use crate::support::{Http, Protocol, call, http_client, pet, store, token, tool_error, within};

/// Everything a refused call must leave alone: the log head and every resource.
async fn state(store: &petstore_core::PetStore) -> (String, Value, Value) {
    let system = Principal::system("test");
    let head = store.head().await.unwrap().to_string();
    let pets = store
        .pets(&system, &PetQuery::default().limit(100))
        .await
        .unwrap();
    let orders = store
        .orders(&system, &OrderQuery::default().limit(100))
        .await
        .unwrap();
    (
        head,
        serde_json::to_value(pets.data).unwrap(),
        serde_json::to_value(orders.data).unwrap(),
    )
}

#[tokio::test]
async fn every_write_tool_needs_its_scope_and_changes_nothing() {
    let store = store().await;
    let http = Http::start(&store, McpConfig::default()).await;
    let rex = pet(&store, "Rex").await.id;
    let held = pet(&store, "Luna").await.id;
    let order = store
        .place_order(&Principal::system("test"), NewOrder::new(held), None)
        .await
        .unwrap()
        .order
        .id;
    let before = state(&store).await;

    // Valid arguments on real resources, and the scope each write tool needs.
    let write = |name: &str| -> Option<(Value, Scope)> {
        Some(match name {
            "create_pet" => (
                json!({"name": "Max", "species": "dog", "price": {"amount": "5.00", "currency": "USD"}}),
                Scope::PetsWrite,
            ),
            "update_pet" => (
                json!({"id": rex, "changes": {"name": "Max"}}),
                Scope::PetsWrite,
            ),
            "set_pet_status" => (json!({"id": rex, "status": "sold"}), Scope::PetsWrite),
            "delete_pet" => (json!({"id": rex}), Scope::PetsWrite),
            "place_order" => (json!({"pet_id": rex}), Scope::OrdersWrite),
            "cancel_order" => (json!({"id": order}), Scope::OrdersWrite),
            "pay_order" => (json!({"id": order}), Scope::OrdersWrite),
            _ => return None,
        })
    };

    let (anonymous, _) = http_client(&http.url(), Protocol::Current, None).await;
    let tools = within(anonymous.list_all_tools()).await.unwrap();
    let mut tested = Vec::new();
    for tool in &tools {
        let name = tool.name.as_ref();
        let read_only = tool
            .annotations
            .as_ref()
            .and_then(|a| a.read_only_hint)
            .unwrap_or(false);
        if read_only {
            continue;
        }
        let (arguments, scope) = write(name)
            .unwrap_or_else(|| panic!("tool `{name}` is not covered: add it with its scope"));

        let text = tool_error(call(&anonymous, name, arguments.clone()).await);
        assert!(text.starts_with("unauthenticated:"), "{name}: {text}");
        assert!(
            text.contains(scope.as_str()),
            "{name} names the scope: {text}"
        );

        // Every other scope, but not this one (nor admin, which grants all).
        let others = Scope::ALL
            .into_iter()
            .filter(|s| *s != scope && *s != Scope::Admin);
        let (client, _) =
            http_client(&http.url(), Protocol::Current, Some(&token(&store, others))).await;
        let text = tool_error(call(&client, name, arguments).await);
        assert_eq!(
            text,
            format!("forbidden: the token lacks scope `{scope}`"),
            "{name}"
        );
        client.cancel().await.unwrap();
        tested.push(name.to_owned());
    }
    anonymous.cancel().await.unwrap();
    assert_eq!(
        state(&store).await,
        before,
        "a refused call changed something"
    );
    tested.sort();
    assert_eq!(
        tested,
        [
            "cancel_order",
            "create_pet",
            "delete_pet",
            "pay_order",
            "place_order",
            "set_pet_status",
            "update_pet",
        ]
    );
}
