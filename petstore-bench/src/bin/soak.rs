//! Run with: cargo run --release -p petstore-bench --bin soak -- --minutes 5
//!
//! A bounded soak test of the all-in-one server: starts it in this process (every
//! listener on a free loopback port), then for `--minutes` runs mixed traffic over
//! every protocol at once, on loopback only, with request loops that stop by
//! themselves at the deadline:
//!
//! - REST reads (pets, one pet, inventory, orders) and writes (create, patch, delete
//!   a pet; place, pay and cancel an order), GraphQL queries and mutations, gRPC unary
//!   and server-streaming calls, MCP tool calls, polling of `/v1/events`;
//! - followers of every push pattern: an SSE stream of every event, WebSocket channel
//!   subscriptions and chat, a GraphQL subscription, an MQTT 5 subscriber of
//!   `petstore/events/#`, and a webhook receiver that verifies every signature.
//!
//! It samples the resident memory (`VmRSS` of `/proc/self/status`) every
//! `--sample-secs`, and prints the requests and errors per protocol, and the memory at
//! the start (after the warm-up), at the end and at most. Any error, that is anything
//! other than an intended `429 Too Many Requests`, makes it exit with status 1, and so
//! does memory that did not stay flat (end above start × 1.2 + 16 MiB). Followers also
//! check for gaps: the SSE stream and the poller must see consecutive offsets, the MQTT
//! subscriber every offset, the webhook receiver every order event.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use clap::Parser;
use eventsource_stream::Eventsource as _;
use futures_util::{SinkExt as _, StreamExt as _};
use petstore_core::{NewPet, Principal, ResumeToken};
use petstore_grpc::pb;
use petstore_server::ServerArgs;
use petstore_webhooks::WebhookSecret;
use rmcp::ServiceExt as _;
use rmcp::model::{CallToolRequestParams, ClientConfig};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

#[derive(Debug, Parser)]
#[command(
    about = "Bounded soak of the Pet Store server: mixed traffic over every protocol, memory sampled"
)]
struct Cli {
    /// How long the measured traffic runs (after the warm-up), in minutes.
    #[arg(long, default_value_t = 5.0)]
    minutes: f64,
    /// Traffic before the starting memory sample, in seconds.
    #[arg(long, default_value_t = 30)]
    warmup_secs: u64,
    /// Seconds between two memory samples.
    #[arg(long, default_value_t = 10)]
    sample_secs: u64,
    /// Pause between two requests of a read loop, in milliseconds.
    #[arg(long, default_value_t = 2)]
    read_pace_ms: u64,
    /// Pause between two write cycles of a write loop, in milliseconds.
    #[arg(long, default_value_t = 20)]
    write_pace_ms: u64,
    /// Leave these protocols out (comma-separated names of the summary, e.g. `MQTT`),
    /// to tell which one memory growth comes with.
    #[arg(long, value_delimiter = ',')]
    without: Vec<String>,
}

const PROTOCOLS: [&str; 10] = [
    "REST",
    "GraphQL",
    "gRPC",
    "MCP",
    "polling",
    "SSE",
    "WebSocket",
    "GraphQL-WS",
    "MQTT",
    "webhooks",
];

/// Counts of one protocol: requests made (or messages received, for push patterns),
/// errors, and intended `429`s.
#[derive(Debug, Default)]
struct Counter {
    ops: AtomicU64,
    errors: AtomicU64,
    throttled: AtomicU64,
}

#[derive(Debug)]
struct Stats {
    counters: BTreeMap<&'static str, Counter>,
    /// The first error messages, to show what went wrong.
    samples: Mutex<Vec<String>>,
}

impl Stats {
    fn new() -> Self {
        Self {
            counters: PROTOCOLS.iter().map(|p| (*p, Counter::default())).collect(),
            samples: Mutex::new(Vec::new()),
        }
    }

    fn counter(&self, protocol: &'static str) -> &Counter {
        &self.counters[protocol]
    }

    fn ok(&self, protocol: &'static str) {
        self.counter(protocol).ops.fetch_add(1, Ordering::Relaxed);
    }

    fn throttled(&self, protocol: &'static str) {
        let c = self.counter(protocol);
        c.ops.fetch_add(1, Ordering::Relaxed);
        c.throttled.fetch_add(1, Ordering::Relaxed);
    }

    fn error(&self, protocol: &'static str, what: impl std::fmt::Display) {
        let c = self.counter(protocol);
        c.ops.fetch_add(1, Ordering::Relaxed);
        c.errors.fetch_add(1, Ordering::Relaxed);
        let mut samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        if samples.len() < 20 {
            samples.push(format!("{protocol}: {what}"));
        }
    }

    fn total(&self, pick: impl Fn(&Counter) -> &AtomicU64) -> u64 {
        self.counters
            .values()
            .map(|c| pick(c).load(Ordering::Relaxed))
            .sum()
    }
}

