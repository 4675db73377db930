//! A test harness: the webhooks router served on a loopback port with the dispatcher
//! running, and receivers (real axum servers) that record what they get.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use petstore_core::{NewPet, Pet, PetStore, Principal, Scope};
use petstore_http::Edge;
use petstore_webhooks::{
    DispatcherHandle, MemoryWebhookStore, WebhookConfig, WebhookSecret, Webhooks,
};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Upper bound for anything a test waits for.
pub(crate) const WAIT: Duration = Duration::from_secs(10);
pub(crate) const TOLERANCE: Duration = Duration::from_secs(300);

/// Loopback allowed, millisecond retries, no jitter.
pub(crate) fn fast_config() -> WebhookConfig {
    WebhookConfig::default()
        .allow_loopback(true)
        .retry_schedule([0, 10, 10, 10].map(Duration::from_millis))
        .jitter(0.0)
}

pub(crate) struct Harness {
    pub(crate) store: PetStore,
    pub(crate) webhooks: Webhooks,
    pub(crate) base: String,
    pub(crate) http: reqwest::Client,
    pub(crate) admin: String,
    pub(crate) dispatcher: Option<DispatcherHandle>,
    config: WebhookConfig,
    /// Where the endpoints, messages and attempts live: kept across [`Harness::restart`].
    webhook_store: MemoryWebhookStore,
    server: JoinHandle<()>,
}

/// Serves `webhooks`' router on a loopback port: the base URL and the server task.
async fn serve(webhooks: &Webhooks) -> (String, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = webhooks.router(&Edge::new());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), server)
}

impl Harness {
    /// Serves the router and runs the dispatcher.
    pub(crate) async fn start(config: WebhookConfig) -> Self {
        let mut h = Self::serve(config).await;
        h.dispatcher = Some(h.webhooks.spawn_dispatcher());
        h
    }

    /// Serves the router only.
    pub(crate) async fn serve(config: WebhookConfig) -> Self {
        let store = PetStore::in_memory();
        petstore_core::seed::seed(&store).await.unwrap();
        let webhook_store = MemoryWebhookStore::new();
        let webhooks = Webhooks::with_store(
            store.clone(),
            config.clone(),
            webhook_store.clone(),
            CancellationToken::new(),
        );
        let (base, server) = serve(&webhooks).await;
        let admin = store
            .tokens()
            .issue("root", [Scope::Admin])
            .unwrap()
            .access_token;
        Self {
            store,
            webhooks,
            base,
            http: reqwest::Client::new(),
            admin,
            dispatcher: None,
            config,
            webhook_store,
            server,
        }
    }

    /// Stops the dispatcher and the server, as a process exit would (the service and
    /// the webhook store live on, as a database would).
    pub(crate) async fn stop(&mut self) {
        if let Some(dispatcher) = self.dispatcher.take() {
            dispatcher.shutdown().await;
        }
        self.server.abort();
    }

    /// Starts a new `Webhooks` on the same service and webhook store, serves it on a
    /// new port and runs its dispatcher: a restarted process.
    pub(crate) async fn restart(&mut self) {
        self.stop().await;
        self.webhooks = Webhooks::with_store(
            self.store.clone(),
            self.config.clone(),
            self.webhook_store.clone(),
            CancellationToken::new(),
        );
        (self.base, self.server) = serve(&self.webhooks).await;
        self.dispatcher = Some(self.webhooks.spawn_dispatcher());
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, HeaderMap, Value) {
        let mut req = self
            .http
            .request(method, self.url(path))
            .bearer_auth(&self.admin);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.unwrap();
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        (status, headers, json)
    }

    pub(crate) async fn get(&self, path: &str) -> (StatusCode, Value) {
        let (s, _, v) = self.call(reqwest::Method::GET, path, None).await;
        (s, v)
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let (s, _, v) = self.call(reqwest::Method::POST, path, Some(body)).await;
        (s, v)
    }

