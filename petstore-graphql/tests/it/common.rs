//! A real server on 127.0.0.1:0 and real clients (reqwest, tokio-tungstenite).

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use petstore_core::{PetStore, Principal, Scope};
use petstore_graphql::{GraphQlConfig, router};
use petstore_http::Edge;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

/// How long a test waits for any one expected thing.
pub(crate) const PATIENCE: Duration = Duration::from_secs(10);

pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    pub(crate) store: PetStore,
    http: reqwest::Client,
    task: Option<JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A seeded store behind the GraphQL router.
pub(crate) async fn start(config: GraphQlConfig) -> Server {
    let store = PetStore::in_memory();
    petstore_core::seed::seed(&store).await.expect("seed");
    start_with(store, config).await
}

pub(crate) async fn start_with(store: PetStore, config: GraphQlConfig) -> Server {
    start_full(store, config, &Edge::new(), CancellationToken::new()).await
}

/// A seeded store behind the GraphQL router and `edge`.
pub(crate) async fn start_edge(config: GraphQlConfig, edge: &Edge) -> Server {
    let store = PetStore::in_memory();
    petstore_core::seed::seed(&store).await.expect("seed");
    start_full(store, config, edge, CancellationToken::new()).await
}

pub(crate) async fn start_full(
    store: PetStore,
    config: GraphQlConfig,
    edge: &Edge,
    shutdown: CancellationToken,
) -> Server {
    // Bound before serving: connections queue until `serve` accepts them.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    // With the client address, as rate limiting per IP needs.
    let app = router(store.clone(), config, edge, shutdown.clone())
        .into_make_service_with_connect_info::<SocketAddr>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
            .expect("serve");
    });
    Server {
        addr,
        store,
        http: reqwest::Client::new(),
        task: Some(task),
    }
}

impl Server {
    /// Waits until the server has stopped (after its shutdown token was cancelled and
    /// every connection ended).
    pub(crate) async fn stopped(mut self) {
        let task = self.task.take().expect("running");
        tokio::time::timeout(PATIENCE, task)
            .await
            .expect("graceful shutdown finishes once the connections have closed")
            .expect("serve");
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A bearer token with `scopes`.
    pub(crate) fn token(&self, scopes: &[Scope]) -> String {
        self.store
            .tokens()
            .issue("tester", scopes.iter().copied())
            .expect("token")
            .access_token
    }

    /// POSTs an operation; returns the status and the JSON body.
    pub(crate) async fn post(
        &self,
        token: Option<&str>,
        query: &str,
        variables: Value,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .post(self.url("/graphql"))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        (status, response.json().await.expect("JSON body"))
    }

    /// A query that must succeed without errors; returns `data`.
    pub(crate) async fn data(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let (status, body) = self.post(token, query, variables).await;
        assert_eq!(status, StatusCode::OK, "{body:#}");
        assert!(body.get("errors").is_none(), "unexpected errors: {body:#}");
        body["data"].clone()
    }

    pub(crate) fn client(&self) -> &reqwest::Client {
        &self.http
    }

    /// The ids of every pet, read through the core.
    pub(crate) async fn pet_count(&self) -> usize {
        let query = petstore_core::PetQuery::default().limit(100);
        let page = self
            .store
            .pets(&Principal::system("test"), &query)
            .await
            .expect("pets");
        page.data.len()
    }

    /// Opens a WebSocket on /graphql asking for `protocol`.
    pub(crate) async fn ws(&self, protocol: &str) -> Ws {
        let mut request = format!("ws://{}/graphql", self.addr)
            .into_client_request()
            .expect("request");
        request
            .headers_mut()
            .insert("sec-websocket-protocol", protocol.parse().expect("header"));
        let (stream, response) =
            tokio::time::timeout(PATIENCE, tokio_tungstenite::connect_async(request))
                .await
                .expect("connect in time")
                .expect("connect");
        assert_eq!(
            response.headers()["sec-websocket-protocol"],
            protocol,
            "the server must echo the chosen subprotocol"
        );
        Ws { stream }
    }
}

/// A GraphQL over WebSocket client.
pub(crate) struct Ws {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// What the server said last.
#[derive(Debug)]
pub(crate) enum Frame {
    Json(Value),
    Closed(Option<CloseFrame>),
}

impl Ws {
    pub(crate) async fn send(&mut self, message: Value) {
        self.stream
            .send(Message::text(message.to_string()))
            .await
            .expect("send");
    }

    /// The next protocol message or close, skipping keep-alives (`pong`, `ka`).
    pub(crate) async fn frame(&mut self) -> Frame {
        loop {
            let message = tokio::time::timeout(PATIENCE, self.stream.next())
                .await
                .expect("a frame in time");
            match message {
                Some(Ok(Message::Text(text))) => {
                    let value: Value = serde_json::from_str(text.as_str()).expect("JSON frame");
                    if matches!(value["type"].as_str(), Some("pong" | "ka")) {
                        continue;
                    }
                    return Frame::Json(value);
                }
                Some(Ok(Message::Close(frame))) => return Frame::Closed(frame),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(other)) => panic!("unexpected frame {other:?}"),
                Some(Err(tungstenite::Error::ConnectionClosed)) | None => {
                    return Frame::Closed(None);
                }
                Some(Err(e)) => panic!("socket error: {e}"),
            }
        }
    }

    /// The next protocol message, which must not be a close.
    pub(crate) async fn next(&mut self) -> Value {
        match self.frame().await {
            Frame::Json(v) => v,
            Frame::Closed(frame) => panic!("closed unexpectedly: {frame:?}"),
        }
    }

    /// Sends `connection_init` with `payload` and expects `connection_ack`.
    pub(crate) async fn init(&mut self, payload: Value) {
        self.send(json!({ "type": "connection_init", "payload": payload }))
            .await;
        let ack = self.next().await;
        assert_eq!(ack["type"], "connection_ack", "{ack}");
    }
}

/// `connection_init` payload carrying a bearer token.
pub(crate) fn bearer(token: &str) -> Value {
    json!({ "authorization": format!("Bearer {token}") })
}

/// The `extensions.code` of every error in a response body or payload.
pub(crate) fn codes(errors: &Value) -> Vec<String> {
    errors
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    e["extensions"]["code"]
                        .as_str()
                        .unwrap_or("<none>")
                        .to_owned()
                })
                .collect()
        })
        .unwrap_or_default()
}
