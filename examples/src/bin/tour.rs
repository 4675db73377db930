//! Run with: cargo run -p petstore-examples --bin tour
//!
//! Starts the whole server in-process, listens on every push pattern (SSE, WebSocket,
//! GraphQL subscription, gRPC watch, MQTT, webhook, polling), places ONE order over
//! REST, and shows that single order arriving everywhere, with the latency of each
//! and the same event id and offset. Exits non-zero if any pattern misses it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use clap::Parser;
use eventsource_stream::Eventsource;
use futures_util::{SinkExt, StreamExt};
use petstore_examples::client::check;
use petstore_grpc::pb;
use petstore_server::ServerArgs;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

#[derive(Debug, Parser)]
#[command(about = "One order, observed over every push pattern")]
struct Cli {
    /// How long each pattern may take to deliver.
    #[arg(long, default_value_t = 15)]
    timeout_secs: u64,
}

/// What one pattern saw.
struct Seen {
    at: Instant,
    id: String,
    offset: String,
}

type Ready = mpsc::Sender<&'static str>;

fn seen(envelope: &Value) -> anyhow::Result<Seen> {
    Ok(Seen {
        at: Instant::now(),
        id: envelope["id"]
            .as_str()
            .context("event without id")?
            .to_owned(),
        offset: envelope["offset"]
            .as_str()
            .context("event without offset")?
            .to_owned(),
    })
}

async fn sse(base: String, token: String, since: String, ready: Ready) -> anyhow::Result<Seen> {
    let resp = reqwest::Client::new()
        .get(format!("{base}/v1/stream/orders"))
        .bearer_auth(token)
        .header("last-event-id", since)
        .send()
        .await?;
    ensure!(resp.status().is_success(), "SSE: HTTP {}", resp.status());
    ready.send("sse").await?;
    let mut events = resp.bytes_stream().eventsource();
    while let Some(ev) = events.next().await {
        let ev = ev?;
        if ev.data.is_empty() {
            continue;
        }
        // No `event:` line (the `onmessage` form): the envelope's `type` names it.
        let envelope: Value = serde_json::from_str(&ev.data)?;
        if envelope["type"] == "order.created" {
            return seen(&envelope);
        }
    }
    bail!("SSE stream ended")
}

async fn websocket(
    ws_base: String,
    token: String,
    since: String,
    ready: Ready,
) -> anyhow::Result<Seen> {
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("{ws_base}/v1/ws?token={token}")).await?;
    ws.send(Message::text(
        json!({"type": "subscribe", "channel": "orders", "since": since}).to_string(),
    ))
    .await?;
    ready.send("websocket").await?;
    while let Some(frame) = ws.next().await {
        if let Message::Text(t) = frame? {
            let v: Value = serde_json::from_str(&t)?;
            if v["type"] == "event" && v["event"]["type"] == "order.created" {
                return seen(&v["event"]);
            }
            if v["type"] == "error" {
                bail!("WebSocket error frame: {t}");
            }
        }
    }
    bail!("WebSocket closed")
}

async fn graphql(
    ws_base: String,
    token: String,
    since: String,
    ready: Ready,
) -> anyhow::Result<Seen> {
    let mut request = format!("{ws_base}/graphql").into_client_request()?;
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "graphql-transport-ws".parse()?);
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await?;
    let text = |v: Value| Message::text(v.to_string());
    ws.send(text(
        json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {token}")}}),
    ))
    .await?;
    ws.send(text(json!({"id": "tour", "type": "subscribe", "payload": {
        "query": "subscription($since: String) { events(types: [\"order.created\"], since: $since) { id offset } }",
        "variables": {"since": since}
    }})))
    .await?;
    ready.send("graphql").await?;
    while let Some(frame) = ws.next().await {
        if let Message::Text(t) = frame? {
            let v: Value = serde_json::from_str(&t)?;
            match v["type"].as_str() {
                Some("next") => return seen(&v["payload"]["data"]["events"]),
                Some("ping") => ws.send(text(json!({"type": "pong"}))).await?,
                Some("error") => bail!("GraphQL error: {t}"),
                _ => {}
            }
        }
    }
    bail!("GraphQL socket closed")
}

