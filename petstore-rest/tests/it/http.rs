//! HTTP plumbing: compression, CORS, request ids, mounting under a prefix.

use std::time::Duration;

use axum::Router;
use futures_util::StreamExt;
use petstore_core::PetStore;
use petstore_http::Edge;
use petstore_rest::{RestConfig, router};
use reqwest::{Method, header};
use tokio_util::sync::CancellationToken;

use crate::support::{Server, new_pet};

#[tokio::test]
async fn compression_follows_accept_encoding_and_the_config() {
    let s = Server::start().await;
    let r = s
        .send(
            s.get("/openapi.json")
                .header(header::ACCEPT_ENCODING, "gzip"),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(&r.body[..2], &[0x1f, 0x8b], "a gzip stream");
    let r = s.send(s.get("/openapi.json")).await;
    assert_eq!(r.header("content-encoding"), None);

    let off = Server::with(
        PetStore::in_memory(),
        RestConfig::default().compression(false),
    )
    .await;
    let r = off
        .send(
            off.get("/openapi.json")
                .header(header::ACCEPT_ENCODING, "gzip"),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-encoding"), None);
}

#[tokio::test]
async fn cors_is_off_by_default_and_configurable() {
    let preflight = |s: &Server, origin: &str| {
        s.req(Method::OPTIONS, "/v1/pets")
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(
                header::ACCESS_CONTROL_REQUEST_HEADERS,
                "authorization,content-type",
            )
    };
    let s = Server::start().await;
    let r = s
        .send(
            s.get("/v1/pets")
                .header(header::ORIGIN, "https://shop.example"),
        )
        .await;
    assert_eq!(r.header("access-control-allow-origin"), None);

    let s = Server::with(
        PetStore::in_memory(),
        RestConfig::default().cors_origins(["https://shop.example"]),
    )
    .await;
    let r = s.send(preflight(&s, "https://shop.example")).await;
    assert!(r.status.is_success());
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://shop.example")
    );
    let methods = r.header("access-control-allow-methods").unwrap();
    assert!(methods.contains("POST"), "{methods}");
    let r = s.send(preflight(&s, "https://evil.example")).await;
    assert_eq!(r.header("access-control-allow-origin"), None);
    let r = s
        .send(
            s.get("/v1/pets")
                .header(header::ORIGIN, "https://shop.example"),
        )
        .await;
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://shop.example")
    );
    assert!(
        r.header("access-control-expose-headers")
            .unwrap()
            .contains("etag")
    );

    let any = Server::with(
        PetStore::in_memory(),
        RestConfig::default().cors_origins(["*"]),
    )
    .await;
    let r = any.send(preflight(&any, "https://anything.example")).await;
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
}

#[tokio::test]
async fn request_ids_are_set_or_propagated() {
    let s = Server::start().await;
    let r = s.send(s.get("/v1/inventory")).await;
    assert!(!r.header("x-request-id").unwrap().is_empty());
    let r = s
        .send(s.get("/v1/nothing").header("x-request-id", "abc-123"))
        .await;
    assert_eq!(r.header("x-request-id"), Some("abc-123"));
}

#[tokio::test]
async fn mounted_under_a_prefix_locations_keep_the_prefix() {
    let store = PetStore::in_memory();
    let app = Router::new().nest(
        "/api",
        router(
            store.clone(),
            RestConfig::default(),
            &Edge::new(),
            CancellationToken::new(),
        ),
    );
    let s = Server::serve_at(store, app, "/api").await;
    let r = s
        .send(
            s.post("/api/v1/pets")
                .bearer_auth(s.admin())
                .json(&new_pet("Rex", "dog", &[])),
        )
        .await;
    let pet = r.expect(201);
    let location = r.header("location").unwrap().to_owned();
    assert_eq!(
        location,
        format!("/api/v1/pets/{}", pet["id"].as_str().unwrap())
    );
    assert_eq!(s.send(s.get(&location)).await.expect(200), pet);
}

#[tokio::test]
async fn merged_into_an_app_beside_other_routes() {
    let store = PetStore::in_memory();
    let app = Router::new()
        .route("/health", axum::routing::get(|| async { "ok" }))
        .merge(router(
            store.clone(),
            RestConfig::default(),
            &Edge::new(),
            CancellationToken::new(),
        ));
    let s = Server::serve(store, app).await;
    let r = s.send(s.get("/health")).await;
    assert_eq!(r.status, 200);
    assert_eq!(&r.body[..], b"ok");
    s.send(s.get("/v1/inventory")).await.expect(200);
}

#[tokio::test]
async fn a_request_slower_than_the_timeout_is_a_503_problem() {
    let s = Server::with(
        PetStore::in_memory(),
        RestConfig::default().request_timeout(Duration::from_millis(300)),
    )
    .await;
    // A client that sends the start of a body, then stalls for longer than the timeout.
    let head = futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from_static(
        br#"{"name":"#,
    ))]);
    let stall = futures_util::stream::once(async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok(bytes::Bytes::from_static(br#""Rex"}"#))
    });
    let r = s
        .send(
            s.post("/v1/pets")
                .bearer_auth(s.admin())
                .header(header::CONTENT_TYPE, "application/json")
                .body(reqwest::Body::wrap_stream(head.chain(stall))),
        )
        .await;
    assert_eq!(r.problem(503), "timeout");
    // Nothing was created.
    assert_eq!(
        s.send(s.get("/v1/pets")).await.expect(200)["data"],
        serde_json::json!([])
    );
}