/// What every traffic loop needs.
#[derive(Debug, Clone)]
struct Ctx {
    stats: Arc<Stats>,
    http: reqwest::Client,
    base: String,
    ws_base: String,
    grpc: String,
    mqtt: SocketAddr,
    token: String,
    deadline: Instant,
    read_pace: Duration,
    write_pace: Duration,
}

impl Ctx {
    fn running(&self) -> bool {
        Instant::now() < self.deadline
    }

    /// Sends a request and records the outcome; the JSON body of a 2xx answer (`Null`
    /// when empty).
    async fn call(
        &self,
        protocol: &'static str,
        what: &str,
        request: reqwest::RequestBuilder,
    ) -> Option<Value> {
        self.call_also_ok(protocol, what, request, None).await
    }

    /// [`Ctx::call`], where `also_ok` is a fine answer too (its body is not returned).
    async fn call_also_ok(
        &self,
        protocol: &'static str,
        what: &str,
        request: reqwest::RequestBuilder,
        also_ok: Option<StatusCode>,
    ) -> Option<Value> {
        let (status, body) = self.send(protocol, what, request).await?;
        if status == StatusCode::TOO_MANY_REQUESTS {
            self.stats.throttled(protocol);
            tokio::time::sleep(Duration::from_millis(100)).await;
            return None;
        }
        if Some(status) == also_ok {
            self.stats.ok(protocol);
            return None;
        }
        if !status.is_success() {
            self.stats.error(
                protocol,
                format!("{what}: {status} {}", String::from_utf8_lossy(&body)),
            );
            return None;
        }
        if body.is_empty() {
            self.stats.ok(protocol);
            return Some(Value::Null);
        }
        match serde_json::from_slice(&body) {
            Ok(v) => {
                self.stats.ok(protocol);
                Some(v)
            }
            Err(e) => {
                self.stats
                    .error(protocol, format!("{what}: {status}, not JSON: {e}"));
                None
            }
        }
    }

    /// Sends a request with the token and reads the whole answer; a failure to do
    /// either is recorded as an error.
    async fn send(
        &self,
        protocol: &'static str,
        what: &str,
        request: reqwest::RequestBuilder,
    ) -> Option<(StatusCode, Bytes)> {
        let response = match request.bearer_auth(&self.token).send().await {
            Ok(r) => r,
            Err(e) => {
                self.stats.error(protocol, format!("{what}: {e}"));
                return None;
            }
        };
        let status = response.status();
        match response.bytes().await {
            Ok(body) => Some((status, body)),
            Err(e) => {
                self.stats
                    .error(protocol, format!("{what}: {status}, body cut short: {e}"));
                None
            }
        }
    }

    /// A GraphQL request over HTTP; its `data` when it has no `errors`.
    async fn graphql(&self, query: &str, variables: Value) -> Option<Value> {
        let body = json!({ "query": query, "variables": variables });
        let request = self.http.post(format!("{}/graphql", self.base)).json(&body);
        let (status, body) = self.send("GraphQL", "POST /graphql", request).await?;
        let answer: Value = serde_json::from_slice(&body).unwrap_or_default();
        let errors = &answer["errors"];
        if status == StatusCode::TOO_MANY_REQUESTS || errors.to_string().contains("RATE_LIMITED") {
            self.stats.throttled("GraphQL");
            tokio::time::sleep(Duration::from_millis(100)).await;
            return None;
        }
        if !status.is_success() || !errors.is_null() || answer["data"].is_null() {
            self.stats.error(
                "GraphQL",
                format!("{status} {}", String::from_utf8_lossy(&body)),
            );
            return None;
        }
        self.stats.ok("GraphQL");
        Some(answer["data"].clone())
    }

    fn grpc_request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Ok(bearer) = format!("Bearer {}", self.token).parse() {
            request.metadata_mut().insert("authorization", bearer);
        }
        request
    }

    fn grpc_outcome<T>(&self, what: &str, result: Result<T, tonic::Status>) -> Option<T> {
        match result {
            Ok(v) => {
                self.stats.ok("gRPC");
                Some(v)
            }
            Err(s) if s.code() == tonic::Code::ResourceExhausted => {
                self.stats.throttled("gRPC");
                None
            }
            Err(s) => {
                self.stats.error("gRPC", format!("{what}: {s}"));
                None
            }
        }
    }
}

fn new_pet(name: &str, species: &str) -> Value {
    json!({ "name": name, "species": species, "price": { "amount": "25.00", "currency": "USD" } })
}

// ----- request-response loops ------------------------------------------------------------

