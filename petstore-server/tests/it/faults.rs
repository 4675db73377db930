//! Faults, end to end: the MQTT bridge's link to the broker cut mid-burst, a webhook
//! receiver that is down and then back, SSE and WebSocket clients dropped mid-stream
//! and resumed while events keep coming, and a graceful shutdown under load.
//!
//! The truth every test compares with is the event log itself (`PetStore::events`),
//! read after the fact. Every wait is on a condition, bounded by a timeout.
//!
//! The broker's own restart mid-burst is covered by petstore-mqtt's tests (against a
//! Mosquitto they spawn); here the whole server runs, writes come over REST and gRPC,
//! and both the bridge and a persistent-session subscriber lose their link.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use eventsource_stream::Eventsource as _;
use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;
use petstore_core::{Channel, EventFilter, PetStore, Principal, ResumeToken, Scope, TypePattern};
use petstore_grpc::pb;
use petstore_server::{RunningServer, SHUTDOWN_GRACE, ServerArgs};
use petstore_webhooks::{WebhookConfig, WebhookSecret, Webhooks};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::support::state::log_after;
use crate::support::{WAIT, new_pet, serve, start, start_with, system, until, within};
use crate::support::{grpc as grpc_client, mqtt as mqtt_client, sse as sse_client, ws};

fn grpc_pet(name: &str) -> pb::CreatePetRequest {
    pb::CreatePetRequest {
        name: name.to_owned(),
        species: "cat".to_owned(),
        price: Some(pb::Money {
            amount: "11.00".to_owned(),
            currency: "USD".to_owned(),
        }),
        ..Default::default()
    }
}

/// `POST /v1/pets`; the new pet's id.
async fn rest_create(http: &reqwest::Client, base: &str, token: &str, name: &str) -> String {
    let response = http
        .post(format!("{base}/v1/pets"))
        .bearer_auth(token)
        .json(&new_pet(name))
        .send()
        .await
        .expect("POST /v1/pets");
    assert_eq!(response.status(), 201, "POST /v1/pets {name}");
    let pet: Value = response.json().await.expect("a pet");
    pet["id"].as_str().expect("id").to_owned()
}

fn offset_of(envelope: &Value) -> ResumeToken {
    envelope["offset"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("an envelope with an offset: {envelope}"))
}

// ----- a link that can be cut ---------------------------------------------------------

/// A TCP link to `target` that the test cuts and restores. While cut, open connections
/// are closed and new ones are accepted and closed at once: the far side looks down.
struct Link {
    addr: SocketAddr,
    up: watch::Sender<bool>,
    /// Connections forwarded to the target.
    forwarded: Arc<AtomicUsize>,
    /// Connections closed at once because the link was cut.
    refused: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Link {
    async fn start(target: SocketAddr) -> Link {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the link");
        let addr = listener.local_addr().expect("address");
        let (up, state) = watch::channel(true);
        let forwarded = Arc::new(AtomicUsize::new(0));
        let refused = Arc::new(AtomicUsize::new(0));
        let (f, r) = (forwarded.clone(), refused.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !*state.borrow() {
                    r.fetch_add(1, Ordering::SeqCst);
                    continue;
                }
                f.fetch_add(1, Ordering::SeqCst);
                let mut state = state.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        // Cut, or the link is gone: both sockets close.
                        _ = state.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Link {
            addr,
            up,
            forwarded,
            refused,
            task,
        }
    }

    fn cut(&self) {
        self.up.send_replace(false);
    }

    fn restore(&self) {
        self.up.send_replace(true);
    }

    fn forwarded(&self) -> usize {
        self.forwarded.load(Ordering::SeqCst)
    }

    fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
        self.up.send_replace(false);
    }
}

// ----- 1. the MQTT bridge's link cut mid-burst -----------------------------------------

/// An MQTT 5 device with a persistent session (clean start off, one-hour expiry) that
/// reconnects by itself, like a real one.
struct Device {
    mqtt: mqtt_client::Client,
}

impl Device {
    async fn persistent(addr: SocketAddr, id: &str) -> Device {
        let mut options = mqtt_client::options(id, addr);
        options.set_clean_start(false);
        options.set_session_expiry_interval(Some(3600));
        options.set_max_packet_size(Some(1024 * 1024));
        let mut mqtt = mqtt_client::Client::start(options, None);
        within("the device's CONNACK", mqtt.connacks.recv())
            .await
            .expect("event loop runs");
        Device { mqtt }
    }

    async fn subscribe(&mut self, filter: &str) {
        self.mqtt.subscribe(filter).await;
    }

    /// The next message that is JSON (an event envelope); `None` once the client is gone.
    async fn envelope(&mut self) -> Option<Value> {
        loop {
            let publish = self.mqtt.publishes.recv().await?;
            if let Ok(envelope) = serde_json::from_slice::<Value>(&publish.payload) {
                return Some(envelope);
            }
        }
    }

