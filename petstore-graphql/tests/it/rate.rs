//! Rate limiting: HTTP 429 with `RATE_LIMITED` errors, `Retry-After` and the IETF
//! `RateLimit` headers; WebSocket operations counted in the same buckets.

use std::sync::Arc;
use std::time::Duration;

use petstore_core::{RateLimitConfig, RateLimiter, Scope};
use petstore_graphql::GraphQlConfig;
use petstore_http::Edge;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::common::{Server, bearer, codes, start, start_edge};

const CREATE: &str = "mutation($input: NewPetInput!) { createPet(input: $input) { id } }";

/// Three requests a minute for anyone.
async fn tiny() -> Server {
    let limiter = RateLimiter::new(
        RateLimitConfig::default()
            .requests(3)
            .authenticated_requests(3)
            .period(Duration::from_secs(60)),
    );
    let edge = Edge::new().rate_limiter(Arc::new(limiter));
    start_edge(GraphQlConfig::default(), &edge).await
}

fn pet() -> Value {
    json!({ "input": {
        "name": "Rex II", "species": "dog", "price": { "amount": "10.00", "currency": "USD" }
    }})
}

/// POSTs with `client` (to pick the source address); returns status, headers, body.
async fn post(
    server: &Server,
    client: &reqwest::Client,
    token: Option<&str>,
    query: &str,
    variables: Value,
) -> (StatusCode, HeaderMap, Value) {
    let mut request = client
        .post(server.url("/graphql"))
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    let headers = response.headers().clone();
    (status, headers, response.json().await.expect("JSON body"))
}

/// `actual` is `expected` seconds, or a few less when the test ran slowly (the
/// limiter counts from the first request).
#[track_caller]
fn assert_secs(actual: u64, expected: u64) {
    assert!(
        (expected.saturating_sub(5)..=expected).contains(&actual),
        "{actual} s, expected about {expected} s"
    );
}

/// Checks `RateLimit: "<policy>";r=<remaining>;t=<reset>`.
#[track_caller]
fn assert_limit(headers: &HeaderMap, policy: &str, remaining: u64, reset: u64) {
    let value = header(headers, "ratelimit");
    let field = |key: &str| -> u64 {
        value
            .split(';')
            .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {key} in {value}"))
            .parse()
            .unwrap()
    };
    assert!(value.starts_with(&format!("\"{policy}\";")), "{value}");
    assert_eq!(field("r"), remaining, "{value}");
    assert_secs(field("t"), reset);
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn the_fourth_request_in_a_minute_is_429_rate_limited_and_creates_nothing() {
    let server = tiny().await;
    let client = server.client().clone();
    let alice = server
        .store
        .tokens()
        .issue("alice", [Scope::PetsWrite])
        .unwrap()
        .access_token;
    let before = server.pet_count().await;

    for remaining in [2, 1, 0] {
        let (status, headers, body) = post(&server, &client, Some(&alice), CREATE, pet()).await;
        assert_eq!(status, StatusCode::OK, "{body:#}");
        assert!(body.get("errors").is_none(), "{body:#}");
        assert_eq!(
            header(&headers, "ratelimit-policy"),
            "\"authenticated\";q=3;w=60"
        );
        assert_limit(&headers, "authenticated", remaining, (3 - remaining) * 20);
    }
    assert_eq!(server.pet_count().await, before + 3);

    let (status, headers, body) = post(&server, &client, Some(&alice), CREATE, pet()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body:#}");
    assert_eq!(codes(&body["errors"]), ["RATE_LIMITED"], "{body:#}");
    let hint = body["errors"][0]["extensions"]["retryAfter"].as_u64();
    assert_secs(hint.expect("retryAfter"), 20);
    assert!(body.get("data").is_none(), "nothing ran: {body:#}");
    assert_eq!(header(&headers, "retry-after"), hint.unwrap().to_string());
    assert_limit(&headers, "authenticated", 0, 60);
    assert_eq!(
        server.pet_count().await,
        before + 3,
        "the refused mutation created nothing"
    );

    // Another principal has its own quota.
    let bob = server
        .store
        .tokens()
        .issue("bob", [Scope::PetsWrite])
        .unwrap()
        .access_token;
    let (status, _, body) = post(&server, &client, Some(&bob), CREATE, pet()).await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    assert_eq!(server.pet_count().await, before + 4);

    // Anonymous callers count per client IP: 127.0.0.1 and 127.0.0.2 are two buckets.
    let query = "{ inventory { available } }";
    for _ in 0..3 {
        let (status, _, body) = post(&server, &client, None, query, json!({})).await;
        assert_eq!(status, StatusCode::OK, "{body:#}");
    }
    let (status, headers, _) = post(&server, &client, None, query, json!({})).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        header(&headers, "ratelimit-policy"),
        "\"anonymous\";q=3;w=60"
    );
    let elsewhere = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let (status, headers, body) = post(&server, &elsewhere, None, query, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    assert_limit(&headers, "anonymous", 2, 20);
}

#[tokio::test]
async fn websocket_operations_count_against_the_connection_principal() {
    let server = tiny().await;
    let token = server
        .store
        .tokens()
        .issue("carol", [Scope::PetsWrite])
        .unwrap()
        .access_token;
    let before = server.pet_count().await;

    // The handshake is an anonymous request of 127.0.0.1; the operations are carol's.
    let mut ws = server.ws("graphql-transport-ws").await;
    ws.init(bearer(&token)).await;
    for id in ["1", "2", "3"] {
        ws.send(json!({ "type": "subscribe", "id": id, "payload": {
            "query": "{ viewer { subject } }"
        }}))
        .await;
        let next = ws.next().await;
        assert_eq!(
            next["payload"]["data"]["viewer"]["subject"], "carol",
            "{next}"
        );
        assert_eq!(ws.next().await, json!({ "type": "complete", "id": id }));
    }
    ws.send(json!({ "type": "subscribe", "id": "4", "payload": {
        "query": CREATE, "variables": pet()
    }}))
    .await;
    let error = ws.next().await;
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["id"], "4");
    assert_eq!(codes(&error["payload"]), ["RATE_LIMITED"], "{error}");
    let hint = error["payload"][0]["extensions"]["retryAfter"].as_u64();
    assert_secs(hint.expect("retryAfter"), 20);
    assert_eq!(
        server.pet_count().await,
        before,
        "the refused mutation did not run"
    );

    // The connection stays usable, and HTTP shares carol's bucket.
    let (status, body) = server
        .post(Some(&token), "{ viewer { subject } }", json!({}))
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body:#}");
    ws.send(json!({ "type": "subscribe", "id": "5", "payload": {
        "query": "{ viewer { subject } }"
    }}))
    .await;
    let error = ws.next().await;
    assert_eq!(
        (&error["id"], codes(&error["payload"])),
        (&json!("5"), vec!["RATE_LIMITED".to_owned()])
    );

    // Another principal is unaffected.
    let dave = server.token(&[Scope::PetsWrite]);
    let (status, body) = server.post(Some(&dave), CREATE, pet()).await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    assert_eq!(server.pet_count().await, before + 1);
}

#[tokio::test]
async fn rate_limiting_is_off_by_default() {
    let server = start(GraphQlConfig::default()).await;
    let client = server.client().clone();
    for _ in 0..10 {
        let (status, headers, _) = post(
            &server,
            &client,
            None,
            "{ inventory { available } }",
            json!({}),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert!(headers.get("ratelimit").is_none());
    }
}