async fn rest_reads(ctx: Ctx) {
    while ctx.running() {
        let pets = ctx
            .call(
                "REST",
                "GET /v1/pets",
                ctx.http.get(format!("{}/v1/pets?limit=20", ctx.base)),
            )
            .await;
        if let Some(id) = pets.as_ref().and_then(|p| p["data"][0]["id"].as_str()) {
            // A writer may delete the pet meanwhile: a 404 is a fine answer.
            let request = ctx.http.get(format!("{}/v1/pets/{id}", ctx.base));
            ctx.call_also_ok(
                "REST",
                "GET /v1/pets/{id}",
                request,
                Some(StatusCode::NOT_FOUND),
            )
            .await;
        }
        ctx.call(
            "REST",
            "GET /v1/inventory",
            ctx.http.get(format!("{}/v1/inventory", ctx.base)),
        )
        .await;
        ctx.call(
            "REST",
            "GET /v1/orders",
            ctx.http.get(format!("{}/v1/orders?limit=20", ctx.base)),
        )
        .await;
        tokio::time::sleep(ctx.read_pace).await;
    }
}

async fn rest_writes(ctx: Ctx) {
    let mut i = 0u64;
    while ctx.running() {
        i += 1;
        let created = ctx
            .call(
                "REST",
                "POST /v1/pets",
                ctx.http
                    .post(format!("{}/v1/pets", ctx.base))
                    .json(&new_pet(&format!("Soak{i}"), "dog")),
            )
            .await;
        if let Some(id) = created.as_ref().and_then(|p| p["id"].as_str()) {
            let url = format!("{}/v1/pets/{id}", ctx.base);
            ctx.call(
                "REST",
                "PATCH /v1/pets/{id}",
                ctx.http.patch(&url).json(&json!({ "age": i % 20 })),
            )
            .await;
            ctx.call("REST", "DELETE /v1/pets/{id}", ctx.http.delete(&url))
                .await;
        }
        tokio::time::sleep(ctx.write_pace).await;
    }
}

/// Place, pay and cancel orders of one pet, which is available again after each
/// cycle. Orders are domain state the store keeps, so they come at a modest pace.
async fn rest_orders(ctx: Ctx) {
    let Some(pet) = ctx
        .call(
            "REST",
            "POST /v1/pets",
            ctx.http
                .post(format!("{}/v1/pets", ctx.base))
                .json(&new_pet("SoakOrders", "cat")),
        )
        .await
    else {
        return;
    };
    let pet_id = pet["id"].as_str().unwrap_or_default().to_owned();
    while ctx.running() {
        let order = ctx
            .call(
                "REST",
                "POST /v1/orders",
                ctx.http
                    .post(format!("{}/v1/orders", ctx.base))
                    .json(&json!({ "pet_id": pet_id, "quantity": 1 })),
            )
            .await;
        if let Some(id) = order.as_ref().and_then(|o| o["id"].as_str()) {
            let url = format!("{}/v1/orders/{id}", ctx.base);
            ctx.call(
                "REST",
                "POST /v1/orders/{id}/payment",
                ctx.http
                    .post(format!("{url}/payment"))
                    .json(&json!({ "token": "tok_visa" })),
            )
            .await;
            ctx.call("REST", "GET /v1/orders/{id}", ctx.http.get(&url))
                .await;
            ctx.call(
                "REST",
                "POST /v1/orders/{id}/cancel",
                ctx.http.post(format!("{url}/cancel")),
            )
            .await;
        }
        tokio::time::sleep(ctx.write_pace * 5).await;
    }
}

async fn graphql(ctx: Ctx) {
    const READ: &str =
        "{ pets(first: 10) { nodes { id name status } } inventory { available pending sold } }";
    const CREATE: &str = "mutation($input: NewPetInput!) { createPet(input: $input) { id } }";
    const DELETE: &str = "mutation($id: ID!) { deletePet(id: $id) }";
    let mut i = 0u64;
    let mut last_write = Instant::now();
    while ctx.running() {
        ctx.graphql(READ, json!({})).await;
        if last_write.elapsed() >= ctx.write_pace {
            last_write = Instant::now();
            i += 1;
            let input = new_pet(&format!("SoakGql{i}"), "rabbit");
            if let Some(data) = ctx.graphql(CREATE, json!({ "input": input })).await
                && let Some(id) = data["createPet"]["id"].as_str()
            {
                ctx.graphql(DELETE, json!({ "id": id })).await;
            }
        }
        tokio::time::sleep(ctx.read_pace).await;
    }
}

