//! The server binary as a child process on a database (the crash and cluster suites),
//! a webhook receiver that records every delivery, and the PostgreSQL cluster of
//! `PETSTORE_TEST_DATABASE_URL`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use petstore_core::ResumeToken;
use serde_json::Value;
use tokio::process::{Child, Command};
use tokio::sync::Notify;

use super::{banner_address, read_banner, within};

/// The HS256 secret every instance of a suite shares (one store, one token).
pub(crate) const JWT_SECRET: &str = "durability-suite-secret-0123456789abcdef";

/// A running `petstore-server` binary.
pub(crate) struct Instance {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub(crate) url: String,
    /// The development token (every scope).
    pub(crate) token: String,
    /// The gRPC listener, `http://127.0.0.1:PORT`.
    pub(crate) grpc: String,
    /// What the banner says about the store.
    pub(crate) store_line: String,
}

impl Instance {
    /// Starts the binary on `database_url` (every listener on a free port, MQTT off)
    /// and waits for its banner.
    pub(crate) async fn start(database_url: &str) -> Self {
        Self::start_with(database_url, &["--no-mqtt"]).await
    }

    /// Like [`Instance::start`], with `extra` arguments instead of `--no-mqtt`.
    pub(crate) async fn start_with(database_url: &str, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_petstore-server"))
            .args([
                "--http-addr",
                "127.0.0.1:0",
                "--grpc-addr",
                "127.0.0.1:0",
                "--database-url",
                database_url,
                "--jwt-secret",
                JWT_SECRET,
            ])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("the server binary starts");
        let printed = read_banner(child.stdout.take().expect("stdout")).await;
        let text = printed.join("\n");
        let rest = text
            .split_whitespace()
            .find(|w| w.starts_with("http://") && w.ends_with("/v1/pets"))
            .unwrap_or_else(|| panic!("no REST address in the banner:\n{text}"));
        let url = rest.trim_end_matches("/v1/pets").to_owned();
        let token = printed
            .iter()
            .skip_while(|l| !l.contains("Development token"))
            .nth(1)
            .map(|l| l.trim().to_owned())
            .unwrap_or_else(|| panic!("no token in the banner:\n{text}"));
        let grpc = banner_address(&printed, "gRPC")
            .unwrap_or_else(|| panic!("no gRPC address in the banner:\n{text}"));
        let store_line = printed
            .iter()
            .find(|l| l.trim_start().starts_with("store "))
            .cloned()
            .unwrap_or_default();
        Self {
            child,
            url,
            token,
            grpc,
            store_line,
        }
    }

    /// SIGKILL: no shutdown code runs, nothing is flushed or released.
    pub(crate) async fn kill(mut self) {
        self.child.kill().await.expect("SIGKILL");
    }
}

/// The JSON of an events page (`GET /v1/events`) of `instance` after `since`.
pub(crate) async fn events_page(
    client: &reqwest::Client,
    instance: &Instance,
    since: Option<&str>,
) -> (Vec<Value>, String) {
    // Resume tokens are `hex-digits`: nothing to escape.
    let url = match since {
        Some(since) => format!("{}/v1/events?limit=1000&since={since}", instance.url),
        None => format!("{}/v1/events?limit=1000", instance.url),
    };
    let request = client.get(url).bearer_auth(&instance.token);
    let response = request.send().await.expect("polling answers");
    assert_eq!(response.status(), StatusCode::OK, "polling since {since:?}");
    let page: Value = response.json().await.expect("a page");
    let events = page["events"].as_array().expect("events").clone();
    let next = page["next"].as_str().expect("next").to_owned();
    (events, next)
}

/// Every retained event after `since`, paging until the head.
pub(crate) async fn all_events_after(
    client: &reqwest::Client,
    instance: &Instance,
    since: &str,
) -> Vec<Value> {
    let mut since = since.to_owned();
    let mut all = Vec::new();
    loop {
        let (events, next) = events_page(client, instance, Some(&since)).await;
        if events.is_empty() {
            return all;
        }
        all.extend(events);
        since = next;
    }
}

/// An event's offset (its resume token parsed).
pub(crate) fn offset(event: &Value) -> ResumeToken {
    event["offset"]
        .as_str()
        .expect("an offset")
        .parse()
        .expect("a resume token")
}

/// One delivery as the receiver saw it.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    /// `webhook-id`.
    pub(crate) id: String,
    /// The answer the receiver gave.
    pub(crate) status: StatusCode,
    /// When it arrived.
    pub(crate) at: tokio::time::Instant,
}

