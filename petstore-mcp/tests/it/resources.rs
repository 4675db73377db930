//! Resources, templates and change notifications in both protocol versions.

use petstore_core::{NewOrder, PetPatch, PetStatus, Principal, Scope};
use petstore_mcp::McpConfig;
use rmcp::model::{ReadResourceRequestParams, SubscribeRequestParams, SubscriptionFilter};
use serde_json::json;

use crate::support::{
    Http, Notice, Protocol, http_client, pet, read_json, stdio_client, store, token, within,
};

#[tokio::test]
async fn resources_and_templates_are_listed_and_read() {
    let store = store().await;
    let http = Http::start(&store, McpConfig::default()).await;
    // The order of the client's own subject (`tester`): orders need a token.
    let customer = Principal::new("tester", [Scope::OrdersWrite]);
    let reader = token(&store, [Scope::OrdersRead]);
    let rex = pet(&store, "Rex").await;
    let placed = store
        .place_order(&customer, NewOrder::new(rex.id.clone()), None)
        .await
        .unwrap();

    for protocol in [Protocol::Current, Protocol::Legacy] {
        let (client, _) = http_client(&http.url(), protocol, Some(&reader)).await;
        let listed = within(client.list_all_resources()).await.unwrap();
        let uris: Vec<&str> = listed.iter().map(|r| r.uri.as_str()).collect();
        assert_eq!(uris[0], "petstore://inventory");
        assert_eq!(uris.len(), 1 + 8, "the inventory and every pet: {uris:?}");
        let rex_uri = format!("petstore://pets/{}", rex.id);
        let listed_rex = listed.iter().find(|r| r.uri == rex_uri).unwrap();
        assert_eq!(listed_rex.mime_type.as_deref(), Some("application/json"));
        assert!(listed_rex.title.as_deref().unwrap().contains("Rex"));

        let templates = within(client.list_all_resource_templates()).await.unwrap();
        let templates: Vec<&str> = templates.iter().map(|t| t.uri_template.as_str()).collect();
        assert_eq!(
            templates,
            ["petstore://pets/{id}", "petstore://orders/{id}"]
        );

        let inventory = read_json(&client, "petstore://inventory").await;
        assert_eq!(inventory, json!({"available": 6, "pending": 1, "sold": 1}));
        let pet = read_json(&client, &rex_uri).await;
        assert_eq!(pet["name"], "Rex");
        assert_eq!(pet["status"], "pending");
        let order = read_json(&client, &format!("petstore://orders/{}", placed.order.id)).await;
        assert_eq!(order["pet_id"], rex.id.as_str());
        assert_eq!(order["status"], "placed");
        client.cancel().await.unwrap();
    }
}

#[tokio::test]
async fn unknown_resources_are_protocol_errors() {
    let store = store().await;
    let http = Http::start(&store, McpConfig::default()).await;
    let reader = token(&store, [Scope::OrdersRead]);
    for protocol in [Protocol::Current, Protocol::Legacy] {
        let (client, _) = http_client(&http.url(), protocol, Some(&reader)).await;
        for uri in [
            "petstore://pets/pet_nope",
            "petstore://orders/ord_nope",
            "petstore://kennels/1",
            "file:///etc/passwd",
        ] {
            let err = within(client.read_resource(ReadResourceRequestParams::new(uri)))
                .await
                .expect_err(uri);
            let text = err.to_string();
            assert!(text.contains("does not exist"), "{uri}: {text}");
        }
        // Still connected.
        read_json(&client, "petstore://inventory").await;
        client.cancel().await.unwrap();
    }
}