async fn grpc(ctx: Ctx) {
    let channel = match tonic::transport::Endpoint::from_shared(ctx.grpc.clone()) {
        Ok(endpoint) => match endpoint.connect().await {
            Ok(channel) => channel,
            Err(e) => return ctx.stats.error("gRPC", format!("connect: {e}")),
        },
        Err(e) => return ctx.stats.error("gRPC", format!("endpoint: {e}")),
    };
    let mut pets = pb::pet_service_client::PetServiceClient::new(channel.clone());
    let mut store = pb::store_service_client::StoreServiceClient::new(channel);
    let mut i = 0u64;
    let mut last_write = Instant::now();
    while ctx.running() {
        let request = ctx.grpc_request(pb::GetInventoryRequest::default());
        ctx.grpc_outcome("GetInventory", store.get_inventory(request).await);
        let request = ctx.grpc_request(pb::ListPetsRequest {
            limit: Some(10),
            ..Default::default()
        });
        if let Some(stream) = ctx.grpc_outcome("ListPets", pets.list_pets(request).await) {
            let mut stream = stream.into_inner();
            loop {
                match stream.message().await {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => {
                        ctx.stats.error("gRPC", format!("ListPets stream: {e}"));
                        break;
                    }
                }
            }
        }
        if last_write.elapsed() >= ctx.write_pace {
            last_write = Instant::now();
            i += 1;
            let new = pb::CreatePetRequest {
                name: format!("SoakGrpc{i}"),
                species: "hamster".into(),
                price: Some(pb::Money {
                    amount: "5.00".into(),
                    currency: "USD".into(),
                }),
                ..Default::default()
            };
            let created =
                ctx.grpc_outcome("CreatePet", pets.create_pet(ctx.grpc_request(new)).await);
            if let Some(pet) = created {
                let id = pet.into_inner().id;
                let get = ctx.grpc_request(pb::GetPetRequest { id: id.clone() });
                ctx.grpc_outcome("GetPet", pets.get_pet(get).await);
                let delete = ctx.grpc_request(pb::DeletePetRequest {
                    id,
                    ..Default::default()
                });
                ctx.grpc_outcome("DeletePet", pets.delete_pet(delete).await);
            }
        }
        tokio::time::sleep(ctx.read_pace).await;
    }
}

async fn mcp(ctx: Ctx) {
    let config = StreamableHttpClientTransportConfig::with_uri(format!("{}/mcp", ctx.base))
        .auth_header(ctx.token.clone());
    let client = match ClientConfig::default()
        .serve(StreamableHttpClientTransport::from_config(config))
        .await
    {
        Ok(c) => c,
        Err(e) => return ctx.stats.error("MCP", format!("initialize: {e}")),
    };
    let search = json!({ "species": "dog", "status": "available" })
        .as_object()
        .cloned()
        .unwrap_or_default();
    while ctx.running() {
        for call in [
            CallToolRequestParams::new("search_pets").with_arguments(search.clone()),
            CallToolRequestParams::new("get_inventory"),
        ] {
            let name = call.name.clone();
            match client.call_tool(call).await {
                Ok(result) if result.is_error != Some(true) => ctx.stats.ok("MCP"),
                Ok(result) => ctx
                    .stats
                    .error("MCP", format!("{name}: {:?}", result.content)),
                Err(e) => ctx.stats.error("MCP", format!("{name}: {e}")),
            }
        }
        tokio::time::sleep(ctx.read_pace).await;
    }
    let _ = client.cancel().await;
}

/// Long-polls `/v1/events` from `since`: every event, consecutive offsets.
async fn polling(ctx: Ctx, since: ResumeToken) {
    let mut since = since;
    while ctx.running() {
        let url = format!("{}/v1/events?since={since}&limit=1000&wait=1", ctx.base);
        let Some(page) = ctx
            .call("polling", "GET /v1/events", ctx.http.get(url))
            .await
        else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        for event in page["events"].as_array().into_iter().flatten() {
            let offset = token(&event["offset"]);
            if offset.offset != since.offset + 1 {
                ctx.stats
                    .error("polling", format!("gap: {since} then {offset}"));
            }
            since = offset;
        }
        if let Some(next) = page["next"].as_str().and_then(|n| n.parse().ok()) {
            since = next;
        }
    }
}

fn token(v: &Value) -> ResumeToken {
    v.as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or(ResumeToken::new(0, 0))
}

// ----- push followers --------------------------------------------------------------------

/// The log head once traffic has stopped: followers run until they have seen it.
type Head = tokio::sync::watch::Receiver<Option<u64>>;

/// Whether a follower is done: traffic has stopped and it has seen `last`.
fn caught_up(head: &Head, last: u64) -> bool {
    head.borrow().is_some_and(|h| last >= h)
}