async fn grpc(
    endpoint: String,
    token: String,
    since: String,
    ready: Ready,
) -> anyhow::Result<Seen> {
    let mut client = pb::store_service_client::StoreServiceClient::connect(endpoint).await?;
    let mut request = tonic::Request::new(pb::WatchOrdersRequest {
        since: Some(since),
        ..Default::default()
    });
    // Order events need a token.
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    let mut stream = client.watch_orders(request).await?.into_inner();
    ready.send("grpc").await?;
    while let Some(event) = stream.message().await? {
        if event.r#type == "order.created" {
            return Ok(Seen {
                at: Instant::now(),
                id: event.id,
                offset: event.offset,
            });
        }
    }
    bail!("gRPC stream ended")
}

async fn mqtt(addr: std::net::SocketAddr, token: String, ready: Ready) -> anyhow::Result<Seen> {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let mut options = MqttOptions::new(
        format!("tour-{}", std::process::id()),
        addr.ip().to_string(),
        addr.port(),
    );
    // `orders/new` carries every customer's orders: admin's (the token is the password).
    options.set_credentials("tour", token);
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    client
        .subscribe("petstore/orders/new", QoS::AtLeastOnce)
        .await?;
    loop {
        match eventloop.poll().await? {
            Event::Incoming(Packet::SubAck(_)) => ready.send("mqtt").await?,
            Event::Incoming(Packet::Publish(p)) => {
                return seen(&serde_json::from_slice(&p.payload)?);
            }
            _ => {}
        }
    }
}

struct Hook {
    secret: std::sync::OnceLock<petstore_webhooks::WebhookSecret>,
    first: std::sync::Mutex<Option<oneshot::Sender<Seen>>>,
}

async fn receive(
    axum::extract::State(hook): axum::extract::State<Arc<Hook>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let Some(secret) = hook.secret.get() else {
        return StatusCode::SERVICE_UNAVAILABLE;
    };
    if secret
        .verify(&headers, &body, Duration::from_secs(300))
        .is_err()
    {
        return StatusCode::UNAUTHORIZED;
    }
    let first = hook.first.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let (Ok(v), Some(tx)) = (serde_json::from_slice::<Value>(&body), first)
        && let Ok(s) = seen(&v)
    {
        let _ = tx.send(s);
    }
    StatusCode::NO_CONTENT
}