#[tokio::test]
async fn a_2025_11_25_session_is_notified_of_subscribed_resources_and_list_changes() {
    let store = store().await;
    let http = Http::start(&store, McpConfig::default()).await;
    let (client, mut notices) = http_client(&http.url(), Protocol::Legacy, None).await;
    let system = Principal::system("test");
    let rex = pet(&store, "Rex").await;
    let bella = pet(&store, "Bella").await;
    let rex_uri = format!("petstore://pets/{}", rex.id);
    let bella_uri = format!("petstore://pets/{}", bella.id);

    #[allow(deprecated)]
    within(client.subscribe(SubscribeRequestParams::new(&rex_uri)))
        .await
        .unwrap();
    store
        .set_pet_status(&system, &rex.id, PetStatus::Pending)
        .await
        .unwrap();
    assert_eq!(
        within(notices.recv()).await,
        Some(Notice::Updated(rex_uri.clone()))
    );

    // Adding a pet changes the list.
    let mut ziggy = petstore_core::seed::sample_pets().remove(0);
    ziggy.name = "Ziggy".into();
    store.create_pet(&system, ziggy).await.unwrap();
    assert_eq!(within(notices.recv()).await, Some(Notice::ListChanged));

    // After unsubscribing, Rex's changes are silent: the next notice is Bella's.
    #[allow(deprecated)]
    within(client.unsubscribe(rmcp::model::UnsubscribeRequestParams::new(&rex_uri)))
        .await
        .unwrap();
    let rename = PetPatch {
        name: Some("Rexy".into()),
        ..PetPatch::default()
    };
    store
        .update_pet(&system, &rex.id, rename, None)
        .await
        .unwrap();
    #[allow(deprecated)]
    within(client.subscribe(SubscribeRequestParams::new(&bella_uri)))
        .await
        .unwrap();
    store
        .set_pet_status(&system, &bella.id, PetStatus::Sold)
        .await
        .unwrap();
    assert_eq!(
        within(notices.recv()).await,
        Some(Notice::Updated(bella_uri))
    );

    // Subscribing to something that does not exist is refused.
    #[allow(deprecated)]
    let err = within(client.subscribe(SubscribeRequestParams::new("petstore://pets/pet_nope")))
        .await
        .expect_err("unknown pet");
    assert!(err.to_string().contains("does not exist"), "{err}");
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_2025_11_25_session_hears_list_changes_without_subscribing() {
    let store = store().await;
    let http = Http::start(&store, McpConfig::default()).await;
    let (client, mut notices) = http_client(&http.url(), Protocol::Legacy, None).await;
    let rex = pet(&store, "Rex").await;
    store
        .delete_pet(&Principal::system("test"), &rex.id, None)
        .await
        .unwrap();
    assert_eq!(within(notices.recv()).await, Some(Notice::ListChanged));
    assert!(notices.try_recv().is_err(), "nothing was subscribed");
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn the_current_protocol_listens_for_resource_updates_and_list_changes() {
    let store = store().await;
    let http = Http::start(&store, McpConfig::default()).await;
    let (client, _) = http_client(&http.url(), Protocol::Current, None).await;
    let system = Principal::system("test");
    let rex = pet(&store, "Rex").await;
    let rex_uri = format!("petstore://pets/{}", rex.id);

    let filter = SubscriptionFilter::builder()
        .resource_subscriptions([rex_uri.as_str(), "petstore://inventory", "file:///x"])
        .resources_list_changed()
        .build();
    let mut subscription = within(client.listen(filter)).await.unwrap();
    let acknowledged = subscription.acknowledged().clone();
    assert_eq!(acknowledged.resources_list_changed, Some(true));
    assert_eq!(
        acknowledged.resource_subscriptions,
        Some(vec![rex_uri.clone(), "petstore://inventory".to_owned()]),
        "foreign URIs are not accepted"
    );

    // Placing an order changes Rex (now pending) and the inventory.
    store
        .place_order(&system, NewOrder::new(rex.id.clone()), None)
        .await
        .unwrap();
    let mut updated = Vec::new();
    while updated.len() < 2 {
        let notice = within(subscription.next())
            .await
            .unwrap()
            .expect("a notification");
        match notice {
            rmcp::model::ServerNotification::ResourceUpdatedNotification(n) => {
                updated.push(n.params.uri)
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    updated.sort();
    assert_eq!(updated, ["petstore://inventory".to_owned(), rex_uri]);

    let mut ziggy = petstore_core::seed::sample_pets().remove(1);
    ziggy.name = "Ziggy".into();
    store.create_pet(&system, ziggy).await.unwrap();
    // A new pet changes the inventory and the list.
    let mut list_changed = false;
    while !list_changed {
        match within(subscription.next())
            .await
            .unwrap()
            .expect("a notification")
        {
            rmcp::model::ServerNotification::ResourceListChangedNotification(_) => {
                list_changed = true
            }
            rmcp::model::ServerNotification::ResourceUpdatedNotification(n) => {
                assert_eq!(n.params.uri, "petstore://inventory")
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    subscription.cancel().await.unwrap();
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn stdio_sessions_are_notified_too() {
    let store = store().await;
    let (client, mut notices, _server) =
        stdio_client(&store, Principal::anonymous(), Protocol::Legacy).await;
    let luna = pet(&store, "Luna").await;
    let uri = format!("petstore://pets/{}", luna.id);
    #[allow(deprecated)]
    within(client.subscribe(SubscribeRequestParams::new(&uri)))
        .await
        .unwrap();
    store
        .set_pet_status(&Principal::system("test"), &luna.id, PetStatus::Sold)
        .await
        .unwrap();
    assert_eq!(within(notices.recv()).await, Some(Notice::Updated(uri)));
    client.cancel().await.unwrap();
}
