//! A store with the sample catalogue, real servers (HTTP on 127.0.0.1:0, stdio over
//! an in-process pipe) and rmcp clients of both protocol versions.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use petstore_core::{Pet, PetQuery, PetStore, Principal, Scope};
use petstore_http::Edge;
use petstore_mcp::McpConfig;
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientConfig, JsonObject, ProtocolVersion,
    ReadResourceRequestParams, ResourceContents, ResourceUpdatedNotificationParam,
};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientHandler, ClientLifecycleMode, ClientServiceExt, RoleClient};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How long any expected message may take.
pub(crate) const PATIENCE: Duration = Duration::from_secs(10);

/// Awaits `fut`, failing the test if it takes longer than [`PATIENCE`].
pub(crate) async fn within<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, fut)
        .await
        .expect("timed out waiting")
}

/// An in-memory store with the sample catalogue (no users: tokens are issued directly).
pub(crate) async fn store() -> PetStore {
    let store = PetStore::in_memory();
    let system = Principal::system("test");
    for pet in petstore_core::seed::sample_pets() {
        store.create_pet(&system, pet).await.unwrap();
    }
    store
}

/// The pet called `name`.
pub(crate) async fn pet(store: &PetStore, name: &str) -> Pet {
    let page = store
        .pets(&Principal::system("test"), &PetQuery::default().q(name))
        .await
        .unwrap();
    page.data.into_iter().find(|p| p.name == name).unwrap()
}

/// A bearer token for `sub` with `scopes`.
pub(crate) fn token(store: &PetStore, scopes: impl IntoIterator<Item = Scope>) -> String {
    store.tokens().issue("tester", scopes).unwrap().access_token
}

/// A token that can write pets and orders (and read its own orders).
pub(crate) fn writer(store: &PetStore) -> String {
    token(
        store,
        [Scope::PetsWrite, Scope::OrdersRead, Scope::OrdersWrite],
    )
}