/// A webhook receiver: records every delivery; answers 503 to the first attempt of
/// each `webhook-id` while `fail_first` is set, 204 otherwise.
#[derive(Clone, Default)]
pub(crate) struct Receiver {
    deliveries: Arc<Mutex<Vec<Delivery>>>,
    seen: Arc<Mutex<HashMap<String, u32>>>,
    fail_first: Arc<std::sync::atomic::AtomicBool>,
    arrived: Arc<Notify>,
}

impl Receiver {
    /// Serves on a free loopback port; returns the URL to register.
    pub(crate) async fn start(&self) -> String {
        let this = self.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap| {
                let this = this.clone();
                async move { this.record(&headers) }
            }),
        );
        let (addr, _task): (SocketAddr, _) = super::serve(app).await;
        format!("http://{addr}/hook")
    }

    fn record(&self, headers: &HeaderMap) -> StatusCode {
        let id = headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let first = {
            let mut seen = self.seen.lock().unwrap();
            let n = seen.entry(id.clone()).or_default();
            *n += 1;
            *n == 1
        };
        let status = if first && self.fail_first.load(std::sync::atomic::Ordering::SeqCst) {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::NO_CONTENT
        };
        self.deliveries.lock().unwrap().push(Delivery {
            id,
            status,
            at: tokio::time::Instant::now(),
        });
        self.arrived.notify_waiters();
        status
    }

    /// Whether first attempts fail.
    pub(crate) fn fail_first(&self, yes: bool) {
        self.fail_first
            .store(yes, std::sync::atomic::Ordering::SeqCst);
    }

    /// Every delivery so far.
    pub(crate) fn deliveries(&self) -> Vec<Delivery> {
        self.deliveries.lock().unwrap().clone()
    }

    /// Waits (at most `limit`) until `done` holds for the deliveries so far.
    pub(crate) async fn wait_until(
        &self,
        what: &str,
        limit: std::time::Duration,
        mut done: impl FnMut(&[Delivery]) -> bool,
    ) {
        tokio::time::timeout(limit, async {
            loop {
                let arrived = self.arrived.notified();
                if done(&self.deliveries()) {
                    return;
                }
                // A bounded wait: a delivery between the check and here is not missed.
                let _ = tokio::time::timeout(std::time::Duration::from_millis(200), arrived).await;
            }
        })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "timed out after {limit:?} waiting for {what}; deliveries: {:?}",
                self.deliveries()
            )
        });
    }
}

/// The PostgreSQL cluster for the tests (`PETSTORE_TEST_DATABASE_URL`), or `None`
/// after saying that the test skips; with `PETSTORE_REQUIRE_ALL` set, a missing
/// cluster fails the test (`petstore_core::testing::database_url`).
#[track_caller]
pub(crate) fn postgres_cluster() -> Option<String> {
    petstore_core::testing::database_url()
}

/// The Mosquitto broker of `PETSTORE_TEST_MOSQUITTO_URL` (`mqtt://host:port`), or
/// `None` after saying that the test skips; with `PETSTORE_REQUIRE_ALL` set, a missing
/// broker fails the test.
#[track_caller]
pub(crate) fn mosquitto() -> Option<String> {
    petstore_core::testing::env_or_skip(
        "PETSTORE_TEST_MOSQUITTO_URL",
        "petstore-mqtt/scripts/with-mosquitto.sh sets it; .ci/run starts a broker",
    )
}

/// A new, empty database on the cluster at `cluster`; its URL.
pub(crate) async fn new_postgres_database(cluster: &str) -> String {
    petstore_sql::testing::create_postgres_database(cluster, "petstore_server")
        .await
        .expect("CREATE DATABASE on the test cluster")
}

/// The `data:` of each message of an SSE response, parsed.
pub(crate) fn sse_data(
    response: reqwest::Response,
) -> std::pin::Pin<Box<dyn futures_util::Stream<Item = Value> + Send>> {
    use eventsource_stream::Eventsource as _;
    use futures_util::StreamExt as _;
    Box::pin(response.bytes_stream().eventsource().map(|event| {
        let event = event.expect("an SSE message");
        serde_json::from_str(&event.data).expect("JSON data")
    }))
}

/// The next item of `stream` within [`super::WAIT`].
pub(crate) async fn next<T>(
    what: &str,
    stream: &mut (impl futures_util::Stream<Item = T> + Unpin),
) -> T {
    use futures_util::StreamExt as _;
    within(what, stream.next())
        .await
        .expect("the stream stays open")
}