    /// An envelope already received, if any.
    fn try_envelope(&mut self) -> Option<Value> {
        while let Ok(publish) = self.mqtt.publishes.try_recv() {
            if let Ok(envelope) = serde_json::from_slice::<Value>(&publish.payload) {
                return Some(envelope);
            }
        }
        None
    }

    /// Takes every envelope received so far into `seen` (offsets of `epoch` only: a
    /// shared broker may carry other servers' events).
    fn drain(&mut self, epoch: u64, seen: &mut BTreeSet<u64>) {
        while let Some(envelope) = self.try_envelope() {
            let offset = offset_of(&envelope);
            if offset.epoch == epoch {
                seen.insert(offset.offset);
            }
        }
    }

    /// Waits until every offset of `expected` has been received.
    async fn see_all(&mut self, epoch: u64, seen: &mut BTreeSet<u64>, expected: &BTreeSet<u64>) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !expected.is_subset(seen) {
            match tokio::time::timeout_at(deadline, self.envelope()).await {
                Ok(Some(envelope)) => {
                    let offset = offset_of(&envelope);
                    if offset.epoch == epoch {
                        seen.insert(offset.offset);
                    }
                }
                _ => break,
            }
        }
        let missing: Vec<_> = expected.difference(seen).collect();
        assert!(
            missing.is_empty(),
            "offsets never delivered over MQTT: {missing:?}"
        );
    }
}

/// The broker the test's links lead to, and the bridge's credentials there: the CI
/// Mosquitto (open to anyone) when `PETSTORE_TEST_MOSQUITTO_URL` names one, else an
/// embedded rumqttd of its own.
async fn broker_addr() -> (SocketAddr, Option<(String, String)>) {
    if let Ok(url) = std::env::var("PETSTORE_TEST_MOSQUITTO_URL")
        && !url.is_empty()
    {
        let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
        let mut found = tokio::net::lookup_host(rest.trim_end_matches('/'))
            .await
            .expect("broker address");
        return (found.next().expect("the broker resolves"), None);
    }
    // Its own store: the device reads pet events anonymously, the bridge logs in.
    let broker = petstore_mqtt::broker::EmbeddedBroker::start(
        petstore_core::PetStore::in_memory(),
        petstore_mqtt::broker::BrokerConfig::default()
            .addr("127.0.0.1:0".parse().expect("address")),
    )
    .await
    .expect("the embedded broker starts");
    let (user, password) = broker.bridge_credentials();
    (broker.addr(), Some((user, password.expose().to_owned())))
}