/// The MCP router served on 127.0.0.1:0; stops when dropped.
pub(crate) struct Http {
    pub(crate) addr: SocketAddr,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Http {
    pub(crate) async fn start(store: &PetStore, config: McpConfig) -> Self {
        Self::start_full(store, config, &Edge::new(), CancellationToken::new()).await
    }

    /// Served behind `edge`, stopping gracefully when `shutdown` is cancelled.
    pub(crate) async fn start_full(
        store: &PetStore,
        config: McpConfig,
        edge: &Edge,
        shutdown: CancellationToken,
    ) -> Self {
        let app = axum::Router::new().merge(petstore_mcp::router(
            store.clone(),
            config,
            edge,
            shutdown.clone(),
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await
                .unwrap();
        });
        Self {
            addr,
            task: Some(task),
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    /// Waits until the server has stopped (its shutdown token cancelled and every
    /// connection closed).
    pub(crate) async fn stopped(mut self) {
        let task = self.task.take().expect("running");
        within(task)
            .await
            .expect("graceful shutdown finishes once sessions and streams have ended");
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A client that records resource notifications delivered through callbacks
/// (2025-11-25 sessions; the current protocol delivers them to `listen` streams).
#[derive(Clone)]
pub(crate) struct Recorder {
    info: ClientConfig,
    notices: mpsc::UnboundedSender<Notice>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Notice {
    Updated(String),
    ListChanged,
}

impl ClientHandler for Recorder {
    fn get_info(&self) -> ClientConfig {
        self.info.clone()
    }

    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let _ = self.notices.send(Notice::Updated(params.uri));
    }

    async fn on_resource_list_changed(&self, _context: NotificationContext<RoleClient>) {
        let _ = self.notices.send(Notice::ListChanged);
    }
}

pub(crate) type Client = RunningService<RoleClient, Recorder>;

/// Which protocol a client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// 2026-07-28: `server/discover`, per-request metadata, no session.
    Current,
    /// 2025-11-25: `initialize` handshake (and a session over HTTP).
    Legacy,
}

/// Connects a client of `protocol` over `transport`; also returns the receiver of its
/// resource notifications.
pub(crate) async fn connect<T, E, A>(
    transport: T,
    protocol: Protocol,
) -> (Client, mpsc::UnboundedReceiver<Notice>)
where
    T: rmcp::transport::IntoTransport<RoleClient, E, A>,
    E: std::error::Error + Send + Sync + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    let lifecycle = match protocol {
        Protocol::Current => ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        },
        Protocol::Legacy => ClientLifecycleMode::Initialize,
    };
    let info = ClientConfig::default().with_protocol_version(match protocol {
        Protocol::Current => ProtocolVersion::V_2026_07_28,
        Protocol::Legacy => ProtocolVersion::V_2025_11_25,
    });
    let recorder = Recorder { info, notices: tx };
    let client = within(recorder.serve_with_lifecycle(transport, lifecycle))
        .await
        .expect("client connects");
    let negotiated = client
        .peer_info()
        .expect("server info")
        .protocol_version
        .clone();
    let expected = match protocol {
        Protocol::Current => ProtocolVersion::V_2026_07_28,
        Protocol::Legacy => ProtocolVersion::V_2025_11_25,
    };
    assert_eq!(negotiated, expected, "negotiated protocol version");
    (client, rx)
}

/// An HTTP client of `protocol`, with an optional bearer token.
pub(crate) async fn http_client(
    url: &str,
    protocol: Protocol,
    bearer: Option<&str>,
) -> (Client, mpsc::UnboundedReceiver<Notice>) {
    let mut config = StreamableHttpClientTransportConfig::with_uri(url);
    if let Some(bearer) = bearer {
        config = config.auth_header(bearer);
    }
    connect(StreamableHttpClientTransport::from_config(config), protocol).await
}

/// A stdio client of `protocol` talking to `serve_io` over an in-process pipe; the
/// handle yields what `serve_io` returned once the client is gone.
pub(crate) async fn stdio_client(
    store: &PetStore,
    principal: Principal,
    protocol: Protocol,
) -> (
    Client,
    mpsc::UnboundedReceiver<Notice>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let (client_end, server_end) = tokio::io::duplex(64 * 1024);
    let (reader, writer) = tokio::io::split(server_end);
    let server = tokio::spawn(petstore_mcp::serve_io(
        store.clone(),
        principal,
        reader,
        writer,
    ));
    let (client, notices) = connect(client_end, protocol).await;
    (client, notices, server)
}

/// `tools/call` with JSON arguments.
pub(crate) async fn call(client: &Client, tool: &str, arguments: Value) -> CallToolResult {
    let Value::Object(arguments) = arguments else {
        panic!("arguments must be an object");
    };
    let params = CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments);
    within(client.call_tool(params))
        .await
        .unwrap_or_else(|e| panic!("tools/call {tool} is a protocol error: {e}"))
}

/// The structured content of a successful tool call.
pub(crate) fn ok(result: CallToolResult) -> Value {
    assert_ne!(
        result.is_error,
        Some(true),
        "expected success, got {:?}",
        result.content
    );
    result.structured_content.expect("structured content")
}

/// The text of a failed tool call.
pub(crate) fn tool_error(result: CallToolResult) -> String {
    assert_eq!(
        result.is_error,
        Some(true),
        "expected a tool error: {result:?}"
    );
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `resources/read` of a JSON resource.
pub(crate) async fn read_json(client: &Client, uri: &str) -> Value {
    let result = within(client.read_resource(ReadResourceRequestParams::new(uri)))
        .await
        .unwrap_or_else(|e| panic!("resources/read {uri}: {e}"));
    let [
        ResourceContents::TextResourceContents {
            uri: got,
            mime_type,
            text,
            ..
        },
    ] = result.contents.as_slice()
    else {
        panic!("one text content expected: {:?}", result.contents);
    };
    assert_eq!(got, uri);
    assert_eq!(mime_type.as_deref(), Some("application/json"));
    serde_json::from_str(text).unwrap()
}

/// JSON arguments as an object.
pub(crate) fn object(value: Value) -> JsonObject {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}
