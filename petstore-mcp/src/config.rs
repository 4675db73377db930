//! Settings of the MCP-over-HTTP router.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Settings of [`crate::router`]: which `Host` and `Origin` headers are accepted,
/// whether clients of the 2025-11-25 protocol get sessions, whether a token is needed
/// even to read, and what the OAuth protected-resource metadata (RFC 9728) says.
///
/// ```
/// let config = petstore_mcp::McpConfig::default()
///     .allowed_hosts(["petstore.example", "localhost"])
///     .allowed_origins(["https://app.petstore.example"])
///     .legacy_sessions(true)
///     .require_auth_for_reads(false)
///     .resource("https://petstore.example/mcp")
///     .authorization_servers(["https://login.petstore.example"]);
/// assert_eq!(config.allowed_hosts.len(), 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct McpConfig {
    /// Accepted `Host` names (`host` matches any port, `host:port` only that port).
    /// Defaults to loopback only (`localhost`, `127.0.0.1`, `::1`), which defeats DNS
    /// rebinding against a locally running server; a public deployment lists its own
    /// names. An empty list accepts any `Host` (not recommended). Other hosts get 403.
    pub allowed_hosts: Vec<String>,
    /// Accepted browser `Origin`s, with scheme (`https://app.example`,
    /// `http://localhost:*` for any port). Requests without an `Origin` (every
    /// non-browser client) always pass; requests with an unlisted one get 403. Defaults to
    /// loopback origins on any port, so local tools such as the MCP Inspector work; an
    /// empty list refuses every request that carries an `Origin`.
    pub allowed_origins: Vec<String>,
    /// Whether clients of protocol 2025-11-25 and older (which start with `initialize`)
    /// get a session (`Mcp-Session-Id`), through which they receive
    /// `notifications/resources/updated` and `list_changed`. Default true. Clients of
    /// the current protocol are always served statelessly and follow changes with
    /// `subscriptions/listen`.
    pub legacy_sessions: bool,
    /// When true, every request needs a valid bearer token (missing: 401). By default
    /// only the write tools need one (they need its scopes); a store whose
    /// `ServiceConfig::require_auth_for_reads` is set closes reads the same way.
    pub require_auth_for_reads: bool,
    /// The public URL of the MCP endpoint (`https://petstore.example/mcp`): the
    /// `resource` of the protected-resource metadata, and where the 401 challenge's
    /// `resource_metadata` points. Unset (the default), both are made from each
    /// request's `Host` with `http://`: set it behind TLS or a reverse proxy.
    pub resource: Option<String>,
    /// The OAuth authorization servers (issuer URLs) that issue tokens for this
    /// resource, listed in the metadata as `authorization_servers` (default: none; the
    /// server's own `POST /v1/auth/token` issues them).
    pub authorization_servers: Vec<String>,
    /// Sessions ([`McpConfig::legacy_sessions`]) open at once. One more `initialize`
    /// is refused with 503, a `Retry-After` and a JSON-RPC error saying so, until a
    /// session ends or expires (default 1000).
    pub max_sessions: usize,
    /// A session that receives no request for this long expires and its id answers
    /// 404 (the client starts a new one), so abandoned sessions give their place back
    /// (default 5 minutes).
    pub session_idle_timeout: Duration,
}

impl Default for McpConfig {
    fn default() -> Self {
        Self {
            allowed_hosts: ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec(),
            allowed_origins: [
                "http://localhost:*",
                "https://localhost:*",
                "http://127.0.0.1:*",
                "https://127.0.0.1:*",
                "http://[::1]:*",
                "https://[::1]:*",
            ]
            .map(String::from)
            .to_vec(),
            legacy_sessions: true,
            require_auth_for_reads: false,
            resource: None,
            authorization_servers: Vec::new(),
            max_sessions: 1000,
            session_idle_timeout: Duration::from_secs(300),
        }
    }
}

impl McpConfig {
    /// Sets [`McpConfig::allowed_hosts`].
    pub fn allowed_hosts(mut self, hosts: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.allowed_hosts = hosts.into_iter().map(Into::into).collect();
        self
    }

    /// Sets [`McpConfig::allowed_origins`].
    pub fn allowed_origins(mut self, origins: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.allowed_origins = origins.into_iter().map(Into::into).collect();
        self
    }

    /// Sets [`McpConfig::legacy_sessions`].
    pub fn legacy_sessions(mut self, on: bool) -> Self {
        self.legacy_sessions = on;
        self
    }

    /// Sets [`McpConfig::require_auth_for_reads`].
    pub fn require_auth_for_reads(mut self, on: bool) -> Self {
        self.require_auth_for_reads = on;
        self
    }

    /// Sets [`McpConfig::resource`].
    pub fn resource(mut self, url: impl Into<String>) -> Self {
        self.resource = Some(url.into());
        self
    }

    /// Sets [`McpConfig::authorization_servers`].
    pub fn authorization_servers(
        mut self,
        issuers: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.authorization_servers = issuers.into_iter().map(Into::into).collect();
        self
    }

    /// Sets [`McpConfig::max_sessions`] (at least 1).
    pub fn max_sessions(mut self, sessions: usize) -> Self {
        self.max_sessions = sessions.max(1);
        self
    }

    /// Sets [`McpConfig::session_idle_timeout`] (at least 1 ms).
    pub fn session_idle_timeout(mut self, after: Duration) -> Self {
        self.session_idle_timeout = after.max(Duration::from_millis(1));
        self
    }
}