    pub(crate) async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let (s, _, v) = self.call(reqwest::Method::PATCH, path, Some(body)).await;
        (s, v)
    }

    /// Creates an endpoint (asserting 201) and returns it, with its secret.
    pub(crate) async fn create_endpoint(
        &self,
        url: &str,
        events: Value,
    ) -> (String, WebhookSecret) {
        let (status, body) = self
            .post("/v1/webhooks", json!({ "url": url, "events": events }))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let secret = body["secret"].as_str().unwrap().parse().unwrap();
        (body["id"].as_str().unwrap().to_owned(), secret)
    }

    pub(crate) async fn endpoint(&self, id: &str) -> Value {
        let (status, body) = self.get(&format!("/v1/webhooks/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// The attempt log of an endpoint, newest first.
    pub(crate) async fn attempts(&self, id: &str) -> Vec<Value> {
        let (status, body) = self.get(&format!("/v1/webhooks/{id}/attempts")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["data"].as_array().unwrap().clone()
    }

    /// The messages of an endpoint, newest first.
    pub(crate) async fn messages(&self, id: &str) -> Vec<Value> {
        let (status, body) = self.get(&format!("/v1/webhooks/{id}/messages")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["data"].as_array().unwrap().clone()
    }

    /// Polls the endpoint until `check` holds (or fails the test after [`WAIT`]).
    pub(crate) async fn wait_endpoint(
        &self,
        id: &str,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        self.wait(what, || self.endpoint(id), check).await
    }

    /// Polls the attempt log until `check` holds.
    pub(crate) async fn wait_attempts(
        &self,
        id: &str,
        what: &str,
        check: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        self.wait(what, || self.attempts(id), |a: &Vec<Value>| check(a))
            .await
    }

    /// Polls the message list until `check` holds.
    pub(crate) async fn wait_messages(
        &self,
        id: &str,
        what: &str,
        check: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        self.wait(what, || self.messages(id), |a: &Vec<Value>| check(a))
            .await
    }

    async fn wait<T: std::fmt::Debug, F: Future<Output = T>>(
        &self,
        what: &str,
        read: impl Fn() -> F,
        check: impl Fn(&T) -> bool,
    ) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            let value = read().await;
            if check(&value) {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; last: {value:#?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub(crate) async fn create_pet(&self, name: &str) -> Pet {
        let new: NewPet = serde_json::from_value(json!({
            "name": name,
            "species": "dog",
            "price": { "amount": "10.00", "currency": "USD" },
        }))
        .unwrap();
        self.store
            .create_pet(&Principal::system("test"), new)
            .await
            .unwrap()
    }
}

/// A request as a receiver got it.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    pub(crate) at: Instant,
}

impl Received {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers.get(name).unwrap().to_str().unwrap()
    }
}

type Respond = Arc<dyn Fn(usize) -> Pin<Box<dyn Future<Output = Response> + Send>> + Send + Sync>;

/// A webhook receiver on a loopback port.
pub(crate) struct Receiver {
    pub(crate) port: u16,
    pub(crate) url: String,
    rx: mpsc::UnboundedReceiver<Received>,
    count: Arc<AtomicUsize>,
}

impl Receiver {
    /// A receiver whose `n`-th request (from 1) is answered by `respond(n)`. The request
    /// is recorded before the answer is computed.
    pub(crate) async fn start<F, Fut>(respond: F) -> Self
    where
        F: Fn(usize) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response> + Send + 'static,
    {
        let respond: Respond = Arc::new(move |n| Box::pin(respond(n)));
        let (tx, rx) = mpsc::unbounded_channel();
        let count = Arc::new(AtomicUsize::new(0));
        let counter = count.clone();
        let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
            let respond = respond.clone();
            let tx = tx.clone();
            let counter = counter.clone();
            async move {
                let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                let _ = tx.send(Received {
                    headers,
                    body,
                    at: Instant::now(),
                });
                respond(n).await
            }
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            port,
            url: format!("http://127.0.0.1:{port}/hook"),
            rx,
            count,
        }
    }

    /// Answers 200 to everything.
    pub(crate) async fn ok() -> Self {
        Self::start(|_| async { StatusCode::OK.into_response() }).await
    }

    /// The next request (fails the test after [`WAIT`]).
    pub(crate) async fn next(&mut self) -> Received {
        tokio::time::timeout(WAIT, self.rx.recv())
            .await
            .expect("timed out waiting for a delivery")
            .expect("receiver stopped")
    }

    /// Requests received so far.
    pub(crate) fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}