/// Follows `/v1/stream` (every event) from `since`, resuming with `Last-Event-ID`
/// when the stream ends early, until it has seen the final head; every offset must
/// follow the previous one. Returns how many order and payment events it saw.
async fn sse(ctx: Ctx, since: ResumeToken, mut head: Head) -> usize {
    let mut last = since;
    let mut orders = 0;
    let give_up = ctx.deadline + Duration::from_secs(60);
    while !caught_up(&head, last.offset) && Instant::now() < give_up {
        let request = ctx
            .http
            // Named events: the messages are told apart by their `event:` line.
            .get(format!("{}/v1/stream?named_events=true", ctx.base))
            .bearer_auth(&ctx.token)
            .header("last-event-id", last.to_string());
        let response = match request.send().await {
            Ok(r) if r.status().is_success() => r,
            Ok(r) => {
                ctx.stats.error("SSE", format!("status {}", r.status()));
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Err(e) => {
                ctx.stats.error("SSE", format!("connect: {e}"));
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let mut messages = response.bytes_stream().eventsource();
        loop {
            if caught_up(&head, last.offset) {
                return orders;
            }
            let next = tokio::select! {
                m = messages.next() => m,
                _ = head.changed() => continue,
                () = tokio::time::sleep_until(give_up) => break,
            };
            match next {
                Some(Ok(m)) if m.event == "error" || m.event == "reset" => {
                    ctx.stats.error("SSE", format!("{}: {}", m.event, m.data));
                    break;
                }
                Some(Ok(m)) if !m.data.is_empty() && m.event != "message" => {
                    let offset: ResumeToken = m.id.parse().unwrap_or(ResumeToken::new(0, 0));
                    if offset.offset != last.offset + 1 {
                        ctx.stats.error("SSE", format!("gap: {last} then {offset}"));
                    } else {
                        ctx.stats.ok("SSE");
                    }
                    if m.event.starts_with("order.") || m.event.starts_with("payment.") {
                        orders += 1;
                    }
                    last = offset;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    ctx.stats.error("SSE", format!("stream: {e}"));
                    break;
                }
                None => {
                    ctx.stats.error("SSE", "the stream ended");
                    break;
                }
            }
        }
    }
    if !caught_up(&head, last.offset) {
        ctx.stats.error(
            "SSE",
            format!("never caught up with the log (saw up to {last})"),
        );
    }
    orders
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ws_connect(ctx: &Ctx, path: &str, protocol: Option<&str>) -> Option<Ws> {
    let mut request = match format!("{}{path}", ctx.ws_base).into_client_request() {
        Ok(r) => r,
        Err(e) => {
            ctx.stats.error(
                if protocol.is_some() {
                    "GraphQL-WS"
                } else {
                    "WebSocket"
                },
                format!("request: {e}"),
            );
            return None;
        }
    };
    if let Some(p) = protocol
        && let Ok(value) = p.parse()
    {
        request
            .headers_mut()
            .insert("sec-websocket-protocol", value);
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => Some(ws),
        Err(e) => {
            ctx.stats.error(
                if protocol.is_some() {
                    "GraphQL-WS"
                } else {
                    "WebSocket"
                },
                format!("handshake: {e}"),
            );
            None
        }
    }
}

/// A WebSocket following `pets` and `orders`, and a chat client that posts to
/// `support` and receives its own messages.
async fn websocket(ctx: Ctx) {
    let Some(mut ws) = ws_connect(&ctx, &format!("/v1/ws?token={}", ctx.token), None).await else {
        return;
    };
    let Some(mut chat) = ws_connect(&ctx, &format!("/v1/ws/chat?token={}", ctx.token), None).await
    else {
        return;
    };
    for channel in ["pets", "orders"] {
        if let Err(e) = ws
            .send(Message::text(
                json!({ "type": "subscribe", "channel": channel }).to_string(),
            ))
            .await
        {
            return ctx.stats.error("WebSocket", format!("send: {e}"));
        }
    }
    let mut say = tokio::time::interval(Duration::from_millis(100));
    let mut n = 0u64;
    loop {
        let (frame, from_chat) = tokio::select! {
            () = tokio::time::sleep_until(ctx.deadline) => break,
            _ = say.tick() => {
                n += 1;
                let text = json!({ "type": "chat.send", "room": "support", "text": format!("soak {n}") });
                if let Err(e) = chat.send(Message::text(text.to_string())).await {
                    ctx.stats.error("WebSocket", format!("chat send: {e}"));
                    return;
                }
                continue;
            }
            f = ws.next() => (f, false),
            f = chat.next() => (f, true),
        };
        match frame {
            Some(Ok(Message::Text(text))) => {
                let frame: Value = serde_json::from_str(text.as_str()).unwrap_or_default();
                match frame["type"].as_str() {
                    Some("event" | "chat.message" | "chat.sent" | "subscribed") => {
                        ctx.stats.ok("WebSocket")
                    }
                    Some("pong") => {}
                    _ => ctx.stats.error("WebSocket", format!("frame {frame}")),
                }
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(other)) => {
                ctx.stats.error(
                    "WebSocket",
                    format!(
                        "{} connection: {other:?}",
                        if from_chat { "chat" } else { "channel" }
                    ),
                );
                return;
            }
            Some(Err(e)) => {
                ctx.stats.error("WebSocket", format!("{e}"));
                return;
            }
            None => {
                ctx.stats.error("WebSocket", "closed");
                return;
            }
        }
    }
    let _ = ws.close(None).await;
    let _ = chat.close(None).await;
}

/// A GraphQL subscription to order events over graphql-transport-ws.
async fn graphql_ws(ctx: Ctx) {
    let Some(mut ws) = ws_connect(&ctx, "/graphql", Some("graphql-transport-ws")).await else {
        return;
    };
    let init = json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {}", ctx.token) } });
    let query = "subscription { events(types: [\"order.*\", \"payment.*\"]) { id type offset } }";
    let subscribe = json!({ "type": "subscribe", "id": "soak", "payload": { "query": query } });
    for frame in [init, subscribe] {
        if let Err(e) = ws.send(Message::text(frame.to_string())).await {
            return ctx.stats.error("GraphQL-WS", format!("send: {e}"));
        }
    }
    loop {
        let frame = tokio::select! {
            () = tokio::time::sleep_until(ctx.deadline) => break,
            f = ws.next() => f,
        };
        match frame {
            Some(Ok(Message::Text(text))) => {
                let frame: Value = serde_json::from_str(text.as_str()).unwrap_or_default();
                match frame["type"].as_str() {
                    Some("next") if frame["payload"]["errors"].is_null() => {
                        ctx.stats.ok("GraphQL-WS")
                    }
                    Some("connection_ack" | "pong") => {}
                    Some("ping") => {
                        let _ = ws
                            .send(Message::text(json!({ "type": "pong" }).to_string()))
                            .await;
                    }
                    _ => ctx.stats.error("GraphQL-WS", format!("frame {frame}")),
                }
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => {
                ctx.stats
                    .error("GraphQL-WS", format!("connection: {other:?}"));
                return;
            }
        }
    }
    let _ = ws.close(None).await;
}

/// Offsets seen, as a bitmap from the first one (the subscriber may see an event twice,
/// and events on different topics out of order).
#[derive(Debug, Default)]
struct Seen {
    base: Option<u64>,
    bits: Vec<u64>,
    max: u64,
}

impl Seen {
    fn insert(&mut self, offset: u64) {
        let base = *self.base.get_or_insert(offset);
        let Some(i) = offset.checked_sub(base) else {
            return;
        };
        let (word, bit) = ((i / 64) as usize, i % 64);
        if self.bits.len() <= word {
            self.bits.resize(word + 1, 0);
        }
        self.bits[word] |= 1 << bit;
        self.max = self.max.max(offset);
    }

    fn contains(&self, offset: u64) -> bool {
        let Some(i) = self.base.and_then(|b| offset.checked_sub(b)) else {
            return false;
        };
        self.bits
            .get((i / 64) as usize)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    fn missing(&self, through: u64) -> u64 {
        let Some(base) = self.base else { return 0 };
        (base..=through).filter(|o| !self.contains(*o)).count() as u64
    }
}

/// An MQTT 5 subscriber of `petstore/events/#`, until the deadline and then until it
/// has seen `head` (set once traffic stops); returns the offsets it saw.
async fn mqtt(ctx: Ctx, mut head: Head) -> Seen {
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::mqttbytes::v5::Packet;
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};
    let mut options = MqttOptions::new(
        "soak-subscriber",
        ctx.mqtt.ip().to_string(),
        ctx.mqtt.port(),
    );
    options.set_max_packet_size(Some(1024 * 1024));
    // Every event, orders included: admin's (the token is the password).
    options.set_credentials("soak", ctx.token.clone());
    let (client, mut eventloop) = AsyncClient::new(options, 1000);
    let mut seen = Seen::default();
    if let Err(e) = client
        .subscribe("petstore/events/#", QoS::AtLeastOnce)
        .await
    {
        ctx.stats.error("MQTT", format!("subscribe: {e}"));
        return seen;
    }
    let mut subscribed = false;
    loop {
        if caught_up(&head, seen.max) {
            break;
        }
        let event = tokio::select! {
            e = eventloop.poll() => e,
            _ = head.changed() => continue,
            () = tokio::time::sleep_until(ctx.deadline + Duration::from_secs(60)) => {
                ctx.stats.error("MQTT", format!("never caught up with the log (saw up to {})", seen.max));
                break;
            }
        };
        match event {
            Ok(Event::Incoming(Packet::SubAck(_))) => subscribed = true,
            Ok(Event::Incoming(Packet::Publish(p))) if subscribed => {
                let envelope: Value = serde_json::from_slice(&p.payload).unwrap_or_default();
                let offset = token(&envelope["offset"]);
                if offset.offset == 0 {
                    ctx.stats
                        .error("MQTT", format!("not an envelope on {:?}", p.topic));
                } else {
                    ctx.stats.ok("MQTT");
                    seen.insert(offset.offset);
                }
            }
            Ok(_) => {}
            Err(e) => {
                ctx.stats.error("MQTT", format!("connection: {e}"));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let _ = client.disconnect().await;
    seen
}

// ----- the webhook receiver --------------------------------------------------------------

#[derive(Debug)]
struct Receiver {
    stats: Arc<Stats>,
    secret: Mutex<Option<WebhookSecret>>,
    ids: Mutex<BTreeSet<String>>,
}

async fn hook(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let secret = r
        .secret
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let Some(secret) = secret else {
        r.stats.error("webhooks", "a delivery before registration");
        return StatusCode::SERVICE_UNAVAILABLE;
    };
    match secret.verify(&headers, &body, Duration::from_secs(300)) {
        Ok(verified) => {
            let mut ids = r.ids.lock().unwrap_or_else(PoisonError::into_inner);
            ids.insert(verified.id);
            r.stats.ok("webhooks");
            StatusCode::NO_CONTENT
        }
        Err(e) => {
            r.stats.error("webhooks", format!("signature: {e:?}"));
            StatusCode::UNAUTHORIZED
        }
    }
}

// ----- memory ----------------------------------------------------------------------------

/// Resident memory of this process, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

// ----- main ------------------------------------------------------------------------------

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter("warn")
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let started = std::time::Instant::now();
    let running = petstore_server::start(ServerArgs::ephemeral()).await?;
    let store = running.store.clone();
    let base = running.http_url();
    let stats = Arc::new(Stats::new());

    // Fill the event log up to its retention first, so that its (bounded) memory is in
    // use before the first sample: what grows afterwards is what leaks.
    let filler = Principal::system("soak-prefill");
    for i in 0..5_000 {
        let pet: NewPet = serde_json::from_value(new_pet(&format!("Prefill{i}"), "fish"))?;
        let pet = store.create_pet(&filler, pet).await?;
        store.delete_pet(&filler, &pet.id, None).await?;
    }

    // The webhook receiver, registered for order and payment events.
    let receiver = Arc::new(Receiver {
        stats: stats.clone(),
        secret: Mutex::new(None),
        ids: Mutex::new(BTreeSet::new()),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hook_addr = listener.local_addr()?;
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state(receiver.clone());
    let hook_server = tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::new();
    let endpoint: Value = http
        .post(format!("{base}/v1/webhooks"))
        .bearer_auth(&running.dev_token)
        .json(&json!({ "url": format!("http://{hook_addr}/hook"), "events": ["order.*", "payment.*"] }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let endpoint_id = endpoint["id"].as_str().context("endpoint id")?.to_owned();
    let secret: WebhookSecret = endpoint["secret"]
        .as_str()
        .context("endpoint secret")?
        .parse()?;
    *receiver
        .secret
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = Some(secret);

    let warmup = Duration::from_secs(cli.warmup_secs);
    let measured = Duration::from_secs_f64(cli.minutes.max(0.0) * 60.0);
    let ctx = Ctx {
        stats: stats.clone(),
        http: http.clone(),
        base: base.clone(),
        ws_base: format!("ws://{}", running.http_addr),
        grpc: format!("http://{}", running.grpc_addr.context("gRPC listener")?),
        mqtt: running.mqtt_addr.context("MQTT broker")?,
        token: running.dev_token.clone(),
        deadline: Instant::now() + warmup + measured,
        read_pace: Duration::from_millis(cli.read_pace_ms),
        write_pace: Duration::from_millis(cli.write_pace_ms),
    };
    let head = store.head().await?;
    let (head_tx, head_rx) = tokio::sync::watch::channel(None);
    let on = |name: &str| !cli.without.iter().any(|w| w.eq_ignore_ascii_case(name));
    let mqtt_task = on("MQTT").then(|| tokio::spawn(mqtt(ctx.clone(), head_rx.clone())));
    let sse_task = tokio::spawn(sse(ctx.clone(), head, head_rx));
    let mut loops = JoinSet::new();
    if on("REST") {
        loops.spawn(rest_reads(ctx.clone()));
        loops.spawn(rest_reads(ctx.clone()));
        loops.spawn(rest_writes(ctx.clone()));
        loops.spawn(rest_orders(ctx.clone()));
    }
    if on("GraphQL") {
        loops.spawn(graphql(ctx.clone()));
    }
    if on("gRPC") {
        loops.spawn(grpc(ctx.clone()));
    }
    if on("MCP") {
        loops.spawn(mcp(ctx.clone()));
    }
    if on("polling") {
        loops.spawn(polling(ctx.clone(), head));
    }
    if on("WebSocket") {
        loops.spawn(websocket(ctx.clone()));
    }
    if on("GraphQL-WS") {
        loops.spawn(graphql_ws(ctx.clone()));
    }

    eprintln!("soak: warming up for {warmup:?}, then {measured:?} of mixed traffic");
    tokio::time::sleep(warmup).await;
    let rss_start = rss_kib();
    let ops_start = stats.total(|c| &c.ops);
    let measuring = Instant::now();
    let mut rss_max = rss_start;
    let mut samples = vec![(0u64, rss_start)];
    eprintln!("soak: t=0s rss={} (after warm-up)", mib(rss_start));
    while Instant::now() + Duration::from_secs(cli.sample_secs) <= ctx.deadline {
        tokio::time::sleep(Duration::from_secs(cli.sample_secs)).await;
        let rss = rss_kib();
        rss_max = rss_max.max(rss);
        let t = measuring.elapsed().as_secs();
        samples.push((t, rss));
        eprintln!(
            "soak: t={t}s rss={} ops={} errors={}",
            mib(rss),
            stats.total(|c| &c.ops),
            stats.total(|c| &c.errors)
        );
    }
    tokio::time::sleep_until(ctx.deadline).await;
    let rss_end = rss_kib();
    rss_max = rss_max.max(rss_end);
    let elapsed = measuring.elapsed();
    let ops_measured = stats.total(|c| &c.ops) - ops_start;

    // Traffic stops by itself at the deadline; then the followers catch up.
    while let Some(done) = tokio::time::timeout(Duration::from_secs(60), loops.join_next())
        .await
        .ok()
        .flatten()
    {
        if let Err(e) = done {
            stats.error("REST", format!("a traffic loop panicked: {e}"));
        }
    }
    let final_head = store.head().await?;
    head_tx.send_replace(Some(final_head.offset));
    if let Some(task) = mqtt_task {
        let missing = task.await.unwrap_or_default().missing(final_head.offset);
        if missing > 0 {
            stats.error("MQTT", format!("{missing} offsets never delivered"));
        }
    }
    // Webhooks: every order and payment event the SSE follower saw was delivered.
    let order_events = sse_task.await.unwrap_or_default();
    let delivered = within_secs(
        60,
        || {
            receiver
                .ids
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .len()
        },
        order_events,
    )
    .await;
    if delivered != order_events {
        stats.error(
            "webhooks",
            format!("{delivered} distinct deliveries for {order_events} order and payment events"),
        );
    }
    let endpoint: Value = http
        .get(format!("{base}/v1/webhooks/{endpoint_id}"))
        .bearer_auth(&running.dev_token)
        .send()
        .await?
        .json()
        .await?;
    if endpoint["enabled"] != true || !endpoint["last_gap"].is_null() {
        stats.error("webhooks", format!("endpoint state {endpoint}"));
    }
    running.shutdown().await?;
    hook_server.abort();

    // The summary.
    let flat = (rss_end as f64) <= rss_start as f64 * 1.2 + 16.0 * 1024.0;
    println!(
        "soak summary ({} warm-up + {:.1} min measured; {:.0} s in all)",
        secs(warmup),
        elapsed.as_secs_f64() / 60.0,
        started.elapsed().as_secs_f64()
    );
    println!(
        "{:<11} {:>10} {:>8} {:>8}",
        "protocol", "requests", "errors", "429s"
    );
    for (name, c) in &stats.counters {
        println!(
            "{name:<11} {:>10} {:>8} {:>8}",
            c.ops.load(Ordering::Relaxed),
            c.errors.load(Ordering::Relaxed),
            c.throttled.load(Ordering::Relaxed)
        );
    }
    let errors = stats.total(|c| &c.errors);
    println!(
        "{:<11} {:>10} {:>8} {:>8}",
        "total",
        stats.total(|c| &c.ops),
        errors,
        stats.total(|c| &c.throttled)
    );
    println!(
        "requests/messages during the measured window: {ops_measured} ({:.0}/s); events appended in all: {}",
        ops_measured as f64 / elapsed.as_secs_f64().max(1.0),
        final_head.offset
    );
    println!(
        "RSS: start {} (after warm-up), end {}, max {}; {}",
        mib(rss_start),
        mib(rss_end),
        mib(rss_max),
        if flat {
            "flat (end <= start x 1.2 + 16 MiB)"
        } else {
            "NOT flat (end > start x 1.2 + 16 MiB)"
        }
    );
    println!(
        "RSS samples (s: MiB): {}",
        samples
            .iter()
            .map(|(t, r)| format!("{t}: {:.1}", *r as f64 / 1024.0))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let shown = stats
        .samples
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    for sample in &shown {
        println!("error: {sample}");
    }
    if errors > 0 || !flat {
        std::process::exit(1);
    }
    Ok(())
}

/// Waits up to `secs` for `count()` to reach `want` (when known); the last count.
async fn within_secs(secs: u64, count: impl Fn() -> usize, want: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let n = count();
        if n >= want || Instant::now() >= deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn secs(d: Duration) -> String {
    format!("{} s", d.as_secs())
}
