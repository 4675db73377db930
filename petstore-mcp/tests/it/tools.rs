//! Tools over streamable HTTP: schemas, annotations, structured results, auth and
//! errors.

use std::collections::BTreeSet;

use petstore_core::{OrderStatus, PetId, PetStatus, Principal, Scope};
use petstore_mcp::McpConfig;
use serde_json::json;

use crate::support::{
    Http, Protocol, call, http_client, ok, pet, store, token, tool_error, within, writer,
};

const TOOLS: [&str; 12] = [
    "cancel_order",
    "create_pet",
    "delete_pet",
    "get_inventory",
    "get_order",
    "get_pet",
    "pay_order",
    "place_order",
    "recent_events",
    "search_pets",
    "set_pet_status",
    "update_pet",
];
const READ_ONLY: [&str; 5] = [
    "get_inventory",
    "get_order",
    "get_pet",
    "recent_events",
    "search_pets",
];
const DESTRUCTIVE: [&str; 2] = ["cancel_order", "delete_pet"];
const IDEMPOTENT_WRITES: [&str; 4] = ["cancel_order", "delete_pet", "set_pet_status", "update_pet"];

#[tokio::test]
async fn every_tool_is_listed_with_schemas_and_truthful_annotations() {
    let store = store().await;
    let http = Http::start(&store, McpConfig::default()).await;
    for protocol in [Protocol::Current, Protocol::Legacy] {
        let (client, _) = http_client(&http.url(), protocol, None).await;
        let tools = within(client.list_all_tools()).await.unwrap();
        let names: BTreeSet<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
        assert_eq!(names, BTreeSet::from(TOOLS), "{protocol:?}");
        for tool in &tools {
            let name = tool.name.as_ref();
            assert!(
                tool.description.as_deref().is_some_and(|d| d.len() > 20),
                "{name} has a description"
            );
            assert_eq!(tool.input_schema["type"], "object", "{name} input schema");
            let output = tool
                .output_schema
                .as_ref()
                .unwrap_or_else(|| panic!("{name} has an output schema ({protocol:?})"));
            assert_eq!(output["type"], "object", "{name} output schema");
            let hints = tool.annotations.as_ref().expect("annotations");
            let read_only = READ_ONLY.contains(&name);
            assert_eq!(hints.read_only_hint, Some(read_only), "{name} read-only");
            assert_eq!(hints.open_world_hint, Some(false), "{name} closed world");
            if !read_only {
                assert_eq!(
                    hints.destructive_hint,
                    Some(DESTRUCTIVE.contains(&name)),
                    "{name} destructive"
                );
                assert_eq!(
                    hints.idempotent_hint,
                    Some(IDEMPOTENT_WRITES.contains(&name)),
                    "{name} idempotent"
                );
            }
        }
        // The schemas come from the core types.
        let create = tools.iter().find(|t| t.name == "create_pet").unwrap();
        let required = create.input_schema["required"].as_array().unwrap();
        for field in ["name", "species", "price"] {
            assert!(
                required.contains(&json!(field)),
                "create_pet requires {field}"
            );
        }
        let get = tools.iter().find(|t| t.name == "get_pet").unwrap();
        let output = serde_json::to_string(get.output_schema.as_ref().unwrap()).unwrap();
        for field in ["species", "status", "price", "version"] {
            assert!(output.contains(field), "Pet output schema names {field}");
        }
        client.cancel().await.unwrap();
    }
}

