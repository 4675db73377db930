//! The MCP client (rmcp over streamable HTTP).

use rmcp::ServiceExt as _;
use rmcp::model::ClientConfig;
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;

use super::within;

/// An initialised MCP session.
pub(crate) type Mcp = RunningService<rmcp::RoleClient, ClientConfig>;

/// A session with `{base}/mcp`, with a bearer token when given. `Err` when the server
/// refuses to initialise it (a bad token is refused at the HTTP layer).
pub(crate) async fn connect(base: &str, token: Option<&str>) -> Result<Mcp, String> {
    let mut config = StreamableHttpClientTransportConfig::with_uri(format!("{base}/mcp"));
    if let Some(token) = token {
        config = config.auth_header(token.to_owned());
    }
    let transport = StreamableHttpClientTransport::from_config(config);
    within("MCP connection", ClientConfig::default().serve(transport))
        .await
        .map_err(|e| e.to_string())
}

/// A resource notification a [`Session`] received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Notice {
    /// `notifications/resources/updated` for this URI.
    Updated(String),
    /// `notifications/resources/list_changed`.
    ListChanged,
}

/// A client that hands every resource notification to a channel.
#[derive(Clone)]
pub(crate) struct Recorder {
    info: ClientConfig,
    notices: tokio::sync::mpsc::UnboundedSender<Notice>,
}

impl rmcp::ClientHandler for Recorder {
    fn get_info(&self) -> ClientConfig {
        self.info.clone()
    }

    async fn on_resource_updated(
        &self,
        params: rmcp::model::ResourceUpdatedNotificationParam,
        _context: rmcp::service::NotificationContext<rmcp::RoleClient>,
    ) {
        let _ = self.notices.send(Notice::Updated(params.uri));
    }

    async fn on_resource_list_changed(
        &self,
        _context: rmcp::service::NotificationContext<rmcp::RoleClient>,
    ) {
        let _ = self.notices.send(Notice::ListChanged);
    }
}

/// A 2025-11-25 session (`initialize`, then a session id) with `{base}/mcp`: its
/// `resources/subscribe` starts the session's follower of the log before it answers,
/// so every change committed afterwards is notified.
pub(crate) type Session = RunningService<rmcp::RoleClient, Recorder>;

/// A [`Session`] with a bearer token, and the receiver of its resource notifications.
pub(crate) async fn session(
    base: &str,
    token: &str,
) -> (Session, tokio::sync::mpsc::UnboundedReceiver<Notice>) {
    use rmcp::ClientServiceExt as _;
    let config = StreamableHttpClientTransportConfig::with_uri(format!("{base}/mcp"))
        .auth_header(token.to_owned());
    let transport = StreamableHttpClientTransport::from_config(config);
    let (notices, received) = tokio::sync::mpsc::unbounded_channel();
    let info =
        ClientConfig::default().with_protocol_version(rmcp::model::ProtocolVersion::V_2025_11_25);
    let recorder = Recorder { info, notices };
    let session = within(
        "an MCP session",
        recorder.serve_with_lifecycle(transport, rmcp::ClientLifecycleMode::Initialize),
    )
    .await
    .expect("the MCP session starts");
    (session, received)
}
