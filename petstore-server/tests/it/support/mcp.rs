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
