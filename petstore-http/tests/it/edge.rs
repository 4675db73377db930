//! The edge in front of routes, over real HTTP connections.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use petstore_core::{
    Error, ErrorKind, PetStore, RateLimitConfig, RateLimiter, RequestContext, Scope,
};
use petstore_http::{Caller, Edge, Problem};
use reqwest::StatusCode;
use serde_json::Value;

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    format!("http://{addr}")
}

/// Routes that show what the edge gave them.
fn routes() -> Router {
    Router::new()
        .route(
            "/context",
            get(|| async {
                let ctx = RequestContext::current();
                serde_json::json!({
                    "request_id": ctx.request_id(),
                    "client_ip": ctx.client_ip().map(|ip| ip.to_string()),
                    "traceparent": ctx.traceparent().map(|t| t.as_str().to_owned()),
                })
                .to_string()
            }),
        )
        .route(
            "/me",
            get(|Caller(who): Caller| async move {
                who.subject().unwrap_or("anonymous").to_owned()
            }),
        )
        .route(
            "/admin",
            get(|Caller(who): Caller| async move {
                who.require(Scope::Admin).map_err(Problem::from)?;
                Ok::<_, Problem>("welcome")
            }),
        )
        .route(
            "/missing",
            get(|| async { Problem::from(Error::not_found("pet", "pet_0")) }),
        )
        .route(
            "/boom",
            get(|| async {
                if RequestContext::current().request_id().is_some() {
                    panic!("a handler bug");
                }
                "unreachable"
            }),
        )
}

fn token(store: &PetStore, subject: &str, scopes: &[Scope]) -> String {
    store
        .tokens()
        .issue(subject, scopes.iter().copied())
        .unwrap()
        .access_token
}

#[tokio::test]
async fn the_request_context_carries_the_id_address_and_trace() {
    let store = PetStore::in_memory();
    let base = serve(routes().layer(Edge::new().layer(store))).await;
    let http = reqwest::Client::new();

    let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = http
        .get(format!("{base}/context"))
        .header("x-request-id", "abc-123")
        .header("traceparent", trace)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "abc-123");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["request_id"], "abc-123");
    assert_eq!(body["client_ip"], "127.0.0.1");
    assert_eq!(body["traceparent"], trace);

    // An id that is not sane is replaced; a malformed traceparent is dropped.
    let r = http
        .get(format!("{base}/context"))
        .header("x-request-id", "<script>")
        .header("traceparent", "00-zz-00f067aa0ba902b7-01")
        .send()
        .await
        .unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 32);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["request_id"], id.as_str());
    assert_eq!(body["traceparent"], Value::Null);

    // The problem body names the request.
    let r = http.get(format!("{base}/missing")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["request_id"], id.as_str());
    assert_eq!(body["type"], "urn:petstore:problem:not_found");
}

