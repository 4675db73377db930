//! The one HTTP edge, as the example server composes it: every HTTP adapter answers
//! the same error kind with the same status and problem type, one rate budget per
//! caller across REST, GraphQL, MCP and gRPC, and readiness that follows the drain.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use petstore_core::{
    ErrorKind, PetStatus, PetStore, Principal, RateLimitConfig, RateLimiter, ResumeToken, Scope,
};
use petstore_grpc::pb;
use petstore_grpc::pb::store_service_client::StoreServiceClient;
use petstore_http::Edge;
use petstore_server::{self as server, ServerArgs};
use reqwest::{Client, RequestBuilder, StatusCode};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const PATIENCE: Duration = Duration::from_secs(20);

/// The server's HTTP composition (`http_router`, the webhook routes) over `store`,
/// behind `edge`, on a free port.
async fn compose(store: &PetStore, edge: &Edge, shutdown: &CancellationToken) -> String {
    let args = ServerArgs::ephemeral();
    let webhooks = server::webhooks(store, None, &args, shutdown).expect("webhooks");
    let app = webhooks
        .router(edge)
        .merge(server::http_router(store, &args, edge, shutdown));
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

/// The status and problem `type` of an error answer, in the adapter's own terms: the
/// problem+json `type`, or a GraphQL error's `extensions.type`. Also checks the request
/// id is in the body and the header.
async fn answer(request: RequestBuilder) -> (u16, String) {
    let response = tokio::time::timeout(PATIENCE, request.send())
        .await
        .expect("an answer in time")
        .unwrap();
    let status = response.status().as_u16();
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let problem_json = response
        .headers()
        .get("content-type")
        .is_some_and(|ct| ct == "application/problem+json");
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let problem_type = if problem_json {
        assert_eq!(body["request_id"], id.as_str(), "{body}");
        assert_eq!(body["status"], status, "{body}");
        &body["type"]
    } else {
        &body["errors"][0]["extensions"]["type"]
    };
    (status, problem_type.as_str().unwrap_or("<none>").to_owned())
}

fn mcp(http: &Client, base: &str) -> RequestBuilder {
    http.post(format!("{base}/mcp"))
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
}

fn graphql(http: &Client, base: &str) -> RequestBuilder {
    http.post(format!("{base}/graphql"))
        .json(&json!({"query": "{ inventory { available } }"}))
}

/// Every HTTP adapter's request for `kind`, with the adapters that cannot answer it at
/// the HTTP level (GraphQL and MCP put most errors in their own response bodies) left
/// out.
#[tokio::test]
async fn every_http_adapter_answers_an_error_kind_with_the_same_status_and_problem_type() {
    // Reads closed, so that a channel of the wrong scope is refused over SSE too.
    let args = ServerArgs {
        require_auth_for_reads: true,
        ..ServerArgs::ephemeral()
    };
    let store = server::build_store(&args).await.unwrap();
    let token = |sub: &str, scopes: &[Scope]| {
        store
            .tokens()
            .issue(sub, scopes.iter().copied())
            .unwrap()
            .access_token
    };
    let admin = token("admin", &Scope::ALL);
    let reader = token("reader", &[Scope::PetsRead]);
    let shutdown = CancellationToken::new();
    let base = compose(&store, &Edge::new(), &shutdown).await;
    let limiter = RateLimiter::new(
        RateLimitConfig::default()
            .requests(1)
            .authenticated_requests(1),
    );
    let limited = compose(
        &store,
        &Edge::new().rate_limiter(Arc::new(limiter)),
        &shutdown,
    )
    .await;
    let drained_token = CancellationToken::new();
    let drained = compose(&store, &Edge::new(), &drained_token).await;
    drained_token.cancel();
    let http = Client::new();

    let mut sold = petstore_core::seed::sample_pets().remove(0);
    sold.status = Some(PetStatus::Sold);
    let sold = store
        .create_pet(&Principal::system("test"), sold)
        .await
        .unwrap();
    let hook = answer_json(
        http.post(format!("{base}/v1/webhooks"))
            .bearer_auth(&admin)
            .json(&json!({"url": "http://127.0.0.1:9/hook"})),
    )
    .await;
    let hook = hook["id"].as_str().expect("an endpoint").to_owned();
    let head = store.head().await.unwrap();
    let foreign = ResumeToken::new(head.epoch ^ 1, 1);

    let forged = "Bearer not.a.jwt";
    let mut table: Vec<(ErrorKind, Vec<(&str, RequestBuilder)>)> = vec![
        (
            ErrorKind::Unauthenticated,
            vec![
                ("rest", http.get(format!("{base}/v1/pets"))),
                ("graphql", graphql(&http, &base)),
                ("realtime", http.get(format!("{base}/v1/stream/pets"))),
                ("webhooks", http.get(format!("{base}/v1/webhooks"))),
                ("mcp", mcp(&http, &base)),
            ]
            .into_iter()
            .map(|(a, r)| (a, r.header("authorization", forged)))
            .collect(),
        ),
        (
            ErrorKind::Forbidden,
            vec![
                (
                    "rest",
                    http.post(format!("{base}/v1/pets")).json(&json!({})),
                ),
                ("realtime", http.get(format!("{base}/v1/stream/orders"))),
                ("webhooks", http.get(format!("{base}/v1/webhooks"))),
            ]
            .into_iter()
            .map(|(a, r)| (a, r.bearer_auth(&reader)))
            .collect(),
        ),
        (
            ErrorKind::InvalidInput,
            vec![
                (
                    "rest",
                    http.post(format!("{base}/v1/pets"))
                        .bearer_auth(&admin)
                        .json(&json!({"name": "", "species": "dog",
                            "price": {"amount": "1.00", "currency": "USD"}})),
                ),
                (
                    "realtime",
                    http.get(format!("{base}/v1/stream/nowhere"))
                        .bearer_auth(&admin),
                ),
                (
                    "webhooks",
                    http.post(format!("{base}/v1/webhooks"))
                        .bearer_auth(&admin)
                        .json(&json!({"url": "not a url"})),
                ),
            ],
        ),
        (
            ErrorKind::NotFound,
            vec![
                (
                    "rest",
                    http.get(format!("{base}/v1/pets/pet_0"))
                        .bearer_auth(&admin),
                ),
                (
                    "webhooks",
                    http.get(format!("{base}/v1/webhooks/ep_0"))
                        .bearer_auth(&admin),
                ),
            ],
        ),
        (
            ErrorKind::Conflict,
            vec![(
                "rest",
                http.post(format!("{base}/v1/orders"))
                    .bearer_auth(&admin)
                    .json(&json!({"pet_id": sold.id, "quantity": 1})),
            )],
        ),
        (
            ErrorKind::ResumeExpired,
            vec![
                (
                    "rest",
                    http.get(format!("{base}/v1/events?since={foreign}"))
                        .bearer_auth(&admin),
                ),
                (
                    "webhooks",
                    http.post(format!("{base}/v1/webhooks/{hook}/replay"))
                        .bearer_auth(&admin)
                        .json(&json!({"since": foreign})),
                ),
            ],
        ),
        (
            ErrorKind::Unavailable,
            vec![
                (
                    "rest",
                    http.get(format!("{drained}/v1/events?since={head}&wait=30"))
                        .bearer_auth(&admin),
                ),
                (
                    "webhooks",
                    http.post(format!("{base}/v1/payments/webhook"))
                        .json(&json!({})),
                ),
            ],
        ),
    ];
    // Rate limits: a caller's second request of the minute.
    let mut limited_rows = Vec::new();
    for adapter in ["rest", "graphql", "realtime", "webhooks", "mcp"] {
        let caller = token(&format!("limited-{adapter}"), &Scope::ALL);
        let request = || -> RequestBuilder {
            let request = match adapter {
                "rest" => http.get(format!("{limited}/v1/pets")),
                "graphql" => graphql(&http, &limited),
                "realtime" => http.get(format!("{limited}/v1/stream/nowhere")),
                "webhooks" => http.get(format!("{limited}/v1/webhooks")),
                _ => mcp(&http, &limited),
            };
            request.bearer_auth(&caller)
        };
        answer(request()).await;
        limited_rows.push((adapter, request()));
    }
    table.push((ErrorKind::RateLimited, limited_rows));

    let mut seen = Vec::new();
    for (kind, rows) in table {
        let expected = (
            kind.http_status(),
            format!("urn:petstore:problem:{}", kind.code()),
        );
        for (adapter, request) in rows {
            let got = answer(request).await;
            assert_eq!(got, expected, "{kind} from {adapter}");
            seen.push((kind, adapter));
        }
    }
    // Every adapter was held to the table for the kinds the edge raises for all.
    for kind in [ErrorKind::Unauthenticated, ErrorKind::RateLimited] {
        let adapters = seen.iter().filter(|(k, _)| *k == kind).count();
        assert_eq!(adapters, 5, "{kind}");
    }
}

async fn answer_json(request: RequestBuilder) -> Value {
    request.send().await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn every_http_adapter_refuses_two_authorization_headers_and_challenges_alike() {
    let store = server::build_store(&ServerArgs::ephemeral()).await.unwrap();
    let token = store
        .tokens()
        .issue("twice", Scope::ALL)
        .unwrap()
        .access_token;
    let base = compose(&store, &Edge::new(), &CancellationToken::new()).await;
    let http = Client::new();
    let requests = |base: &str| {
        vec![
            ("rest", http.get(format!("{base}/v1/pets"))),
            ("graphql", graphql(&http, base)),
            ("realtime", http.get(format!("{base}/v1/stream/pets"))),
            ("webhooks", http.get(format!("{base}/v1/webhooks"))),
            ("mcp", mcp(&http, base)),
        ]
    };
    for (adapter, request) in requests(&base) {
        let twice = request
            .header("authorization", format!("Bearer {token}"))
            .header("authorization", format!("Bearer {token}"));
        assert_eq!(
            answer(twice).await,
            (400, "urn:petstore:problem:bad_request".to_owned()),
            "{adapter}"
        );
    }
    // One challenge: the same on every adapter; MCP's also points to its metadata.
    let host = base.trim_start_matches("http://");
    for (adapter, request) in requests(&base) {
        let response = request
            .header("authorization", "Bearer not.a.jwt")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{adapter}");
        let challenge = response.headers()["www-authenticate"].to_str().unwrap();
        let expected = r#"Bearer realm="petstore", error="invalid_token""#;
        if adapter == "mcp" {
            assert_eq!(
                challenge,
                format!(
                    r#"{expected}, resource_metadata="http://{host}/.well-known/oauth-protected-resource/mcp""#
                )
            );
        } else {
            assert_eq!(challenge, expected, "{adapter}");
        }
    }
}

/// The `r=` (requests left) of a `RateLimit` header.
fn remaining(headers: &reqwest::header::HeaderMap) -> u32 {
    let value = headers["ratelimit"].to_str().unwrap();
    value
        .split(';')
        .find_map(|f| f.strip_prefix("r="))
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn one_rate_budget_per_caller_across_rest_graphql_mcp_and_grpc() {
    // Six requests a minute: the bucket refills one request every 10 s, so the
    // remaining count moves only with the requests made here, however slow the machine.
    let running = server::start(ServerArgs {
        rate_limit: true,
        rate_limit_authenticated: 6,
        no_mqtt: true,
        ..ServerArgs::ephemeral()
    })
    .await
    .unwrap();
    let base = running.http_url();
    let token = running
        .store
        .tokens()
        .issue("budget", [Scope::PetsRead])
        .unwrap()
        .access_token;
    let http = Client::new();

    let r = http
        .get(format!("{base}/v1/pets"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let start = remaining(r.headers());
    let r = graphql(&http, &base)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        remaining(r.headers()),
        start - 1,
        "GraphQL spends the same budget"
    );
    let r = mcp(&http, &base).bearer_auth(&token).send().await.unwrap();
    assert_eq!(
        remaining(r.headers()),
        start - 2,
        "MCP spends the same budget"
    );
    let mut grpc = StoreServiceClient::connect(format!("http://{}", running.grpc_addr.unwrap()))
        .await
        .unwrap();
    let mut call = tonic::Request::new(pb::GetInventoryRequest {});
    call.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    grpc.get_inventory(call).await.unwrap();
    let r = http
        .get(format!("{base}/v1/inventory"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(remaining(r.headers()), start - 4, "gRPC spent from it too");
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn readyz_turns_503_at_drain_while_livez_stays_200() {
    let running = server::start(ServerArgs {
        no_mqtt: true,
        // Long enough that the listener is still there when the test looks.
        drain_delay: Duration::from_secs(300),
        ..ServerArgs::ephemeral()
    })
    .await
    .unwrap();
    let base = running.http_url();
    let http = Client::new();
    let get = |path: &str| http.get(format!("{base}{path}")).send();

    // Ready once the webhook dispatcher has started (it is a task of its own).
    let ready = tokio::time::timeout(PATIENCE, async {
        loop {
            let r = get("/readyz").await.unwrap();
            if r.status() == StatusCode::OK {
                break r.json::<Value>().await.unwrap();
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the server becomes ready");
    assert_eq!(
        ready,
        json!({"status": "ready", "checks": [
            {"name": "store", "status": "ok"},
            {"name": "webhook_dispatcher", "status": "ok"},
        ]})
    );

    running.begin_drain();
    let r = get("/readyz").await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "draining");
    let r = get("/livez").await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // The old name answers as it always did.
    let r = get("/healthz").await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Requests are still served during the drain.
    let r = get("/v1/pets").await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

/// The webhook dispatcher keeps delivering through the drain delay: a write the
/// draining server still accepts reaches its endpoint (with the in-memory store it
/// would be lost otherwise), and the dispatcher then stops with the listeners.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_accepted_while_draining_is_still_delivered() {
    let (delivered, mut deliveries) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let receiver = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::Json<Value>| {
            let delivered = delivered.clone();
            async move {
                let _ = delivered.send(body.0);
                StatusCode::NO_CONTENT
            }
        }),
    );
    let (hook, _receiver) = crate::support::serve(receiver).await;
    let running = server::start(ServerArgs {
        no_mqtt: true,
        drain_delay: Duration::from_secs(30),
        ..ServerArgs::ephemeral()
    })
    .await
    .unwrap();
    let base = running.http_url();
    let http = Client::new();
    let registered = http
        .post(format!("{base}/v1/webhooks"))
        .bearer_auth(&running.dev_token)
        .json(&json!({ "url": format!("http://{hook}/hook"), "events": ["pet.created"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), StatusCode::CREATED);

    running.begin_drain();
    let created = http
        .post(format!("{base}/v1/pets"))
        .bearer_auth(&running.dev_token)
        .json(&crate::support::new_pet("Late"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        created.status(),
        StatusCode::CREATED,
        "served while draining"
    );
    let pet: Value = created.json().await.unwrap();
    let delivery = crate::support::within("the delivery made while draining", deliveries.recv())
        .await
        .expect("a delivery");
    assert_eq!(delivery["type"], "pet.created");
    assert_eq!(delivery["data"]["id"], pet["id"]);
}