async fn webhook(base: String, token: String, ready: Ready) -> anyhow::Result<Seen> {
    let http = reqwest::Client::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = oneshot::channel::<Seen>();
    let hook = Arc::new(Hook {
        secret: std::sync::OnceLock::new(),
        first: std::sync::Mutex::new(Some(tx)),
    });
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(hook.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let endpoint = check(
        http.post(format!("{base}/v1/webhooks"))
            .bearer_auth(&token)
            .json(&json!({"url": format!("http://{addr}/hook"), "events": ["order.created"]}))
            .send()
            .await?,
    )
    .await?;
    let parsed = endpoint["secret"]
        .as_str()
        .context("no secret")?
        .parse()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let _ = hook.secret.set(parsed);
    ready.send("webhook").await?;
    let result = rx.await.context("receiver stopped");
    server.abort();
    result
}

async fn polling(base: String, token: String, since: String, ready: Ready) -> anyhow::Result<Seen> {
    let http = reqwest::Client::new();
    ready.send("polling").await?;
    let mut since = since;
    loop {
        let page = check(
            http.get(format!(
                "{base}/v1/events?since={since}&types=order.created&wait=10"
            ))
            .bearer_auth(&token)
            .send()
            .await?,
        )
        .await?;
        if let Some(event) = page["events"].as_array().and_then(|e| e.first()) {
            return seen(event);
        }
        since = page["next"].as_str().context("no next")?.to_owned();
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let limit = Duration::from_secs(cli.timeout_secs);
    println!("starting the Pet Store in-process on free ports...");
    let running = petstore_server::start(ServerArgs::ephemeral()).await?;
    let base = running.http_url();
    let ws_base = base.replacen("http://", "ws://", 1);
    let token = running.dev_token.clone();
    let since = running.store.head().await?.to_string();
    let grpc_url = format!("http://{}", running.grpc_addr.context("gRPC is off")?);
    let mqtt_addr = running.mqtt_addr.context("MQTT is off")?;

    let (ready_tx, mut ready_rx) = mpsc::channel(8);
    type Watch = tokio::task::JoinHandle<anyhow::Result<Seen>>;
    let watchers: Vec<(&str, Watch)> = vec![
        (
            "SSE",
            tokio::spawn(sse(
                base.clone(),
                token.clone(),
                since.clone(),
                ready_tx.clone(),
            )),
        ),
        (
            "WebSocket",
            tokio::spawn(websocket(
                ws_base.clone(),
                token.clone(),
                since.clone(),
                ready_tx.clone(),
            )),
        ),
        (
            "GraphQL subscription",
            tokio::spawn(graphql(
                ws_base.clone(),
                token.clone(),
                since.clone(),
                ready_tx.clone(),
            )),
        ),
        (
            "gRPC WatchOrders",
            tokio::spawn(grpc(
                grpc_url,
                token.clone(),
                since.clone(),
                ready_tx.clone(),
            )),
        ),
        (
            "MQTT petstore/orders/new",
            tokio::spawn(mqtt(mqtt_addr, token.clone(), ready_tx.clone())),
        ),
        (
            "webhook",
            tokio::spawn(webhook(base.clone(), token.clone(), ready_tx.clone())),
        ),
        (
            "polling /v1/events",
            tokio::spawn(polling(
                base.clone(),
                token.clone(),
                since.clone(),
                ready_tx.clone(),
            )),
        ),
    ];
    drop(ready_tx);
    for _ in 0..watchers.len() {
        let who = tokio::time::timeout(limit, ready_rx.recv())
            .await
            .context("a listener did not get ready")?;
        who.context("a listener failed before it was ready")?;
    }

    // One order, over REST.
    let http = reqwest::Client::new();
    let pets = check(
        http.get(format!("{base}/v1/pets?status=available&limit=1"))
            .send()
            .await?,
    )
    .await?;
    let pet_id = pets["data"][0]["id"]
        .as_str()
        .context("no available pet")?
        .to_owned();
    let t0 = Instant::now();
    let order = check(
        http.post(format!("{base}/v1/orders"))
            .bearer_auth(&token)
            .json(&json!({"pet_id": pet_id, "quantity": 1}))
            .send()
            .await?,
    )
    .await?;
    println!(
        "placed order {} for {pet_id} over REST\n",
        order["id"].as_str().unwrap_or("?")
    );

    let mut ids = Vec::new();
    let mut failed = false;
    println!(
        "{:<26} {:>10}  {:<36} offset",
        "pattern", "latency", "event id"
    );
    for (name, task) in watchers {
        match tokio::time::timeout(limit, task).await {
            Ok(Ok(Ok(s))) => {
                let ms = s.at.saturating_duration_since(t0).as_secs_f64() * 1000.0;
                println!("{name:<26} {ms:>8.1}ms  {:<36} {}", s.id, s.offset);
                ids.push((s.id, s.offset));
            }
            Ok(Ok(Err(e))) => {
                println!("{name:<26} FAILED: {e:#}");
                failed = true;
            }
            Ok(Err(e)) => {
                println!("{name:<26} FAILED: {e}");
                failed = true;
            }
            Err(_) => {
                println!("{name:<26} FAILED: nothing within {limit:?}");
                failed = true;
            }
        }
    }
    ids.dedup();
    let same = ids.len() == 1;
    let verdict = match (failed, same) {
        (false, true) => "every pattern delivered the same event (same id, same offset)",
        (true, _) => "some patterns did not deliver the event",
        (false, false) => "the patterns disagree on the event",
    };
    println!("\n{verdict}");
    running.shutdown().await?;
    ensure!(!failed && same, "the tour failed");
    Ok(())
}