#[tokio::test]
async fn read_tools_return_structured_results_with_filters_and_pages() {
    let store = store().await;
    let http = Http::start(&store, McpConfig::default()).await;
    let (client, _) = http_client(&http.url(), Protocol::Current, None).await;

    let cats = ok(call(&client, "search_pets", json!({"species": "cat"})).await);
    let names: BTreeSet<&str> = cats["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, BTreeSet::from(["Luna", "Milo"]));

    // Pagination: pages of 3 cover the 8 pets once each.
    let mut seen = Vec::new();
    let mut cursor = None::<String>;
    loop {
        let mut args = json!({"limit": 3});
        if let Some(c) = &cursor {
            args["cursor"] = json!(c);
        }
        let page = ok(call(&client, "search_pets", args).await);
        let data = page["data"].as_array().unwrap();
        assert!(data.len() <= 3);
        seen.extend(data.iter().map(|p| p["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 8);
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), 8);

    let rex = pet(&store, "Rex").await;
    let got = ok(call(&client, "get_pet", json!({"id": rex.id})).await);
    assert_eq!(got["name"], "Rex");
    assert_eq!(got["price"], json!({"amount": "450.00", "currency": "USD"}));

    let inventory = ok(call(&client, "get_inventory", json!({})).await);
    assert_eq!(inventory, json!({"available": 7, "pending": 0, "sold": 1}));
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn write_tools_without_a_token_fail_cleanly_and_change_nothing() {
    let store = store().await;
    let http = Http::start(&store, McpConfig::default()).await;
    let rex = pet(&store, "Rex").await;
    let head = store.head().await.unwrap();
    for protocol in [Protocol::Current, Protocol::Legacy] {
        let (client, _) = http_client(&http.url(), protocol, None).await;
        let text = tool_error(
            call(
                &client,
                "create_pet",
                json!({"name": "Ghost", "species": "cat", "price": {"amount": "1.00", "currency": "USD"}}),
            )
            .await,
        );
        assert!(text.starts_with("unauthenticated:"), "{text}");
        assert!(text.contains("pets:write"), "names the scope: {text}");

        let text = tool_error(call(&client, "place_order", json!({"pet_id": rex.id})).await);
        assert!(text.contains("orders:write"), "{text}");
        let text = tool_error(call(&client, "delete_pet", json!({"id": rex.id})).await);
        assert!(text.starts_with("unauthenticated:"), "{text}");
        // The credential comes before the arguments: broken ones (an unknown field, a
        // missing one, an empty name) say nothing about the input rules.
        for (tool, arguments) in [
            ("create_pet", json!({"name": "", "colour": "red"})),
            ("place_order", json!({"quantity": 0})),
            ("update_pet", json!({"id": 5})),
            ("pay_order", json!({"id": "nope", "token": "cash"})),
        ] {
            let text = tool_error(call(&client, tool, arguments).await);
            assert!(text.starts_with("unauthenticated:"), "{tool}: {text}");
        }

        // The connection is still usable after tool errors.
        ok(call(&client, "get_pet", json!({"id": rex.id})).await);
        client.cancel().await.unwrap();
    }
    assert_eq!(store.head().await.unwrap(), head, "no event was written");
    assert_eq!(pet(&store, "Rex").await, rex);
}

#[tokio::test]
async fn a_token_without_the_scope_is_forbidden() {
    let store = store().await;
    let http = Http::start(&store, McpConfig::default()).await;
    let reader = token(&store, [Scope::PetsRead, Scope::OrdersWrite]);
    let (client, _) = http_client(&http.url(), Protocol::Current, Some(&reader)).await;
    let rex = pet(&store, "Rex").await;
    let text = tool_error(
        call(
            &client,
            "set_pet_status",
            json!({"id": rex.id, "status": "sold"}),
        )
        .await,
    );
    assert_eq!(text, "forbidden: the token lacks scope `pets:write`");
    assert_eq!(pet(&store, "Rex").await.status, PetStatus::Available);
    // Its other scope works.
    let placed = ok(call(&client, "place_order", json!({"pet_id": rex.id})).await);
    assert_eq!(placed["order"]["customer"], "tester");
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn write_tools_run_the_core_commands() {
    let store = store().await;
    let http = Http::start(&store, McpConfig::default()).await;
    let token = writer(&store);
    let (client, _) = http_client(&http.url(), Protocol::Legacy, Some(&token)).await;
    let system = Principal::system("test");

    let created = ok(call(
        &client,
        "create_pet",
        json!({"name": "Ziggy", "species": "ferret", "tags": ["Playful"], "price": {"amount": "120.00", "currency": "EUR"}}),
    )
    .await);
    let id: PetId = created["id"].as_str().unwrap().parse().unwrap();
    let stored = store.pet(&system, &id).await.unwrap();
    assert_eq!(stored.name, "Ziggy");
    assert_eq!(stored.tags, ["playful"]);

    let updated = ok(call(
        &client,
        "update_pet",
        json!({"id": id, "changes": {"age": 2, "breed": "Sable"}, "expected_version": 1}),
    )
    .await);
    assert_eq!(updated["version"], 2);
    assert_eq!(store.pet(&system, &id).await.unwrap().age, Some(2));
    let stale = tool_error(
        call(
            &client,
            "update_pet",
            json!({"id": id, "changes": {"age": 3}, "expected_version": 1}),
        )
        .await,
    );
    assert!(stale.starts_with("precondition_failed:"), "{stale}");

    // Order, pay, cancel: the pet follows the order.
    let placed = ok(call(
        &client,
        "place_order",
        json!({"pet_id": id, "idempotency_key": "k1"}),
    )
    .await);
    assert_eq!(placed["replayed"], false);
    assert_eq!(placed["order"]["total"]["amount"], "120.00");
    let order_id = placed["order"]["id"].as_str().unwrap().to_owned();
    let again = ok(call(
        &client,
        "place_order",
        json!({"pet_id": id, "idempotency_key": "k1"}),
    )
    .await);
    assert_eq!(again["replayed"], true);
    assert_eq!(again["order"]["id"], order_id.as_str());
    assert_eq!(
        store.pet(&system, &id).await.unwrap().status,
        PetStatus::Pending
    );

    let declined = ok(call(
        &client,
        "pay_order",
        json!({"id": order_id, "token": "tok_declined"}),
    )
    .await);
    assert_eq!(declined["status"], "failed");
    let paid = ok(call(&client, "pay_order", json!({"id": order_id})).await);
    assert_eq!(paid["status"], "succeeded");
    let order = ok(call(&client, "get_order", json!({"id": order_id})).await);
    assert_eq!(order["status"], "approved");

    let cancelled = ok(call(&client, "cancel_order", json!({"id": order_id})).await);
    assert_eq!(cancelled["status"], "cancelled");
    let order = store
        .order(&system, &order_id.parse().unwrap())
        .await
        .unwrap();
    assert_eq!(order.status, OrderStatus::Cancelled);
    assert_eq!(
        store.pet(&system, &id).await.unwrap().status,
        PetStatus::Available
    );

    let status = ok(call(
        &client,
        "set_pet_status",
        json!({"id": id, "status": "sold"}),
    )
    .await);
    assert_eq!(status["status"], "sold");
    let deleted = ok(call(&client, "delete_pet", json!({"id": id})).await);
    assert_eq!(deleted, json!({"id": id}));
    assert!(store.pet(&system, &id).await.is_err());
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn core_errors_are_tool_errors_with_their_code() {
    let store = store().await;
    let http = Http::start(&store, McpConfig::default()).await;
    let token = writer(&store);
    let (client, _) = http_client(&http.url(), Protocol::Current, Some(&token)).await;

    let text = tool_error(call(&client, "get_pet", json!({"id": "pet_x"})).await);
    assert_eq!(text, "not_found: pet `pet_x` does not exist");

    let shelly = pet(&store, "Shelly").await; // sold
    let text = tool_error(call(&client, "place_order", json!({"pet_id": shelly.id})).await);
    assert!(
        text.starts_with("conflict:") && text.contains("not available"),
        "{text}"
    );

    // Validation by the core lists every invalid field.
    let text = tool_error(
        call(
            &client,
            "create_pet",
            json!({"name": "", "species": "d0g", "price": {"amount": "10000000.01", "currency": "USD"}}),
        )
        .await,
    );
    assert!(text.starts_with("invalid_input:"), "{text}");
    for field in ["`name`", "`species`", "`price.amount`"] {
        assert!(text.contains(field), "{field} in {text}");
    }
    let count = store
        .pets(&Principal::anonymous(), &Default::default())
        .await
        .unwrap()
        .data
        .len();
    assert_eq!(count, 8, "nothing was created");
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn arguments_that_break_the_schema_are_refused_naming_the_violation() {
    let store = store().await;
    let http = Http::start(&store, McpConfig::default()).await;
    let token = writer(&store);
    let (client, _) = http_client(&http.url(), Protocol::Current, Some(&token)).await;
    let rex = pet(&store, "Rex").await;
    let head = store.head().await.unwrap();

    let cases = [
        ("get_pet", json!({}), "`id`: is required"),
        (
            "create_pet",
            json!({"name": "Ziggy", "species": "ferret", "age": "three", "price": {"amount": "1", "currency": "USD"}}),
            "`age`: invalid type: string \"three\"",
        ),
        (
            "update_pet",
            json!({"id": rex.id, "changes": {"colour": "red"}}),
            "`changes.colour`: is not a field here (expected one of",
        ),
        (
            "update_pet",
            json!({"id": rex.id, "changes": {"price": {"amount": "1", "currency": "usd"}}}),
            "`changes.price.currency`",
        ),
        (
            "set_pet_status",
            json!({"id": rex.id, "status": "adopted"}),
            "`status`: unknown variant `adopted`",
        ),
        (
            "search_pets",
            json!({"name": "Rex"}),
            "`name`: is not a field here (expected one of",
        ),
        (
            "get_inventory",
            json!({"status": "sold"}),
            "`status`: is not a field here (there are no fields)",
        ),
        (
            "recent_events",
            json!({"since": "yesterday"}),
            "`since`: `yesterday` is not a resume token",
        ),
    ];
    for (tool, args, expected) in cases {
        let text = tool_error(call(&client, tool, args).await);
        assert!(
            text.contains("failed to deserialize parameters") && text.contains(expected),
            "{tool}: expected {expected:?} in {text:?}"
        );
    }
    // Said once: the argument is named by the path, and not again by the reason.
    let text = tool_error(call(&client, "recent_events", json!({"since": "yesterday"})).await);
    assert_eq!(
        text,
        "failed to deserialize parameters: `since`: `yesterday` is not a resume token"
    );
    assert_eq!(store.head().await.unwrap(), head, "nothing changed");
    assert_eq!(pet(&store, "Rex").await, rex);

    // An unknown tool is a protocol error, not a crash; the session goes on.
    let unknown = within(client.call_tool(rmcp::model::CallToolRequestParams::new("adopt"))).await;
    assert!(unknown.is_err(), "{unknown:?}");
    ok(call(&client, "get_inventory", json!({})).await);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn recent_events_returns_the_latest_then_what_follows_a_token() {
    let store = store().await;
    let http = Http::start(&store, McpConfig::default()).await;
    // Order events need a token (pet events alone do not).
    let reader = token(&store, [Scope::OrdersRead]);
    let (client, _) = http_client(&http.url(), Protocol::Current, Some(&reader)).await;

    let latest = ok(call(&client, "recent_events", json!({"limit": 2})).await);
    let events = latest["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    // The sample catalogue ends with Shelly.
    assert_eq!(events[1]["type"], "pet.created");
    assert_eq!(events[1]["data"]["name"], "Shelly");
    let next = latest["next"].as_str().unwrap().to_owned();
    assert_eq!(next, store.head().await.unwrap().to_string());

    let rex = pet(&store, "Rex").await;
    store
        .set_pet_status(&Principal::system("test"), &rex.id, PetStatus::Pending)
        .await
        .unwrap();
    let after = ok(call(&client, "recent_events", json!({"since": next})).await);
    let events = after["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{after}");
    assert_eq!(events[0]["type"], "pet.status_changed");
    assert_eq!(events[0]["subject"], rex.id.as_str());

    // Without `since`: the latest *matching* events.
    let created = ok(call(
        &client,
        "recent_events",
        json!({"types": ["pet.created"], "limit": 1}),
    )
    .await);
    assert_eq!(created["events"].as_array().unwrap().len(), 1);
    assert_eq!(created["events"][0]["data"]["name"], "Shelly");
    let filtered = ok(call(
        &client,
        "recent_events",
        json!({"types": ["order.*"], "channels": ["orders"]}),
    )
    .await);
    assert_eq!(filtered["events"], json!([]));
    let text = tool_error(call(&client, "recent_events", json!({"channels": ["kennel"]})).await);
    assert!(
        text.starts_with("invalid_input:") && text.contains("kennel"),
        "{text}"
    );
    let text = tool_error(call(&client, "recent_events", json!({"limit": 0})).await);
    assert!(text.starts_with("invalid_input: invalid `limit`"), "{text}");
    client.cancel().await.unwrap();
}
