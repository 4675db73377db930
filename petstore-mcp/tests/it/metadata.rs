//! OAuth 2.0 Protected Resource Metadata (RFC 9728) and the 401 challenge that points
//! to it.

use petstore_core::TokenAuthority;
use petstore_mcp::McpConfig;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use serde_json::{Value, json};

use crate::support::{Http, store};

async fn document(url: &str) -> Value {
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{url}");
    assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
    response.json().await.unwrap()
}

/// `tools/list` with `authorization`: refused with 401.
async fn refused(http: &Http, authorization: &str) -> reqwest::Response {
    let response = reqwest::Client::new()
        .post(http.url())
        .header(AUTHORIZATION, authorization)
        .header(ACCEPT, "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    response
}

async fn challenge_of_a_bad_token(http: &Http) -> String {
    let response = refused(http, "Bearer not.a.jwt").await;
    response.headers()[WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn the_metadata_names_the_resource_its_scopes_and_is_where_the_challenge_points() {
    let store = store().await;
    let http = Http::start(&store, McpConfig::default()).await;
    let base = format!("http://{}", http.addr);
    let metadata = format!("{base}/.well-known/oauth-protected-resource/mcp");

    let doc = document(&metadata).await;
    assert_eq!(doc["resource"], http.url());
    assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
    assert_eq!(
        doc["scopes_supported"],
        json!([
            "pets:read",
            "pets:write",
            "orders:read",
            "orders:write",
            "chat:write",
            "admin"
        ])
    );
    assert!(
        doc.get("authorization_servers").is_none(),
        "none configured: {doc}"
    );
    // Clients that look at the root find the same document.
    assert_eq!(
        document(&format!("{base}/.well-known/oauth-protected-resource")).await,
        doc
    );

    assert_eq!(
        challenge_of_a_bad_token(&http).await,
        format!(
            r#"Bearer realm="petstore", error="invalid_token", resource_metadata="{metadata}""#
        )
    );
}

#[tokio::test]
async fn a_configured_resource_and_issuer_are_what_the_metadata_says() {
    let store = store().await;
    let config = McpConfig::default()
        .resource("https://petstore.example/mcp")
        .authorization_servers(["https://login.petstore.example"]);
    let http = Http::start(&store, config).await;
    let doc = document(&format!(
        "http://{}/.well-known/oauth-protected-resource/mcp",
        http.addr
    ))
    .await;
    assert_eq!(doc["resource"], "https://petstore.example/mcp");
    assert_eq!(
        doc["authorization_servers"],
        json!(["https://login.petstore.example"])
    );
    assert_eq!(
        challenge_of_a_bad_token(&http).await,
        r#"Bearer realm="petstore", error="invalid_token", resource_metadata="https://petstore.example/.well-known/oauth-protected-resource/mcp""#
    );
    // A forged token is refused the same way.
    let forged = TokenAuthority::random(std::time::Duration::from_secs(60))
        .issue("mallory", petstore_core::Scope::ALL)
        .unwrap()
        .access_token;
    let response = refused(&http, &format!("Bearer {forged}")).await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "urn:petstore:problem:unauthenticated");
}
