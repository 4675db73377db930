//! `/metrics` after a scripted workload over REST, gRPC, GraphQL, SSE, WebSocket, MQTT
//! and webhooks: the Prometheus exposition is parsed and the counters checked by exact
//! value, the stream gauges going up and down, the webhook outcomes.
//!
//! A test binary of its own: the recorder is global to the process, so no other test
//! may add to these counts.

#[allow(dead_code, unreachable_pub)]
#[path = "it/support/mod.rs"]
mod support;

use axum::http::StatusCode;
use futures_util::StreamExt as _;
use petstore_grpc::pb;
use petstore_grpc::pb::pet_service_client::PetServiceClient;
use serde_json::{Value, json};
use support::exposition::{Scrape, parse, scrape, scrape_until};
use support::{new_pet, serve, start, start_with, within};

const REQUESTS: &str = "petstore_requests_total";
const DURATIONS: &str = "petstore_request_duration_seconds_count";
const OPEN: &str = "petstore_open_streams";

fn http(operation: &str, outcome: &str) -> [(&'static str, String); 3] {
    [
        ("protocol", "http".to_owned()),
        ("operation", operation.to_owned()),
        ("outcome", outcome.to_owned()),
    ]
}

fn labels<'a>(owned: &'a [(&'static str, String); 3]) -> [(&'static str, &'a str); 3] {
    owned.each_ref().map(|(k, v)| (*k, v.as_str()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scripted_workload_shows_in_the_metrics_by_exact_count() {
    let s = start().await;
    let base = s.http_url();
    let client = reqwest::Client::new();

    // Webhooks: one receiver that takes new pets, one that is gone (410) for orders.
    let ok = axum::Router::new().route(
        "/hook",
        axum::routing::post(|| async { StatusCode::NO_CONTENT }),
    );
    let gone =
        axum::Router::new().route("/hook", axum::routing::post(|| async { StatusCode::GONE }));
    let (ok_addr, _ok) = serve(ok).await;
    let (gone_addr, _gone) = serve(gone).await;
    for (addr, event) in [(ok_addr, "pet.created"), (gone_addr, "order.created")] {
        let registered = client
            .post(format!("{base}/v1/webhooks"))
            .bearer_auth(&s.dev_token)
            .json(&json!({ "url": format!("http://{addr}/hook"), "events": [event] }))
            .send()
            .await
            .unwrap();
        assert_eq!(registered.status(), 201);
    }

    // REST: three pets created, one read back, one unknown pet.
    let mut pets = Vec::new();
    for i in 0..3 {
        let created = client
            .post(format!("{base}/v1/pets"))
            .bearer_auth(&s.dev_token)
            .json(&new_pet(&format!("Metered {i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201);
        pets.push(
            created.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let read = client
        .get(format!("{base}/v1/pets/{}", pets[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    // A well-formed id of no pet: the route's template, with its 404.
    let mut missing = pets[0].clone();
    let last = if missing.ends_with('0') { '1' } else { '0' };
    missing.pop();
    missing.push(last);
    let unknown = client
        .get(format!("{base}/v1/pets/{missing}"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let order = client
        .post(format!("{base}/v1/orders"))
        .bearer_auth(&s.dev_token)
        .json(&json!({ "pet_id": pets[1], "quantity": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(order.status(), 201);

    // gRPC: two reads.
    let mut grpc = PetServiceClient::new(support::grpc::channel(&s).await);
    for _ in 0..2 {
        let request = pb::GetPetRequest {
            id: pets[2].clone(),
        };
        grpc.get_pet(request).await.expect("GetPet");
    }

    // GraphQL: two queries.
    for _ in 0..2 {
        let answered = client
            .post(format!("{base}/graphql"))
            .json(&json!({ "query": "{ __typename }" }))
            .send()
            .await
            .unwrap();
        assert_eq!(answered.status(), 200);
    }

    let m = scrape(&base).await;
    let created = http("POST /v1/pets", "201");
    assert_eq!(m.get(REQUESTS, &labels(&created)), 3.0);
    assert_eq!(m.get(DURATIONS, &labels(&created)), 3.0);
    assert_eq!(
        m.get(REQUESTS, &labels(&http("GET /v1/pets/{id}", "200"))),
        1.0
    );
    assert_eq!(
        m.get(REQUESTS, &labels(&http("POST /v1/webhooks", "201"))),
        2.0
    );
    assert_eq!(
        m.get(REQUESTS, &labels(&http("POST /v1/orders", "201"))),
        1.0
    );
    assert_eq!(
        m.get(REQUESTS, &labels(&http("GET /v1/pets/{id}", "404"))),
        1.0
    );
    assert_eq!(m.get(REQUESTS, &labels(&http("POST /graphql", "200"))), 2.0);
    let graphql = [
        ("protocol", "graphql"),
        ("operation", "query"),
        ("outcome", "ok"),
    ];
    assert_eq!(m.get(REQUESTS, &graphql), 2.0);
    let get_pet = [
        ("protocol", "grpc"),
        ("operation", "/petstore.v1.PetService/GetPet"),
        ("outcome", "OK"),
    ];
    assert_eq!(m.get(REQUESTS, &get_pet), 2.0);
    assert_eq!(m.get(DURATIONS, &get_pet), 2.0);
    // Three pets and one order (the seed writes through the same service).
    assert!(m.get("petstore_log_events_total", &[]) >= 4.0);
    assert!(m.get("petstore_log_head_offset", &[]) >= 4.0);

    // SSE: the gauge goes up while the stream is open and down once it is dropped.
    for kind in ["sse", "websocket", "grpc"] {
        assert_eq!(m.get(OPEN, &[("kind", kind)]), 0.0, "{kind}");
    }
    let mut sse = support::sse::request(format!("{base}/v1/stream/pets"), "").await;
    assert_eq!(sse.status(), 200);
    within("the first SSE message", sse.chunk()).await.unwrap();
    scrape_until(&base, "one open SSE stream", |m| {
        m.get(OPEN, &[("kind", "sse")]) == 1.0
    })
    .await;
    drop(sse);
    scrape_until(&base, "no open SSE stream", |m| {
        m.get(OPEN, &[("kind", "sse")]) == 0.0
    })
    .await;

    // WebSocket: the same.
    let mut ws = support::ws::open(&support::ws::url(&base, "/v1/ws")).await;
    scrape_until(&base, "one open WebSocket", |m| {
        m.get(OPEN, &[("kind", "websocket")]) == 1.0
    })
    .await;
    ws.close(None).await.unwrap();
    while let Some(Ok(_)) = within("the close handshake", ws.next()).await {}
    scrape_until(&base, "no open WebSocket", |m| {
        m.get(OPEN, &[("kind", "websocket")]) == 0.0
    })
    .await;

    // gRPC server streams count too.
    let watch = grpc
        .watch_pets(pb::WatchPetsRequest::default())
        .await
        .expect("WatchPets");
    scrape_until(&base, "one open gRPC stream", |m| {
        m.get(OPEN, &[("kind", "grpc")]) == 1.0
    })
    .await;
    drop(watch);
    scrape_until(&base, "no open gRPC stream", |m| {
        m.get(OPEN, &[("kind", "grpc")]) == 0.0
    })
    .await;

    // MQTT: the bridge is connected and has published the events.
    let m = scrape_until(&base, "the MQTT bridge's metrics", |m| {
        m.get("petstore_mqtt_bridge_connected", &[]) == 1.0
            && m.get("petstore_mqtt_bridge_published_total", &[]) >= 4.0
    })
    .await;
    assert_eq!(m.get("petstore_mqtt_bridge_in_flight", &[]), 0.0);

    // Webhooks: three deliveries succeeded; the order's one attempt met a 410, which
    // disabled its endpoint.
    let m = scrape_until(&base, "the webhook outcomes", |m| {
        m.get(
            "petstore_webhook_attempts_total",
            &[("outcome", "succeeded")],
        ) >= 3.0
            && m.get("petstore_webhook_attempts_total", &[("outcome", "failed")]) >= 1.0
            && m.get("petstore_webhook_queue_depth", &[]) == 0.0
    })
    .await;
    let attempts = |outcome| m.get("petstore_webhook_attempts_total", &[("outcome", outcome)]);
    assert_eq!(attempts("succeeded"), 3.0);
    assert_eq!(attempts("failed"), 1.0);
    assert_eq!(attempts("error"), 0.0);
    let messages = |status| m.get("petstore_webhook_messages_total", &[("status", status)]);
    assert_eq!(messages("succeeded"), 3.0);
    assert_eq!(messages("failed"), 1.0);
    assert_eq!(m.get("petstore_webhook_endpoints_disabled_total", &[]), 1.0);
    assert_eq!(
        m.get("petstore_webhook_attempt_duration_seconds_count", &[]),
        4.0
    );

    // MQTT commands are counted once they run; a command without a token is refused.
    let addr = s.mqtt_addr.expect("an MQTT broker");
    let mut device = support::mqtt::Client::start(
        support::mqtt::options(&format!("metrics-{}", std::process::id()), addr),
        None,
    );
    within("the MQTT CONNACK", device.connacks.recv())
        .await
        .unwrap();
    device
        .client
        .publish(
            "petstore/commands/orders",
            rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
            false,
            "{}",
        )
        .await
        .unwrap();
    scrape_until(&base, "the refused MQTT command", |m| {
        m.get(
            REQUESTS,
            &[
                ("protocol", "mqtt"),
                ("operation", "place_order"),
                ("outcome", "unauthenticated"),
            ],
        ) == 1.0
    })
    .await;
    s.shutdown().await.unwrap();
}

#[test]
fn the_parser_reads_labels_with_braces_escapes_and_commas() {
    let text = "# HELP x y\n# TYPE x counter\nx{a=\"GET /p/{id}\",b=\"q\\\"u,o\"} 3\ny 1.5\n";
    let parsed = Scrape(parse(text));
    assert_eq!(
        parsed.get("x", &[("a", "GET /p/{id}"), ("b", "q\"u,o")]),
        3.0
    );
    assert_eq!(parsed.get("y", &[]), 1.5);
    assert_eq!(parsed.get("z", &[]), 0.0);
}

/// The dashboard in `docs/` and the README's table name the metrics the code records,
/// all of them and nothing else.
#[test]
fn the_dashboard_and_the_readme_name_the_recorded_metrics() {
    let known: Vec<&str> = petstore_core::telemetry::METRICS
        .iter()
        .map(|m| m.name)
        .collect();
    let names = |text: &str| -> Vec<String> {
        let mut found = Vec::new();
        let mut rest = text;
        while let Some(i) = rest.find("petstore_") {
            let name: String = rest[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[i + name.len()..];
            // Rust paths in prose (`petstore_core::…`) are not metrics.
            if rest.starts_with("::") {
                continue;
            }
            let base = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(&name)
                .to_owned();
            found.push(base);
        }
        found
    };
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let dashboard = std::fs::read_to_string(format!("{root}/docs/grafana/petstore.json")).unwrap();
    serde_json::from_str::<Value>(&dashboard).expect("the dashboard is JSON");
    for name in names(&dashboard) {
        assert!(
            known.contains(&name.as_str()),
            "the dashboard names `{name}`"
        );
    }
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let documented = names(&readme);
    for &name in &known {
        assert!(
            documented.iter().any(|d| d == name),
            "the README does not list `{name}`"
        );
    }
    for name in documented {
        assert!(known.contains(&name.as_str()), "the README lists `{name}`");
    }
}

/// Refusals of the rate limiter and live subscribers cut off for falling behind, by
/// exact count: a token subject allowed 2 requests a minute makes 6 (every 429 is one
/// `authenticated` rejection; scrapes are anonymous, under their own budget), and a
/// subscriber of a log whose subscribers hold 4 events, not reading while 10 are
/// appended, is cut off once, 6 events behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_rejections_and_subscriber_cutoffs_by_exact_count() {
    use petstore_core::{
        EventFilter, LogConfig, MemoryStore, NewPet, PetStore, ServiceConfig, TokenAuthority,
    };

    let s = petstore_server::start_with_store(
        PetStore::in_memory(),
        petstore_server::ServerArgs {
            rate_limit: true,
            rate_limit_authenticated: 2,
            ..petstore_server::ServerArgs::ephemeral()
        },
    )
    .await
    .expect("server starts");
    let base = s.http_url();
    const REJECTIONS: &str = "petstore_rate_limit_rejections_total";
    let before = scrape(&base).await;
    assert_eq!(before.get(REJECTIONS, &[("caller", "authenticated")]), 0.0);

    let client = reqwest::Client::new();
    let mut refused = 0;
    for _ in 0..6 {
        let answer = client
            .get(format!("{base}/v1/pets"))
            .bearer_auth(&s.dev_token)
            .send()
            .await
            .unwrap();
        match answer.status().as_u16() {
            200 => {}
            429 => refused += 1,
            other => panic!("GET /v1/pets answered {other}"),
        }
    }
    assert!(refused >= 3, "only {refused} of 6 refused at 2 a minute");
    let m = scrape(&base).await;
    assert_eq!(
        m.get(REJECTIONS, &[("caller", "authenticated")]),
        f64::from(refused)
    );
    assert_eq!(m.get(REJECTIONS, &[("caller", "anonymous")]), 0.0);

    // A live subscriber that does not read while 10 events are appended, on a store of
    // its own (the server's dispatcher and bridge follow the server's store, and could
    // fall behind too): the recorder is the process's, so /metrics shows it.
    let config = ServiceConfig::default();
    let store = PetStore::new(
        MemoryStore::new(LogConfig::default().subscriber_buffer(4)),
        TokenAuthority::random(config.token_ttl),
        config,
    );
    let admin = support::system();
    let mut subscription = store
        .subscribe(&admin, None, EventFilter::default())
        .await
        .unwrap();
    for i in 0..10 {
        let pet: NewPet = serde_json::from_value(new_pet(&format!("Flood {i}"))).unwrap();
        store.create_pet(&admin, pet).await.unwrap();
    }
    let cut = within("the lagging subscriber's end", subscription.next())
        .await
        .expect("an item");
    let error = cut.expect_err("cut off");
    assert_eq!(error.kind(), petstore_core::ErrorKind::Lagged, "{error}");
    let m = scrape(&base).await;
    assert_eq!(m.get("petstore_subscriber_cutoffs_total", &[]), 1.0);
    assert_eq!(m.get("petstore_subscriber_lag_events_count", &[]), 1.0);
    assert_eq!(m.get("petstore_subscriber_lag_events_sum", &[]), 6.0);
    s.shutdown().await.unwrap();
}

/// The SQL store's metrics, on a server started on a new SQLite file: 20 concurrent
/// creates are 20 `ok` commits, carried by transactions whose group sizes add up to 20
/// (each transaction timed once), and an update refused for its `If-Match` commits
/// nothing. Only this test writes through a SQL store in this binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_commits_show_in_the_metrics_by_exact_count() {
    use petstore_core::{ErrorKind, NewPet, PetPatch, Principal, Scope};

    let file = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("db-metrics-{}.db", uuid::Uuid::new_v4().simple()));
    let s = petstore_server::start(petstore_server::ServerArgs {
        database_url: Some(format!("sqlite://{}", file.display())),
        ..petstore_server::ServerArgs::ephemeral()
    })
    .await
    .expect("server starts");
    let base = s.http_url();
    let sqlite = [("backend", "sqlite")];
    let ok = [("backend", "sqlite"), ("outcome", "ok")];
    let before = scrape(&base).await;
    let who = Principal::new("metrics-test", Scope::ALL);

    let writes: Vec<_> = (0..20)
        .map(|i| {
            let store = s.store.clone();
            let who = who.clone();
            let pet: NewPet = serde_json::from_value(new_pet(&format!("Db{i}"))).unwrap();
            tokio::spawn(async move { store.create_pet(&who, pet).await })
        })
        .collect();
    let mut pets = Vec::new();
    for w in writes {
        pets.push(w.await.unwrap().expect("the pet is created"));
    }
    let refused = s
        .store
        .update_pet(
            &who,
            &pets[0].id,
            PetPatch::default(),
            Some(pets[0].version + 7),
        )
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::PreconditionFailed, "{refused:?}");

    let after = scrape(&base).await;
    let delta =
        |name: &str, labels: &[(&str, &str)]| after.get(name, labels) - before.get(name, labels);
    assert_eq!(delta("petstore_db_commits_total", &ok), 20.0);
    for outcome in ["stale", "error"] {
        let labels = [("backend", "sqlite"), ("outcome", outcome)];
        assert_eq!(
            delta("petstore_db_commits_total", &labels),
            0.0,
            "{outcome}"
        );
    }
    assert_eq!(delta("petstore_db_commit_group_size_sum", &[]), 20.0);
    let transactions = delta("petstore_db_commit_group_size_count", &[]);
    assert!((1.0..=20.0).contains(&transactions), "{transactions}");
    assert_eq!(
        delta("petstore_db_commit_duration_seconds_count", &sqlite),
        transactions
    );
    let open = after.get(
        "petstore_db_pool_connections",
        &[("backend", "sqlite"), ("state", "open")],
    );
    let idle = after.get(
        "petstore_db_pool_connections",
        &[("backend", "sqlite"), ("state", "idle")],
    );
    assert!(
        (1.0..=10.0).contains(&open) && idle <= open,
        "open {open}, idle {idle}"
    );
    s.shutdown().await.expect("the server stops");
}

/// A client cannot add metric series at will: made-up HTTP methods are one `_OTHER`
/// method, unknown paths one `unmatched` route (answered with a problem and a request
/// id), and gRPC paths the server does not serve one `unknown` method.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_methods_and_paths_add_no_series() {
    const N: usize = 40;
    let s = without_mqtt().await;
    let base = s.http_url();
    let client = reqwest::Client::new();
    for i in 0..N {
        let method = reqwest::Method::from_bytes(format!("MADEUP{i}").as_bytes()).unwrap();
        let response = client
            .request(method, format!("{base}/v1/pets"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405);
        let response = client
            .get(format!("{base}/no-such-path-{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404);
        assert!(response.headers().contains_key("x-request-id"));
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["code"], "no_route", "{problem}");
    }
    let grpc = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let grpc_base = format!("http://{}", s.grpc_addr.expect("gRPC"));
    for path in (0..N)
        .map(|i| format!("/madeup.Service{i}/Call"))
        .chain((0..N).map(|i| format!("/petstore.v1.PetService/MadeUp{i}")))
    {
        let response = grpc
            .post(format!("{grpc_base}{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(vec![0u8; 5])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    let scraped = scrape_until(&base, "the made-up requests counted", |m| {
        m.get(REQUESTS, &[("protocol", "grpc"), ("operation", "unknown")]) >= (2 * N) as f64
    })
    .await;
    assert_at_least(&scraped, "http", "_OTHER /v1/pets", "405", N);
    assert_at_least(&scraped, "http", "GET unmatched", "404", N);
    let operations: Vec<&str> = scraped.0[REQUESTS]
        .iter()
        .map(|s| s.labels["operation"].as_str())
        .collect();
    assert!(
        !operations.iter().any(|o| o.contains("MADEUP")
            || o.contains("no-such-path")
            || o.contains("madeup")
            || o.contains("MadeUp")),
        "{operations:?}"
    );
}

/// At least `n` requests counted in the series of `operation` and `outcome`.
fn assert_at_least(m: &Scrape, protocol: &str, operation: &str, outcome: &str, n: usize) {
    let labels = [
        ("protocol", protocol),
        ("operation", operation),
        ("outcome", outcome),
    ];
    let value = m.get(REQUESTS, &labels);
    assert!(value >= n as f64, "{labels:?}: {value}");
}

/// Every MCP request is counted by method (and tool), with its outcome: a tool call
/// that the tool refuses is a `tool_error`, a protocol error an `error`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_requests_are_counted_by_method_and_outcome() {
    use rmcp::model::{CallToolRequestParams, GetPromptRequestParams, ReadResourceRequestParams};
    let s = without_mqtt().await;
    let base = s.http_url();
    let anonymous = support::mcp::connect(&base, None).await.unwrap();
    let arguments = |v: Value| match v {
        Value::Object(map) => map,
        _ => unreachable!(),
    };
    let search =
        CallToolRequestParams::new("search_pets".to_owned()).with_arguments(arguments(json!({})));
    assert_ne!(
        anonymous.call_tool(search).await.unwrap().is_error,
        Some(true)
    );
    // Writing needs a token: the tool says no.
    let create = CallToolRequestParams::new("create_pet".to_owned())
        .with_arguments(arguments(new_pet("Nobody's")));
    assert_eq!(
        anonymous.call_tool(create).await.unwrap().is_error,
        Some(true)
    );
    let inventory = ReadResourceRequestParams::new("petstore://inventory");
    anonymous.read_resource(inventory).await.unwrap();
    let missing = ReadResourceRequestParams::new("petstore://pets/pet_missing");
    assert!(anonymous.read_resource(missing).await.is_err());
    let prompt = GetPromptRequestParams::new("recommend_pet").with_arguments(arguments(
        json!({ "household": "a flat, two cats already" }),
    ));
    anonymous.get_prompt(prompt).await.unwrap();
    assert!(
        anonymous
            .get_prompt(GetPromptRequestParams::new("no_such_prompt"))
            .await
            .is_err()
    );

    let mcp = |operation: &str, outcome: &str| {
        [
            ("protocol", "mcp".to_owned()),
            ("operation", operation.to_owned()),
            ("outcome", outcome.to_owned()),
        ]
    };
    let expected = [
        (mcp("tools/call search_pets", "ok"), 1.0),
        (mcp("tools/call create_pet", "tool_error"), 1.0),
        (mcp("resources/read", "ok"), 1.0),
        (mcp("resources/read", "error"), 1.0),
        (mcp("prompts/get", "ok"), 1.0),
        (mcp("prompts/get", "error"), 1.0),
    ];
    let scraped = scrape_until(&base, "the MCP requests counted", |m| {
        expected
            .iter()
            .all(|(series, n)| m.get(REQUESTS, &labels(series)) == *n)
    })
    .await;
    for (series, _) in &expected {
        assert_eq!(scraped.get(DURATIONS, &labels(series)), 1.0, "{series:?}");
    }
}

/// Operations over GraphQL's WebSocket are counted when they end, by kind and
/// outcome, as those over HTTP are: a subscription the client stops is `ok`; one the
/// server refuses with an `error` message, or whose result carries errors, `error`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphql_websocket_operations_are_counted_when_they_end() {
    let s = without_mqtt().await;
    let base = s.http_url();
    let url = support::ws::url(&base, "/graphql");
    let mut ws = support::ws::graphql(&url, "graphql-transport-ws")
        .await
        .unwrap();
    support::ws::send(&mut ws, &json!({ "type": "connection_init" })).await;
    support::ws::next_json(&mut ws, |m| m["type"] == "connection_ack").await;
    let subscribe = |id: &str, query: &str| json!({ "type": "subscribe", "id": id, "payload": { "query": query } });
    support::ws::send(
        &mut ws,
        &subscribe("live", "subscription { events { id } }"),
    )
    .await;
    support::ws::send(&mut ws, &subscribe("bad", "subscription { noSuchField }")).await;
    let refused = support::ws::next_json(&mut ws, |m| m["id"] == "bad").await;
    assert_eq!(refused["type"], "error", "{refused}");
    // A result with errors (then `complete`) ends it as an `error`, as over HTTP.
    let since = r#"subscription { events(since: "yesterday") { id } }"#;
    support::ws::send(&mut ws, &subscribe("since", since)).await;
    let next = support::ws::next_json(&mut ws, |m| m["id"] == "since").await;
    assert!(next["payload"]["errors"].is_array(), "{next}");
    support::ws::send(&mut ws, &json!({ "type": "complete", "id": "live" })).await;
    let series = |outcome: &'static str| {
        [
            ("protocol", "graphql"),
            ("operation", "subscription"),
            ("outcome", outcome),
        ]
    };
    let m = scrape_until(&base, "both operations counted", |m| {
        m.get(REQUESTS, &series("ok")) >= 1.0 && m.get(REQUESTS, &series("error")) >= 2.0
    })
    .await;
    assert_eq!(m.get(REQUESTS, &series("ok")), 1.0);
    assert_eq!(m.get(REQUESTS, &series("error")), 2.0);
    assert_eq!(m.get(DURATIONS, &series("ok")), 1.0);
}

/// A server without the MQTT bridge: the bridge's gauges are the process's, and the
/// scripted workload checks them by exact value.
async fn without_mqtt() -> petstore_server::RunningServer {
    start_with(petstore_server::ServerArgs {
        no_mqtt: true,
        ..petstore_server::ServerArgs::ephemeral()
    })
    .await
}