#[tokio::test]
async fn credentials_are_read_once_and_every_401_has_one_challenge() {
    let store = PetStore::in_memory();
    let alice = token(&store, "alice", &[Scope::PetsRead]);
    let edge = Edge::new().resource_metadata("/.well-known/oauth-protected-resource");
    let base = serve(routes().layer(edge.layer(store))).await;
    let http = reqwest::Client::new();

    let r = http
        .get(format!("{base}/me"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "alice");
    let r = http.get(format!("{base}/me")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "anonymous");

    let host = base.trim_start_matches("http://");
    let metadata = format!("http://{host}/.well-known/oauth-protected-resource");
    // A rejected token: invalid_token.
    for bad in ["Bearer not.a.jwt", "Basic YTpi", "Bearer"] {
        let r = http
            .get(format!("{base}/me"))
            .header("authorization", bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{bad}");
        assert_eq!(
            r.headers()["www-authenticate"],
            format!(
                r#"Bearer realm="petstore", error="invalid_token", resource_metadata="{metadata}""#
            )
            .as_str()
        );
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["type"], "urn:petstore:problem:unauthenticated");
    }
    // No token where one is needed: no error code.
    let r = http.get(format!("{base}/admin")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.headers()["www-authenticate"],
        format!(r#"Bearer realm="petstore", resource_metadata="{metadata}""#).as_str()
    );
    // A valid token without the scope: 403 insufficient_scope.
    let r = http
        .get(format!("{base}/admin"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with(r#"Bearer realm="petstore", error="insufficient_scope""#)
    );

    // Two Authorization headers, even two valid ones: 400, whatever the route.
    for path in ["/me", "/context", "/nowhere"] {
        let r = http
            .get(format!("{base}{path}"))
            .header("authorization", format!("Bearer {alice}"))
            .header("authorization", format!("Bearer {alice}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["code"], "bad_request");
    }
}

#[tokio::test]
async fn one_budget_for_every_router_behind_the_same_edge() {
    let store = PetStore::in_memory();
    let alice = token(&store, "alice", &[]);
    let limiter = Arc::new(RateLimiter::new(
        RateLimitConfig::default()
            .requests(2)
            .authenticated_requests(3),
    ));
    let edge = Edge::new().rate_limiter(limiter.clone());
    // Two adapters, each with its own layer of the same edge.
    let a = Router::new()
        .route("/a", get(|| async { "a" }))
        .layer(edge.layer(store.clone()));
    let b = Router::new()
        .route("/b", get(|| async { "b" }))
        .layer(edge.layer(store.clone()));
    // An app-wide edge around them must not count requests twice.
    let base = serve(a.merge(b).layer(edge.layer(store))).await;
    let http = reqwest::Client::new();

    let send = |path: &'static str, auth: Option<String>| {
        let mut request = http.get(format!("{base}{path}"));
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        request.send()
    };
    let bearer = Some(format!("Bearer {alice}"));
    // Each request spends 20 s of the 60 s window.
    for (path, remaining, full_in) in [("/a", 2, 20), ("/b", 1, 40), ("/a", 0, 60)] {
        let r = send(path, bearer.clone()).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()["ratelimit"],
            format!(r#""authenticated";r={remaining};t={full_in}"#).as_str()
        );
        assert_eq!(
            r.headers()["ratelimit-policy"],
            r#""authenticated";q=3;w=60"#
        );
    }
    let r = send("/b", bearer).await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["retry-after"], "20");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["type"], "urn:petstore:problem:rate_limited");

    // Anonymous callers and rejected tokens share the address's budget.
    assert_eq!(send("/a", None).await.unwrap().status(), StatusCode::OK);
    let r = send("/b", Some("Bearer forged".into())).await.unwrap();
    assert_eq!(
        r.headers()["ratelimit"],
        r#""anonymous";r=0;t=60"#,
        "counted by address"
    );
    assert_eq!(
        send("/a", None).await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(limiter.tracked_keys(), 2);
}

#[tokio::test]
async fn forwarding_headers_count_only_from_trusted_proxies() {
    let store = PetStore::in_memory();
    let limiter = Arc::new(RateLimiter::new(RateLimitConfig::default().requests(1)));
    let trusting = Edge::new()
        .trusted_proxies("127.0.0.1".parse().unwrap())
        .rate_limiter(limiter);
    let behind_proxy = serve(routes().layer(trusting.layer(store.clone()))).await;
    let direct = serve(routes().layer(Edge::new().layer(store))).await;
    let http = reqwest::Client::new();
    let client_ip = |base: &str, xff: &'static str| {
        http.get(format!("{base}/context"))
            .header("x-forwarded-for", xff)
            .send()
    };

    let r = client_ip(&direct, "203.0.113.7").await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["client_ip"], "127.0.0.1");
    let r = client_ip(&behind_proxy, "6.6.6.6, 203.0.113.7")
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["client_ip"], "203.0.113.7");
    // The budget follows the forwarded address: another client is not refused.
    let r = client_ip(&behind_proxy, "203.0.113.8").await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = client_ip(&behind_proxy, "203.0.113.7").await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn a_panicking_handler_gets_the_fixed_internal_problem() {
    let base = serve(routes().layer(Edge::new().layer(PetStore::in_memory()))).await;
    let r = reqwest::get(format!("{base}/boom")).await.unwrap();
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["detail"], petstore_http::INTERNAL_ERROR_TEXT);
    assert_eq!(body["type"], "urn:petstore:problem:internal");
    assert!(!body.to_string().contains("a handler bug"));
    // The server goes on.
    let r = reqwest::get(format!("{base}/me")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn without_the_edge_a_caller_is_an_internal_error_not_anonymous() {
    let base = serve(routes()).await;
    let r = reqwest::get(format!("{base}/me")).await.unwrap();
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let e = Caller::from_extensions(&axum::http::Extensions::new()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Internal);
}
