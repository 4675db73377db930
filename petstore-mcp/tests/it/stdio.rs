//! MCP over a byte stream (`serve_io`, what `petstore-server mcp-stdio` runs on
//! stdin/stdout): both protocol versions, acting as the configured principal.

use petstore_core::{Principal, Scope};
use serde_json::json;

use crate::support::{Protocol, call, ok, read_json, stdio_client, store, tool_error, within};

#[tokio::test]
async fn stdio_serves_both_protocols_as_its_principal() {
    let store = store().await;
    let clerk = Principal::new("clerk", [Scope::PetsWrite]);
    for protocol in [Protocol::Current, Protocol::Legacy] {
        let (client, _, server) = stdio_client(&store, clerk.clone(), protocol).await;
        assert_eq!(within(client.list_all_tools()).await.unwrap().len(), 12);
        let created = ok(call(
            &client,
            "create_pet",
            json!({"name": format!("Stdio {protocol:?}"), "species": "dog", "price": {"amount": "5", "currency": "USD"}}),
        )
        .await);
        let uri = format!("petstore://pets/{}", created["id"].as_str().unwrap());
        assert_eq!(read_json(&client, &uri).await["name"], created["name"]);
        // The principal has no orders:write.
        let text = tool_error(call(&client, "place_order", json!({"pet_id": created["id"]})).await);
        assert_eq!(text, "forbidden: the token lacks scope `orders:write`");
        assert_eq!(within(client.list_all_prompts()).await.unwrap().len(), 1);
        // Closing the pipe ends the server cleanly.
        client.cancel().await.unwrap();
        within(server).await.unwrap().expect("serve_io returns Ok");
    }

    let (anonymous, _, _server) =
        stdio_client(&store, Principal::anonymous(), Protocol::Current).await;
    let text = tool_error(
        call(
            &anonymous,
            "create_pet",
            json!({"name": "Nope", "species": "dog", "price": {"amount": "5", "currency": "USD"}}),
        )
        .await,
    );
    assert!(text.starts_with("unauthenticated:"), "{text}");
    anonymous.cancel().await.unwrap();
}