/// The server's bridge and a persistent-session device both lose their link to the
/// broker in the middle of a burst of writes (REST and gRPC), which goes on while they
/// are away; once the links return, the device has received every event of the burst.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_links_cut_mid_burst_lose_no_event() {
    let (broker, login) = broker_addr().await;
    let bridge_link = Link::start(broker).await;
    let device_link = Link::start(broker).await;
    let (mqtt_username, mqtt_password) = login.unzip();
    let s = start_with(ServerArgs {
        mqtt_url: Some(format!("mqtt://{}", bridge_link.addr)),
        mqtt_username,
        mqtt_password,
        ..ServerArgs::ephemeral()
    })
    .await;
    let epoch = s.store.head().await.unwrap().epoch;
    let id = format!(
        "faults-device-{}-{}",
        std::process::id(),
        bridge_link.addr.port()
    );
    let mut device = Device::persistent(device_link.addr, &id).await;
    // The burst is all new pets (events open to anonymous readers).
    device.subscribe("petstore/events/pet.created").await;

    // Ready once the bridge carries a new pet to the device.
    let http = reqwest::Client::new();
    let base = s.http_url();
    let marker = rest_create(&http, &base, &s.dev_token, "Marker").await;
    within("the marker event over MQTT", async {
        loop {
            let envelope = device.envelope().await.expect("device runs");
            if envelope["subject"] == marker.as_str() {
                return;
            }
        }
    })
    .await;
    let start = s.store.head().await.unwrap();

    // The burst: 60 writes, a pause while the links are cut, 90 more while they are down.
    let (cut_tx, cut_rx) = tokio::sync::oneshot::channel::<()>();
    let writer = {
        let token = s.dev_token.clone();
        let grpc = format!("http://{}", s.grpc_addr.expect("gRPC is on"));
        tokio::spawn(async move {
            let mut pets =
                pb::pet_service_client::PetServiceClient::new(grpc_client::connect(grpc).await);
            let mut cut = Some(cut_rx);
            for i in 0..150 {
                if i == 60
                    && let Some(cut) = cut.take()
                {
                    cut.await.expect("the test cuts the links");
                }
                let name = format!("Burst{i}");
                if i % 2 == 0 {
                    rest_create(&http, &base, &token, &name).await;
                } else {
                    pets.create_pet(grpc_client::bearer(grpc_pet(&name), Some(&token)))
                        .await
                        .expect("CreatePet");
                }
            }
        })
    };
    let mut seen = BTreeSet::new();
    within("20 burst events over MQTT", async {
        while seen.range(start.offset + 1..).count() < 20 {
            device.drain(epoch, &mut seen);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    bridge_link.cut();
    device_link.cut();
    let seen_at_cut = seen.range(start.offset + 1..).count();
    cut_tx.send(()).expect("the writer waits");
    // Writers never wait for MQTT: the rest of the burst lands while the links are down.
    within("the rest of the burst", writer)
        .await
        .expect("the writer");
    let head = s.store.head().await.unwrap();
    assert_eq!(head.offset - start.offset, 150, "one event per write");
    until("the bridge and the device to try again", || {
        bridge_link.refused() > 0 && device_link.refused() > 0
    })
    .await;
    bridge_link.restore();
    device_link.restore();

    let expected: BTreeSet<u64> = (start.offset + 1..=head.offset).collect();
    device.see_all(epoch, &mut seen, &expected).await;
    println!("MQTT links cut after {seen_at_cut} of 150 burst events had reached the device");
    assert!(bridge_link.forwarded() >= 2, "the bridge reconnected");
    assert!(device_link.forwarded() >= 2, "the device reconnected");
    // The device received exactly what the log holds after the marker.
    let logged: BTreeSet<u64> = log_after(&s.store, start, EventFilter::all())
        .await
        .iter()
        .map(|e| e.offset().offset)
        .collect();
    assert_eq!(logged, expected);
    drop(device);
    s.shutdown().await.unwrap();
}

// ----- 2. a webhook receiver down, then back ---------------------------------------------

/// What the receiver saw.
#[derive(Debug, Default)]
struct Received {
    secret: Option<WebhookSecret>,
    /// Requests that reached the receiver.
    requests: usize,
    /// 503 answers still to give.
    busy_left: usize,
    /// 503 answers given.
    busy: usize,
    /// Signatures that did not verify.
    bad_signatures: Vec<String>,
    /// 2xx answers per `webhook-id`.
    accepted: BTreeMap<String, usize>,
    /// Every request per `webhook-id`.
    deliveries: BTreeMap<String, usize>,
    /// The bodies processed after deduplication on `webhook-id`, in arrival order.
    processed: Vec<Value>,
}

type Receiver = Arc<Mutex<Received>>;

fn lock(r: &Receiver) -> std::sync::MutexGuard<'_, Received> {
    r.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A webhook receiver that deduplicates on `webhook-id` as the Standard Webhooks spec
/// asks, and answers 503 while it is told to be busy.
async fn hook(
    State(r): State<Receiver>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let mut r = lock(&r);
    r.requests += 1;
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    *r.deliveries.entry(id.clone()).or_default() += 1;
    if r.busy_left > 0 {
        r.busy_left -= 1;
        r.busy += 1;
        return (StatusCode::SERVICE_UNAVAILABLE, "busy");
    }
    let verified = match &r.secret {
        Some(secret) => secret
            .verify(&headers, &body, Duration::from_secs(300))
            .map_err(|e| format!("{e:?}")),
        None => Err("no secret yet".to_owned()),
    };
    if let Err(e) = verified {
        r.bad_signatures.push(format!("{id}: {e}"));
        return (StatusCode::UNAUTHORIZED, "bad signature");
    }
    *r.accepted.entry(id.clone()).or_default() += 1;
    if r.accepted[&id] == 1 {
        let body: Value = serde_json::from_slice(&body)
            .unwrap_or_else(|e| json!({ "unparsable": e.to_string() }));
        r.processed.push(body);
    }
    (StatusCode::OK, "ok")
}

/// A receiver that is unreachable for a while (connections closed at once), then
/// answers 503 ten times, then recovers: after deduplication on `webhook-id` it has
/// processed every event exactly once, each signature verified, each `webhook-id`
/// accepted (2xx) exactly once; the attempt log shows every failed attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_receiver_down_then_back_gets_every_event_once() {
    // The server retries after 5 s, 5 min, ...: compose the same adapters with a
    // schedule of milliseconds instead.
    let store = PetStore::in_memory();
    let admin = store
        .tokens()
        .issue("faults-admin", Scope::ALL)
        .unwrap()
        .access_token;
    let schedule =
        std::iter::once(Duration::ZERO).chain(std::iter::repeat_n(Duration::from_millis(50), 100));
    let config = WebhookConfig::default()
        .allow_loopback(true)
        .retry_schedule(schedule)
        .jitter(0.0)
        .attempt_log_size(10_000);
    let webhooks = Webhooks::new(store.clone(), config, CancellationToken::new());
    let dispatcher = webhooks.spawn_dispatcher();
    let edge = petstore_http::Edge::new();
    let app = webhooks.router(&edge).merge(petstore_rest::router(
        store.clone(),
        petstore_rest::RestConfig::default(),
        &edge,
        CancellationToken::new(),
    ));
    let (addr, server) = serve(app).await;
    let base = format!("http://{addr}");

    let received = Receiver::default();
    let (receiver_addr, receiver) = serve(
        axum::Router::new()
            .route("/hook", axum::routing::post(hook))
            .with_state(received.clone()),
    )
    .await;
    let link = Link::start(receiver_addr).await;
    let http = reqwest::Client::new();
    let created = http
        .post(format!("{base}/v1/webhooks"))
        .bearer_auth(&admin)
        .json(&json!({ "url": format!("http://{}/hook", link.addr), "events": ["pet.*"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let endpoint: Value = created.json().await.unwrap();
    let endpoint_id = endpoint["id"].as_str().unwrap().to_owned();
    let secret: WebhookSecret = endpoint["secret"].as_str().unwrap().parse().unwrap();
    {
        let mut r = lock(&received);
        r.secret = Some(secret);
        r.busy_left = 10;
    }

    // Down: the burst of 20 creates and 10 updates finds nobody.
    link.cut();
    let before = store.head().await.unwrap();
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(rest_create(&http, &base, &admin, &format!("Hooked{i}")).await);
    }
    for id in &ids[..10] {
        let patched = http
            .patch(format!("{base}/v1/pets/{id}"))
            .bearer_auth(&admin)
            .json(&json!({ "age": 4 }))
            .send()
            .await
            .unwrap();
        assert_eq!(patched.status(), 200);
    }
    let types = vec!["pet.*".parse::<TypePattern>().unwrap()];
    let expected = log_after(&store, before, EventFilter::types(types)).await;
    assert_eq!(expected.len(), 30);
    until("20 refused delivery attempts", || link.refused() >= 20).await;
    assert_eq!(
        lock(&received).requests,
        0,
        "nothing reached the receiver while it was down"
    );
    // Back, but busy for ten requests, then fine.
    link.restore();
    until("every event processed", || {
        lock(&received).processed.len() >= expected.len()
    })
    .await;

    let reached = {
        let r = lock(&received);
        assert!(r.bad_signatures.is_empty(), "{:?}", r.bad_signatures);
        assert_eq!(r.busy, 10);
        let processed: Vec<(String, ResumeToken, String)> = r
            .processed
            .iter()
            .map(|b| {
                (
                    b["id"].as_str().unwrap_or("").to_owned(),
                    offset_of(b),
                    b["type"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        let mut by_offset = processed.clone();
        by_offset.sort_by_key(|(_, offset, _)| *offset);
        let want: Vec<(String, ResumeToken, String)> = expected
            .iter()
            .map(|e| {
                (
                    e.id().to_string(),
                    e.offset(),
                    e.event_type().as_str().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            by_offset, want,
            "after deduplication: every event once, nothing else"
        );
        let twice: Vec<_> = r.accepted.iter().filter(|(_, n)| **n != 1).collect();
        assert!(
            twice.is_empty(),
            "a webhook-id accepted more than once: {twice:?}"
        );
        let retried = r.deliveries.values().filter(|n| **n > 1).count();
        assert!(retried > 0, "the 503s were retried: {:?}", r.deliveries);
        r.requests
    };

    // The attempt log agrees with the receiver, once the dispatcher has recorded the
    // last answers (it records an attempt after the receiver has answered).
    let get = |what: &'static str| {
        let request = http
            .get(format!(
                "{base}/v1/webhooks/{endpoint_id}/{what}?limit=1000"
            ))
            .bearer_auth(&admin);
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let messages = within("every message recorded as succeeded", async {
        loop {
            let messages = get("messages").await;
            let list = messages["data"].as_array().expect("messages");
            if list.len() == expected.len() && list.iter().all(|m| m["status"] == "succeeded") {
                return messages;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let attempts = get("attempts").await;
    let attempts = attempts["data"].as_array().expect("attempts").clone();
    let with_status = |code: u64| attempts.iter().filter(|a| a["status_code"] == code).count();
    let unreachable = attempts
        .iter()
        .filter(|a| a["status_code"].is_null() && a["error"].is_string())
        .count();
    assert_eq!(
        with_status(200),
        expected.len(),
        "one successful attempt per event"
    );
    assert_eq!(with_status(503), 10, "every 503 is logged");
    assert_eq!(
        with_status(200) + with_status(503),
        reached,
        "every request that reached the receiver is logged"
    );
    assert!(
        unreachable >= 1,
        "attempts while the receiver was down are logged with their error"
    );
    let messages = messages["data"].as_array().expect("messages");
    let total: u64 = messages
        .iter()
        .map(|m| m["attempts"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(
        total as usize,
        attempts.len(),
        "the message counts add up to the attempt log"
    );
    assert!(
        messages.iter().any(|m| m["attempts"].as_u64() > Some(2)),
        "some messages were retried"
    );
    println!(
        "webhook outage: {} events, {} attempts ({} unreachable, 10 answered 503), {} requests reached the receiver",
        expected.len(),
        attempts.len(),
        unreachable,
        reached
    );

    dispatcher.shutdown().await;
    server.abort();
    receiver.abort();
}

// ----- 3. SSE and WebSocket clients dropped and resumed ------------------------------------

/// One connection of a follower of the `pets` channel: the envelopes it delivers.
type Feed = BoxStream<'static, Value>;

/// Writes 60 pets per round in three rounds: while the client follows, while it is
/// away, and after it is back. Each round starts on a message of `rounds` and reports
/// the log head when it is over.
fn writer(
    store: PetStore,
    mut rounds: mpsc::UnboundedReceiver<()>,
    done: mpsc::UnboundedSender<ResumeToken>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let who = Principal::new("faults-writer", [Scope::PetsWrite]);
        for round in 0..3 {
            rounds.recv().await.expect("the test starts each round");
            for i in 0..60 {
                let pet = serde_json::from_value(new_pet(&format!("Round{round}-{i}"))).unwrap();
                store.create_pet(&who, pet).await.expect("create");
                tokio::task::yield_now().await;
            }
            let _ = done.send(store.head().await.expect("head"));
        }
    })
}

/// Follows `pets` from the head, drops the connection mid-stream while the writer goes
/// on, resumes from the last offset received while it goes on again, and checks that
/// the two connections together delivered the log exactly: no gap, no duplicate.
async fn drop_and_resume<F, Fut>(s: &RunningServer, connect: F)
where
    F: Fn(ResumeToken) -> Fut,
    Fut: Future<Output = Feed>,
{
    let start = s.store.head().await.unwrap();
    let (rounds, rounds_rx) = mpsc::unbounded_channel();
    let (done_tx, mut done) = mpsc::unbounded_channel();
    let writer = writer(s.store.clone(), rounds_rx, done_tx);
    let mut got: Vec<Value> = Vec::new();

    let mut feed = connect(start).await;
    rounds.send(()).unwrap();
    while got.len() < 25 {
        got.push(
            within("an event before the drop", feed.next())
                .await
                .expect("the feed goes on"),
        );
    }
    // Dropped mid-stream, with events still coming; more come while it is away.
    drop(feed);
    let last = offset_of(got.last().unwrap());
    rounds.send(()).unwrap();
    within("the first round", done.recv())
        .await
        .expect("the writer runs");
    within("the round written while the client is away", done.recv())
        .await
        .expect("the writer runs");

    let mut feed = connect(last).await;
    rounds.send(()).unwrap();
    let head = within("the last round", done.recv())
        .await
        .expect("the writer runs");
    while offset_of(got.last().unwrap()) < head {
        got.push(
            within("an event after the resume", feed.next())
                .await
                .expect("the feed goes on"),
        );
    }
    within("the writer", writer).await.expect("the writer");
    let pets = EventFilter::channels([Channel::Pets]);
    let want: Vec<(ResumeToken, String)> = log_after(&s.store, start, pets)
        .await
        .iter()
        .map(|e| (e.offset(), e.id().to_string()))
        .collect();
    let delivered: Vec<(ResumeToken, String)> = got
        .iter()
        .map(|e| (offset_of(e), e["id"].as_str().unwrap_or("").to_owned()))
        .collect();
    assert_eq!(want.len(), 180);
    assert_eq!(
        delivered, want,
        "across the drop: every event once, in log order"
    );
}

async fn sse_feed(s: &RunningServer, since: ResumeToken) -> Feed {
    let response = sse_client::request(format!("{}/v1/stream/pets", s.http_url()), since).await;
    assert_eq!(response.status(), 200);
    response
        .bytes_stream()
        .eventsource()
        .filter_map(|message| async move {
            let message = message.expect("an SSE message");
            if message.data.is_empty() || message.event == "message" {
                return None;
            }
            assert!(
                message.event.starts_with("pet."),
                "unexpected SSE event {message:?}"
            );
            let envelope: Value = serde_json::from_str(&message.data).expect("an envelope");
            assert_eq!(envelope["offset"], message.id, "the SSE id is the offset");
            Some(envelope)
        })
        .boxed()
}

async fn ws_feed(s: &RunningServer, since: ResumeToken) -> Feed {
    let url = ws::url(&s.http_url(), "/v1/ws");
    let mut ws = ws::connect(url).await.expect("WebSocket");
    let subscribe = json!({ "type": "subscribe", "channel": "pets", "since": since.to_string() });
    ws::send(&mut ws, &subscribe).await;
    let frames = ws.filter_map(|frame| async move {
        match frame.expect("a WebSocket frame") {
            Message::Text(text) => {
                Some(serde_json::from_str::<Value>(text.as_str()).expect("JSON"))
            }
            Message::Ping(_) | Message::Pong(_) => None,
            other => panic!("unexpected frame {other:?}"),
        }
    });
    let mut frames = Box::pin(frames);
    let subscribed = within("subscribed", frames.next()).await.expect("a frame");
    assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
    assert_eq!(subscribed["position"], since.to_string(), "{subscribed}");
    assert_eq!(subscribed["recovered"], true, "{subscribed}");
    frames
        .map(|frame| {
            assert_eq!(frame["type"], "event", "{frame}");
            assert_eq!(frame["channel"], "pets", "{frame}");
            frame["event"].clone()
        })
        .boxed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_client_dropped_mid_stream_resumes_without_gap_or_duplicate() {
    let s = start().await;
    drop_and_resume(&s, |since| sse_feed(&s, since)).await;
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_client_dropped_mid_stream_resumes_without_gap_or_duplicate() {
    let s = start().await;
    drop_and_resume(&s, |since| ws_feed(&s, since)).await;
    s.shutdown().await.unwrap();
}

// ----- 4. graceful shutdown under load ---------------------------------------------------

/// How one write ended, from the client's side.
#[derive(Debug)]
enum Outcome {
    /// A complete success: the created pet's name.
    Created(String),
    /// A complete error answer (problem+json or a gRPC status from the service).
    Refused(String),
    /// No answer: the server was gone.
    Unanswered(String),
    /// An answer cut short: never acceptable.
    Truncated(String),
}

impl Outcome {
    fn text(&self) -> &str {
        match self {
            Outcome::Created(t)
            | Outcome::Refused(t)
            | Outcome::Unanswered(t)
            | Outcome::Truncated(t) => t,
        }
    }
}

async fn rest_writer(
    base: String,
    token: String,
    worker: usize,
    created: Arc<AtomicUsize>,
) -> Vec<Outcome> {
    // One client per worker: one connection each, like independent callers.
    let http = reqwest::Client::new();
    let mut outcomes = Vec::new();
    for i in 0..20_000 {
        let name = format!("Shut-{worker}-{i}");
        let sent = http
            .post(format!("{base}/v1/pets"))
            .bearer_auth(&token)
            .json(&new_pet(&name))
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                outcomes.push(Outcome::Unanswered(format!("{name}: {e}")));
                return outcomes;
            }
        };
        let status = response.status();
        let outcome = match response.bytes().await {
            Err(e) => Outcome::Truncated(format!("{name}: {status} then {e}")),
            Ok(body) => match serde_json::from_slice::<Value>(&body) {
                Ok(pet) if status == 201 && pet["name"] == name.as_str() => {
                    created.fetch_add(1, Ordering::SeqCst);
                    Outcome::Created(name)
                }
                Ok(problem) if !status.is_success() && problem["status"] == status.as_u16() => {
                    Outcome::Refused(format!("{name}: {status} {problem}"))
                }
                _ => Outcome::Truncated(format!(
                    "{name}: {status} with {}",
                    String::from_utf8_lossy(&body)
                )),
            },
        };
        outcomes.push(outcome);
    }
    outcomes
}

async fn grpc_writer(
    grpc: String,
    token: String,
    worker: usize,
    created: Arc<AtomicUsize>,
) -> Vec<Outcome> {
    let mut pets = pb::pet_service_client::PetServiceClient::new(grpc_client::connect(grpc).await);
    let mut outcomes = Vec::new();
    for i in 0..20_000 {
        let name = format!("Shut-g{worker}-{i}");
        match pets
            .create_pet(grpc_client::bearer(grpc_pet(&name), Some(&token)))
            .await
        {
            Ok(pet) if pet.get_ref().name == name => {
                created.fetch_add(1, Ordering::SeqCst);
                outcomes.push(Outcome::Created(name));
            }
            Ok(pet) => outcomes.push(Outcome::Truncated(format!("{name}: {pet:?}"))),
            Err(status)
                if matches!(
                    status.code(),
                    tonic::Code::Unavailable | tonic::Code::Cancelled | tonic::Code::Unknown
                ) =>
            {
                outcomes.push(Outcome::Unanswered(format!("{name}: {status}")));
                return outcomes;
            }
            Err(status) => outcomes.push(Outcome::Refused(format!("{name}: {status}"))),
        }
    }
    outcomes
}

/// Under concurrent REST and gRPC writes, with a gRPC health `Watch` and an SSE
/// follower open, `shutdown()`:
/// - the health watch reports NOT_SERVING and then ends cleanly (the gRPC server says
///   so before it stops), and fresh health checks never go back to SERVING;
/// - every answer received is complete (a 201 with the pet, or a problem+json error);
/// - the log holds exactly the writes that were answered with success: no lost write,
///   no phantom one;
/// - the follower, cut off when health turns NOT_SERVING and restarted against a new
///   listener over the same store, resumes and sees every event: none was appended
///   without being observable;
/// - in-flight requests finished well within the grace period (nothing was cut).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_under_load_loses_no_write_and_says_not_serving_first() {
    let s = start().await;
    let store = s.store.clone();
    let start_at = store.head().await.unwrap();
    let base = s.http_url();
    let grpc = format!("http://{}", s.grpc_addr.expect("gRPC is on"));

    // The health watch: SERVING now; NOT_SERVING is announced on `not_serving`.
    let mut health = HealthClient::new(grpc_client::connect(grpc.clone()).await);
    let watch = health
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("Watch");
    let mut statuses = watch.into_inner();
    let first = within("the first health status", statuses.message())
        .await
        .expect("status")
        .expect("a status");
    assert_eq!(first.status(), ServingStatus::Serving);
    let (not_serving_tx, not_serving) = watch::channel(false);
    let watcher = tokio::spawn(async move {
        let mut seen = vec![first.status()];
        let end = loop {
            match statuses.message().await {
                Ok(Some(status)) => {
                    if status.status() == ServingStatus::NotServing {
                        not_serving_tx.send_replace(true);
                    }
                    seen.push(status.status());
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        (seen, end)
    });

    // Fresh connections asking `Check` in a loop until the listener is gone.
    let prober = {
        let grpc = grpc.clone();
        tokio::spawn(async move {
            let mut answers = Vec::new();
            for _ in 0..100_000 {
                let check = async {
                    let endpoint = tonic::transport::Endpoint::from_shared(grpc.clone()).ok()?;
                    let channel = endpoint.connect().await.ok()?;
                    let answer = HealthClient::new(channel)
                        .check(HealthCheckRequest {
                            service: String::new(),
                        })
                        .await
                        .ok()?;
                    Some(answer.into_inner().status())
                };
                match tokio::time::timeout(Duration::from_secs(1), check).await {
                    Ok(Some(status)) => answers.push(status),
                    _ => break,
                }
            }
            answers
        })
    };

    // An SSE follower that leaves when health says NOT_SERVING, as a client behind a
    // health-checking balancer would.
    let follower = {
        let mut not_serving = not_serving.clone();
        let url = format!("{base}/v1/stream/pets");
        tokio::spawn(async move {
            let response = sse_client::request(url, start_at).await;
            assert_eq!(response.status(), 200);
            let mut messages = response.bytes_stream().eventsource();
            let mut offsets = Vec::new();
            loop {
                tokio::select! {
                    _ = not_serving.wait_for(|n| *n) => break,
                    message = messages.next() => match message {
                        Some(Ok(m)) if !m.data.is_empty() && m.event.starts_with("pet.") => {
                            offsets.push(m.id.parse::<ResumeToken>().expect("a token id"));
                        }
                        Some(Ok(_)) => {}
                        _ => break,
                    },
                }
            }
            offsets
        })
    };

    let created = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for w in 0..6 {
        writers.push(tokio::spawn(rest_writer(
            base.clone(),
            s.dev_token.clone(),
            w,
            created.clone(),
        )));
    }
    for w in 0..2 {
        writers.push(tokio::spawn(grpc_writer(
            grpc.clone(),
            s.dev_token.clone(),
            w,
            created.clone(),
        )));
    }
    until("200 writes under way", || {
        created.load(Ordering::SeqCst) >= 200
    })
    .await;

    let began = Instant::now();
    within("the graceful shutdown", s.shutdown())
        .await
        .expect("a clean shutdown");
    let took = began.elapsed();

    let mut outcomes = Vec::new();
    for w in writers {
        outcomes.extend(within("a writer", w).await.expect("the writer"));
    }
    let (seen, end) = within("the health watch to end", watcher).await.unwrap();
    let answers = within("the health prober", prober).await.unwrap();
    let followed = within("the follower", follower).await.unwrap();

    // Health: SERVING, then NOT_SERVING, then a clean end of the stream.
    assert!(
        end.is_ok(),
        "the health watch ended with an error instead of NOT_SERVING: {end:?} after {seen:?}"
    );
    assert!(
        seen.len() >= 2 && seen[1..].iter().all(|s| *s == ServingStatus::NotServing),
        "{seen:?}"
    );
    let first_down = answers
        .iter()
        .position(|a| *a != ServingStatus::Serving)
        .unwrap_or(answers.len());
    assert!(
        answers[first_down..]
            .iter()
            .all(|a| *a == ServingStatus::NotServing),
        "a health check went back to SERVING: {answers:?}"
    );

    // Answers: complete, and the writers ran until the server went away.
    let truncated: Vec<_> = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Truncated(_)))
        .map(Outcome::text)
        .collect();
    assert!(truncated.is_empty(), "answers cut short: {truncated:?}");
    let unanswered: Vec<_> = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Unanswered(_)))
        .map(Outcome::text)
        .collect();
    assert_eq!(
        unanswered.len(),
        8,
        "every writer ran until the server was gone: {unanswered:?}"
    );
    let refused: Vec<_> = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Refused(_)))
        .map(Outcome::text)
        .collect();
    let succeeded: BTreeSet<String> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Created(name) => Some(name.clone()),
            _ => None,
        })
        .collect();

    // The log: exactly the writes answered with success.
    let created_events = log_after(
        &store,
        start_at,
        EventFilter::types(["pet.created".parse::<TypePattern>().unwrap()]),
    )
    .await;
    let mut logged = BTreeMap::<String, usize>::new();
    for e in &created_events {
        *logged
            .entry(e.data().pet().map(|p| p.name.clone()).unwrap_or_default())
            .or_default() += 1;
    }
    let twice: Vec<_> = logged.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "a write was applied twice: {twice:?}");
    let logged: BTreeSet<String> = logged.into_keys().collect();
    let lost: Vec<_> = succeeded.difference(&logged).collect();
    let phantom: Vec<_> = logged.difference(&succeeded).collect();
    assert!(lost.is_empty(), "answered 201 but not in the log: {lost:?}");
    assert!(
        phantom.is_empty(),
        "in the log but not answered with success: {phantom:?}"
    );

    // The follower restarts against a new listener over the same store and resumes.
    let resume_from = followed.last().copied().unwrap_or(start_at);
    let (addr, again) = serve(petstore_realtime::router(
        store.clone(),
        petstore_realtime::RealtimeConfig::default(),
        &petstore_http::Edge::new(),
        CancellationToken::new(),
    ))
    .await;
    let head = store.head().await.unwrap();
    let response = sse_client::request(format!("http://{addr}/v1/stream/pets"), resume_from).await;
    let mut messages = response.bytes_stream().eventsource();
    let mut after = Vec::new();
    while after.last().copied().unwrap_or(resume_from) < head {
        let m = within("the resumed follower", messages.next())
            .await
            .expect("stream")
            .expect("message");
        if !m.data.is_empty() && m.event.starts_with("pet.") {
            after.push(m.id.parse::<ResumeToken>().unwrap());
        }
    }
    let all: Vec<ResumeToken> = followed.iter().chain(&after).copied().collect();
    let want: Vec<ResumeToken> =
        log_after(&store, start_at, EventFilter::channels([Channel::Pets]))
            .await
            .iter()
            .map(|e| e.offset())
            .collect();
    assert_eq!(
        all, want,
        "the follower saw every event once across the restart"
    );
    again.abort();

    println!(
        "graceful shutdown under load: {} writes answered 201, {} refused {refused:?}, {} unanswered {unanswered:?}; \
         shutdown took {took:?}; health watch {seen:?}; {} fresh health checks ({} NOT_SERVING); follower saw {} events \
         before, {} after its restart",
        succeeded.len(),
        refused.len(),
        unanswered.len(),
        answers.len(),
        answers.len() - first_down,
        followed.len(),
        after.len()
    );
    assert!(
        took < SHUTDOWN_GRACE,
        "in-flight requests should finish well within the grace period, took {took:?}"
    );
}

// ----- 5. open streams at shutdown ---------------------------------------------------

/// `RunningServer::shutdown` ends long-lived streams: an SSE response opened before it
/// ends (the stream is over, no event written after shutdown arrives), and a WebSocket
/// gets a close frame with 1001 (going away). Without that, axum's graceful shutdown
/// would wait for them until the grace period ran out, and in a process that embeds the
/// server and goes on they would keep delivering events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_open_sse_and_websocket_streams() {
    let s = start().await;
    let store = s.store.clone();
    let head = store.head().await.unwrap();
    let sse = sse_client::request(format!("{}/v1/stream/pets", s.http_url()), head).await;
    assert_eq!(sse.status(), StatusCode::OK);
    // The server subscribes before it answers: the stream is live.
    let mut sse = sse.bytes_stream().eventsource();
    let mut ws = ws::connect(ws::url(&s.http_url(), "/v1/ws")).await.unwrap();
    let subscribe = json!({ "type": "subscribe", "channel": "pets", "since": head.to_string() });
    ws::send(&mut ws, &subscribe).await;
    let subscribed = within("WebSocket subscribed", ws.next())
        .await
        .unwrap()
        .unwrap();
    assert!(
        subscribed
            .to_text()
            .unwrap()
            .contains(r#""type":"subscribed""#),
        "{subscribed:?}"
    );

    let began = Instant::now();
    within("shutdown", s.shutdown()).await.unwrap();
    let took = began.elapsed();
    let pet = serde_json::from_value(new_pet("AfterShutdown")).unwrap();
    store.create_pet(&system(), pet).await.unwrap();

    let mut sse_after = Vec::new();
    within("the SSE stream to end", async {
        while let Some(m) = sse.next().await {
            match m {
                Ok(m) => sse_after.push(m.data),
                Err(_) => break,
            }
        }
    })
    .await;
    assert!(
        !sse_after.iter().any(|d| d.contains("AfterShutdown")),
        "SSE delivered an event written after shutdown(): {sse_after:?}"
    );
    let mut ws_after = Vec::new();
    let close = within("the WebSocket close frame", async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => break frame,
                Some(Ok(other)) => ws_after.push(other),
                other => panic!("the WebSocket ended without a close frame: {other:?}"),
            }
        }
    })
    .await
    .expect("the close frame has a code");
    assert_eq!(u16::from(close.code), 1001, "{close:?}");
    assert!(
        !ws_after
            .iter()
            .any(|m| m.to_text().is_ok_and(|t| t.contains("AfterShutdown"))),
        "WebSocket delivered an event written after shutdown(): {ws_after:?}"
    );
    assert!(
        took < SHUTDOWN_GRACE,
        "open streams should not hold shutdown for the grace period, took {took:?}"
    );
}
