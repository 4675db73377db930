//! The HTTP transport itself: both protocol versions, bearer auth, Host and Origin
//! checks, and the stateless mode.

use petstore_core::{PetStore, Principal, ServiceConfig, TokenAuthority};
use petstore_mcp::McpConfig;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST, ORIGIN, WWW_AUTHENTICATE};
use serde_json::json;

use crate::support::{Http, Protocol, call, http_client, ok, store, tool_error, within, writer};

/// A raw `initialize` POST, as a 2025-11-25 client sends it.
pub(crate) fn initialize(http: &Http) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .post(http.url())
        .header(ACCEPT, "application/json, text/event-stream")
        .header(CONTENT_TYPE, "application/json")
        .body(
            json!({
                "jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "raw", "version": "0"}
                }
            })
            .to_string(),
        )
}

#[tokio::test]
async fn clients_of_both_protocol_versions_list_and_call_tools() {
    let store = store().await;
    let http = Http::start(&store, McpConfig::default()).await;
    let token = writer(&store);
    for protocol in [Protocol::Current, Protocol::Legacy] {
        let (client, _) = http_client(&http.url(), protocol, Some(&token)).await;
        let info = client.peer_info().unwrap();
        assert_eq!(info.server_info.as_ref().unwrap().name, "petstore-mcp");
        let capabilities = &info.capabilities;
        assert!(capabilities.tools.is_some() && capabilities.prompts.is_some());
        let resources = capabilities.resources.as_ref().unwrap();
        assert_eq!(resources.subscribe, Some(true));
        assert_eq!(resources.list_changed, Some(true));

        let tools = within(client.list_all_tools()).await.unwrap();
        assert_eq!(tools.len(), 12, "{protocol:?}");
        let created = ok(call(
            &client,
            "create_pet",
            json!({"name": format!("{protocol:?}"), "species": "cat", "price": {"amount": "10", "currency": "USD"}}),
        )
        .await);
        assert_eq!(created["status"], "available");
        client.cancel().await.unwrap();
    }
    let inventory = store
        .inventory(&Principal::anonymous())
        .await
        .unwrap()
        .items;
    assert_eq!(inventory.available, 7 + 2);
}

#[tokio::test]
async fn a_bad_token_gets_401_with_a_bearer_challenge() {
    let store = store().await;
    let http = Http::start(&store, McpConfig::default()).await;
    let forged = TokenAuthority::random(std::time::Duration::from_secs(60))
        .issue("mallory", petstore_core::Scope::ALL)
        .unwrap()
        .access_token;
    for value in [
        format!("Bearer {forged}"),
        "Bearer not.a.jwt".into(),
        "Basic YTpi".into(),
    ] {
        let response = initialize(&http)
            .header(AUTHORIZATION, &value)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{value}");
        let challenge = response.headers()[WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(challenge.starts_with("Bearer "), "{challenge}");
        assert!(
            challenge.contains(r#"error="invalid_token""#),
            "{challenge}"
        );
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["code"], "unauthenticated");
    }
    // Without a token the request is served (anonymous reads), in a session.
    let response = initialize(&http).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get("mcp-session-id").is_some());

    // The rmcp client surfaces the refusal instead of connecting.
    let transport = rmcp::transport::StreamableHttpClientTransport::from_config(
        rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(
            http.url(),
        )
        .auth_header("not.a.jwt"),
    );
    let refused = within(rmcp::ServiceExt::serve(
        rmcp::model::ClientConfig::default(),
        transport,
    ))
    .await;
    assert!(refused.is_err());
}

#[tokio::test]
async fn closed_reads_need_a_token_for_everything() {
    // Closed by the MCP config...
    let store = store().await;
    let closed = Http::start(&store, McpConfig::default().require_auth_for_reads(true)).await;
    // ...or by the store's own setting.
    let strict = PetStore::new(
        petstore_core::MemoryStore::default(),
        TokenAuthority::random(std::time::Duration::from_secs(60)),
        ServiceConfig::default().require_auth_for_reads(true),
    );
    let strict_http = Http::start(&strict, McpConfig::default()).await;
    for (http, store) in [(&closed, &store), (&strict_http, &strict)] {
        let response = initialize(http).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        // No error code (no token was sent), and the pointer to the metadata.
        assert_eq!(
            response.headers()[WWW_AUTHENTICATE],
            format!(
                r#"Bearer realm="petstore", resource_metadata="http://{}/.well-known/oauth-protected-resource/mcp""#,
                http.addr
            )
            .as_str()
        );

        let reader = crate::support::token(store, [petstore_core::Scope::PetsRead]);
        let (client, _) = http_client(&http.url(), Protocol::Current, Some(&reader)).await;
        assert_eq!(within(client.list_all_tools()).await.unwrap().len(), 12);
        ok(call(&client, "get_inventory", json!({})).await);
        // Orders need their own read scope when reads are closed.
        if std::ptr::eq(store, &strict) {
            let text = tool_error(call(&client, "get_order", json!({"id": "ord_x"})).await);
            assert!(text.starts_with("forbidden:"), "{text}");
        }
        client.cancel().await.unwrap();
    }
}

#[tokio::test]
async fn foreign_hosts_and_origins_are_refused() {
    let store = store().await;
    let http = Http::start(&store, McpConfig::default()).await;
    let response = initialize(&http)
        .header(HOST, "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = initialize(&http)
        .header(ORIGIN, "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = initialize(&http)
        .header(ORIGIN, "http://localhost:6274")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "loopback origins are allowed"
    );

    // A public deployment lists its own names.
    let public = Http::start(
        &store,
        McpConfig::default()
            .allowed_hosts(["petstore.example"])
            .allowed_origins(["https://app.petstore.example"]),
    )
    .await;
    let response = initialize(&public)
        .header(HOST, "petstore.example")
        .header(ORIGIN, "https://app.petstore.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = initialize(&public).send().await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::FORBIDDEN,
        "127.0.0.1 is not listed"
    );
}

#[tokio::test]
async fn without_legacy_sessions_2025_11_25_clients_are_served_statelessly() {
    let store = store().await;
    let http = Http::start(&store, McpConfig::default().legacy_sessions(false)).await;
    let response = initialize(&http).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get("mcp-session-id").is_none());

    let token = writer(&store);
    let (client, _) = http_client(&http.url(), Protocol::Legacy, Some(&token)).await;
    assert_eq!(within(client.list_all_tools()).await.unwrap().len(), 12);
    let rex = crate::support::pet(&store, "Rex").await;
    let placed = ok(call(&client, "place_order", json!({"pet_id": rex.id})).await);
    assert_eq!(placed["order"]["status"], "placed");
    #[allow(deprecated)]
    let err = within(client.subscribe(rmcp::model::SubscribeRequestParams::new(
        "petstore://inventory",
    )))
    .await
    .expect_err("no session to notify");
    assert!(err.to_string().contains("need a session"), "{err}");
    client.cancel().await.unwrap();
}
