//! The composition: every protocol over one `PetStore` (in memory, or on SQLite or
//! PostgreSQL with `--database-url`), its settings and its
//! graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse as _, Response};
use clap::{Args, Parser, Subcommand};
use petstore_core::{PetStore, RateLimiter, Scope, ServiceConfig, TokenAuthority};
use petstore_http::{Edge, Health, Problem, TrustedProxies};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Command line of `petstore-server`.
#[derive(Debug, Parser)]
#[command(
    name = "petstore-server",
    version,
    about = "The Pet Store over every API pattern: REST, GraphQL, gRPC, SSE, WebSocket, MQTT, webhooks, polling and MCP"
)]
pub struct Cli {
    /// Read settings from this TOML file (keys are the long flag names, e.g.
    /// `http-addr = "0.0.0.0:8080"`, `drain-delay = 5`); flags and `PETSTORE_*`
    /// variables override it.
    #[arg(long, env = "PETSTORE_CONFIG", global = true)]
    pub config: Option<std::path::PathBuf>,
    /// How log lines are written to stderr (`RUST_LOG` sets what is logged).
    #[arg(long, env = "PETSTORE_LOG_FORMAT", value_enum, default_value_t)]
    pub log_format: crate::telemetry::LogFormat,
    /// Also export spans over OTLP/HTTP (protobuf) to this OpenTelemetry collector
    /// (its base URL, e.g. `http://localhost:4318`: spans go to `/v1/traces`). Needs
    /// the `otlp` cargo feature.
    #[arg(long, env = "PETSTORE_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// Server settings.
    #[command(flatten)]
    pub args: ServerArgs,
    /// Run something other than the network server.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve MCP over stdin/stdout (no network; logs go to stderr). Acts with every
    /// scope, or with the scopes of `PETSTORE_TOKEN` when set.
    McpStdio,
}

/// Settings of the server (each also readable from the environment).
#[derive(Clone, Args)]
pub struct ServerArgs {
    /// HTTP address for REST, GraphQL, SSE, WebSocket, MCP over HTTP and docs (port 0: any free port).
    #[arg(long, env = "PETSTORE_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// gRPC (h2c) address.
    #[arg(long, env = "PETSTORE_GRPC_ADDR", default_value = "127.0.0.1:50051")]
    pub grpc_addr: SocketAddr,
    /// Address of the embedded MQTT broker (rumqttd).
    #[arg(long, env = "PETSTORE_MQTT_ADDR", default_value = "127.0.0.1:1883")]
    pub mqtt_addr: SocketAddr,
    /// Use this external MQTT broker (`mqtt://host:port`) instead of the embedded one.
    #[arg(long, env = "PETSTORE_MQTT_URL")]
    pub mqtt_url: Option<String>,
    /// The bridge's user name on the external broker (e.g. `petstore-bridge` with
    /// petstore-mqtt's Mosquitto setup).
    #[arg(long, env = "PETSTORE_MQTT_USERNAME", requires = "mqtt_url")]
    pub mqtt_username: Option<String>,
    /// The bridge's password on the external broker.
    #[arg(
        long,
        env = "PETSTORE_MQTT_PASSWORD",
        hide_env_values = true,
        requires = "mqtt_username"
    )]
    pub mqtt_password: Option<String>,
    /// Keep the data in this database: `sqlite://PATH` (the file is created if
    /// missing) or `postgres://...` (several instances on one database are one store).
    /// Without it the store is in memory and lost at exit.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Do not start the MQTT bridge (nor the embedded broker).
    #[arg(long, env = "PETSTORE_NO_MQTT")]
    pub no_mqtt: bool,
    /// Load the sample catalogue and users (`--seed=false` to start empty).
    #[arg(long, env = "PETSTORE_SEED", default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub seed: bool,
    /// HS256 secret for bearer tokens (default: random per run).
    #[arg(long, env = "PETSTORE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Also accept an identity provider's RS256/ES256 tokens, checked against the JWK
    /// Set at this URL (https, or http on loopback); needs `--jwt-issuer` and
    /// `--jwt-audience`.
    #[arg(long, env = "PETSTORE_JWKS_URL", requires_all = ["jwt_issuer", "jwt_audience"])]
    pub jwks_url: Option<String>,
    /// The `iss` every identity-provider token must carry (with `--jwks-url`).
    #[arg(long, env = "PETSTORE_JWT_ISSUER", requires = "jwks_url")]
    pub jwt_issuer: Option<String>,
    /// The `aud` every identity-provider token must name (with `--jwks-url`).
    #[arg(long, env = "PETSTORE_JWT_AUDIENCE", requires = "jwks_url")]
    pub jwt_audience: Option<String>,
    /// Require `pets:read` / `orders:read` for reads too.
    #[arg(long, env = "PETSTORE_REQUIRE_AUTH_FOR_READS")]
    pub require_auth_for_reads: bool,
    /// Standard Webhooks secret (`whsec_...`) that payment-provider webhooks are signed with.
    #[arg(long, env = "PETSTORE_PAYMENTS_WEBHOOK_SECRET", hide_env_values = true)]
    pub payments_webhook_secret: Option<String>,
    /// Rate-limit every protocol with one budget per client IP / token subject (429 and
    /// RESOURCE_EXHAUSTED with `RateLimit` / `Retry-After` headers).
    #[arg(long, env = "PETSTORE_RATE_LIMIT")]
    pub rate_limit: bool,
    /// With `--rate-limit`: requests per minute of one anonymous client (per IP).
    #[arg(long, env = "PETSTORE_RATE_LIMIT_ANONYMOUS", default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_limit_anonymous: u32,
    /// With `--rate-limit`: requests per minute of one token subject, from any address.
    #[arg(long, env = "PETSTORE_RATE_LIMIT_AUTHENTICATED", default_value_t = 1200, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_limit_authenticated: u32,
    /// Reverse proxies whose `Forwarded` / `X-Forwarded-For` headers name the client
    /// (addresses or CIDR ranges, comma-separated; default: trust none).
    #[arg(long, env = "PETSTORE_TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: TrustedProxies,
    /// At shutdown, how long `/readyz` answers 503 and gRPC health reports NOT_SERVING
    /// while requests and calls are still served, so that load balancers stop sending
    /// traffic first (seconds, or a duration such as `5s`; 0 for none).
    #[arg(long, env = "PETSTORE_DRAIN_DELAY", default_value = "0", value_parser = duration_or_zero)]
    pub drain_delay: Duration,
    /// Do not serve Prometheus metrics at `/metrics` (nor install the recorder).
    #[arg(long, env = "PETSTORE_NO_METRICS")]
    pub no_metrics: bool,
    /// Seconds an HTTP client may take to send a request's head, counted from when the
    /// connection starts waiting for it: a new connection's first request, and the next
    /// one on a kept-alive connection, so this is the idle keep-alive timeout too. The
    /// connection is closed when it passes.
    #[arg(long, env = "PETSTORE_HTTP_HEADER_TIMEOUT", default_value = "15", value_parser = seconds)]
    pub http_header_timeout: Duration,
    /// Seconds an HTTP request may take until its response starts, reading its body
    /// included: 408 (a `timeout` problem) after it, and the connection is closed. Long
    /// polls get their wait on top; SSE, WebSocket and MCP streams are not cut once
    /// their response has started.
    #[arg(long, env = "PETSTORE_HTTP_REQUEST_TIMEOUT", default_value = "30", value_parser = seconds)]
    pub http_request_timeout: Duration,
    /// HTTP connections open at once, WebSockets and streams included. Beyond it a new
    /// connection is closed as soon as it is accepted, and the log says so once until
    /// the count falls again.
    #[arg(long, env = "PETSTORE_HTTP_MAX_CONNECTIONS", default_value_t = 1024)]
    pub http_max_connections: usize,
    /// SSE streams one caller (a token's subject, or a client address when anonymous)
    /// may have open at once; one more gets 429.
    #[arg(
        long,
        env = "PETSTORE_SSE_MAX_STREAMS_PER_CALLER",
        default_value_t = 16
    )]
    pub sse_max_streams_per_caller: usize,
    /// MCP sessions (clients of protocol 2025-11-25 and older) open at once; one more
    /// `initialize` gets 503 with a JSON-RPC error until a session ends or expires.
    #[arg(long, env = "PETSTORE_MCP_MAX_SESSIONS", default_value_t = 1000)]
    pub mcp_max_sessions: usize,
    /// Seconds after which an MCP session that received no request expires.
    #[arg(long, env = "PETSTORE_MCP_SESSION_IDLE_TIMEOUT", default_value = "300", value_parser = seconds)]
    pub mcp_session_idle_timeout: Duration,
    /// Seconds between HTTP/2 keepalive pings on gRPC connections; a client that does
    /// not answer within `--grpc-keepalive-timeout` is dropped and its streams freed.
    #[arg(long, env = "PETSTORE_GRPC_KEEPALIVE_INTERVAL", default_value = "30", value_parser = seconds)]
    pub grpc_keepalive_interval: Duration,
    /// Seconds a gRPC keepalive ping may go unanswered.
    #[arg(long, env = "PETSTORE_GRPC_KEEPALIVE_TIMEOUT", default_value = "10", value_parser = seconds)]
    pub grpc_keepalive_timeout: Duration,
    /// gRPC calls (HTTP/2 streams, open streaming calls included) one connection may
    /// have open at once; the client is told in the HTTP/2 settings.
    #[arg(
        long,
        env = "PETSTORE_GRPC_MAX_CONCURRENT_STREAMS",
        default_value_t = 256
    )]
    pub grpc_max_concurrent_streams: u32,
    /// gRPC requests one connection may have in service at once; more wait.
    #[arg(
        long,
        env = "PETSTORE_GRPC_CONCURRENCY_PER_CONNECTION",
        default_value_t = 64
    )]
    pub grpc_concurrency_per_connection: usize,
    /// Largest gRPC message received or sent, in bytes; a larger request fails with
    /// `OUT_OF_RANGE` before it reaches the store.
    #[arg(long, env = "PETSTORE_GRPC_MAX_MESSAGE_SIZE", default_value_t = 4 * 1024 * 1024)]
    pub grpc_max_message_size: usize,
    /// Seconds a unary gRPC call (reading its request included) or the opening of a
    /// stream may take; a client's shorter `grpc-timeout` wins.
    #[arg(long, env = "PETSTORE_GRPC_REQUEST_TIMEOUT", default_value = "30", value_parser = seconds)]
    pub grpc_request_timeout: Duration,
    /// gRPC connections open at once; one more is closed as soon as it is accepted, and
    /// the log says so once until the count falls again.
    #[arg(long, env = "PETSTORE_GRPC_MAX_CONNECTIONS", default_value_t = 1024)]
    pub grpc_max_connections: usize,
}

/// A duration above zero: a number of seconds (fractions allowed, `2.5`) or a
/// duration with units (`30s`, `500ms`, `1m 30s`, as `humantime` reads them).
fn seconds(value: &str) -> Result<Duration, String> {
    let duration = duration_or_zero(value)?;
    if duration.is_zero() {
        return Err(format!("`{value}`: the duration must be above 0"));
    }
    Ok(duration)
}

/// Like [`seconds`], zero allowed; at most a year (deadlines are computed from these).
fn duration_or_zero(value: &str) -> Result<Duration, String> {
    const MAX: Duration = Duration::from_secs(365 * 24 * 60 * 60);
    let value = value.trim();
    let duration = if value.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && value.chars().all(|c| c.is_ascii_digit() || c == '.')
    {
        let secs: f64 = value
            .parse()
            .map_err(|_| format!("`{value}` is not a number of seconds"))?;
        Duration::try_from_secs_f64(secs).map_err(|e| format!("`{value}`: {e}"))?
    } else {
        humantime::parse_duration(value).map_err(|e| {
            format!("`{value}` is neither a number of seconds nor a duration such as `30s` ({e})")
        })?
    };
    if duration > MAX {
        return Err(format!("`{value}`: at most a year"));
    }
    Ok(duration)
}

impl std::fmt::Debug for ServerArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redact = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("ServerArgs")
            .field("http_addr", &self.http_addr)
            .field("grpc_addr", &self.grpc_addr)
            .field("mqtt_addr", &self.mqtt_addr)
            .field(
                "mqtt_url",
                &self
                    .mqtt_url
                    .as_deref()
                    .map(petstore_mqtt::MqttConfig::redact_url),
            )
            .field("mqtt_username", &self.mqtt_username)
            .field("mqtt_password", &redact(&self.mqtt_password))
            .field(
                "database_url",
                &self.database_url.as_deref().map(storage_name),
            )
            .field("no_mqtt", &self.no_mqtt)
            .field("seed", &self.seed)
            .field("jwt_secret", &redact(&self.jwt_secret))
            .field("jwks_url", &self.jwks_url)
            .field("jwt_issuer", &self.jwt_issuer)
            .field("jwt_audience", &self.jwt_audience)
            .field("require_auth_for_reads", &self.require_auth_for_reads)
            .field(
                "payments_webhook_secret",
                &redact(&self.payments_webhook_secret),
            )
            .field("rate_limit", &self.rate_limit)
            .field("rate_limit_anonymous", &self.rate_limit_anonymous)
            .field("rate_limit_authenticated", &self.rate_limit_authenticated)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("drain_delay", &self.drain_delay)
            .field("no_metrics", &self.no_metrics)
            .field("http_header_timeout", &self.http_header_timeout)
            .field("http_request_timeout", &self.http_request_timeout)
            .field("http_max_connections", &self.http_max_connections)
            .field(
                "sse_max_streams_per_caller",
                &self.sse_max_streams_per_caller,
            )
            .field("mcp_max_sessions", &self.mcp_max_sessions)
            .field("mcp_session_idle_timeout", &self.mcp_session_idle_timeout)
            .field("grpc_keepalive_interval", &self.grpc_keepalive_interval)
            .field("grpc_keepalive_timeout", &self.grpc_keepalive_timeout)
            .field(
                "grpc_max_concurrent_streams",
                &self.grpc_max_concurrent_streams,
            )
            .field(
                "grpc_concurrency_per_connection",
                &self.grpc_concurrency_per_connection,
            )
            .field("grpc_max_message_size", &self.grpc_max_message_size)
            .field("grpc_max_connections", &self.grpc_max_connections)
            .field("grpc_request_timeout", &self.grpc_request_timeout)
            .finish()
    }
}

fn rate_limit(args: &ServerArgs) -> petstore_core::RateLimitConfig {
    if args.rate_limit {
        petstore_core::RateLimitConfig::default()
            .requests(args.rate_limit_anonymous)
            .authenticated_requests(args.rate_limit_authenticated)
    } else {
        petstore_core::RateLimitConfig::disabled()
    }
}

impl Default for ServerArgs {
    fn default() -> Self {
        Cli::parse_from(["petstore-server"]).args
    }
}

impl ServerArgs {
    /// Every listener on a free loopback port (for tests and the tour).
    pub fn ephemeral() -> Self {
        let any: SocketAddr = "127.0.0.1:0".parse().expect("valid address");
        Self {
            http_addr: any,
            grpc_addr: any,
            mqtt_addr: any,
            ..Self::default()
        }
    }
}

/// Where the data lives, as the banner says it (never the URL's password).
fn storage_name(url: &str) -> String {
    match url.split_once(':') {
        Some(("sqlite", rest)) => format!("SQLite {}", rest.trim_start_matches("//")),
        Some(("postgres" | "postgresql", rest)) => {
            // `//user:password@host:port/db?...`: keep host, port and database.
            let rest = rest.trim_start_matches("//");
            let at_host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
            let host_db = at_host.split('?').next().unwrap_or_default();
            format!("PostgreSQL {host_db}")
        }
        _ => "an unknown database".to_owned(),
    }
}

/// What the server keeps its data in.
#[derive(Debug, Clone)]
pub struct Storage {
    /// The service over the store.
    pub service: PetStore,
    /// The database store (`--database-url`); `None` when the data is in memory.
    pub sql: Option<petstore_sql::SqlStore>,
    /// What the banner says about it.
    pub description: String,
}

/// Opens the store of `args` (the database of `--database-url`, else memory) and
/// builds the service over it; seeds the sample catalogue once per store.
pub async fn open_storage(args: &ServerArgs) -> anyhow::Result<Storage> {
    let config = ServiceConfig::default().require_auth_for_reads(args.require_auth_for_reads);
    let mut auth = match &args.jwt_secret {
        Some(secret) => TokenAuthority::new(secret.as_bytes(), config.token_ttl),
        None => TokenAuthority::random(config.token_ttl),
    };
    if let Some(url) = &args.jwks_url {
        // clap makes the three go together; a `ServerArgs` built in code may not.
        let (Some(issuer), Some(audience)) = (&args.jwt_issuer, &args.jwt_audience) else {
            anyhow::bail!("--jwks-url needs --jwt-issuer and --jwt-audience");
        };
        auth = auth.with_verifier(crate::jwks::verifier(url, issuer, audience).await?);
    }
    let log = petstore_core::LogConfig::default();
    metrics::gauge!(petstore_core::telemetry::LOG_RETENTION_EVENTS).set(log.retention as f64);
    let (store, sql, description) = match &args.database_url {
        Some(url) => {
            let sql = petstore_sql::SqlStore::connect(url, log)
                .await
                .with_context(|| format!("opening the database ({})", storage_name(url)))?;
            let store = PetStore::new(sql.clone(), auth, config);
            (store, Some(sql), storage_name(url))
        }
        None => (
            PetStore::new(petstore_core::MemoryStore::new(log), auth, config),
            None,
            "in memory (lost at exit; --database-url sqlite://FILE keeps it)".to_owned(),
        ),
    };
    if args.seed {
        // Once per store: a restart on the same database does not add it again.
        petstore_core::seed::seed(&store)
            .await
            .context("seeding the sample catalogue")?;
    }
    Ok(Storage {
        service: store,
        sql,
        description,
    })
}

/// Builds the service the server exposes ([`open_storage`]'s service).
pub async fn build_store(args: &ServerArgs) -> anyhow::Result<PetStore> {
    Ok(open_storage(args).await?.service)
}

/// A running server.
#[derive(Debug)]
pub struct RunningServer {
    /// The service behind every protocol.
    pub store: PetStore,
    /// Where the data lives, as the banner says it.
    pub storage: String,
    /// Where HTTP protocols listen.
    pub http_addr: SocketAddr,
    /// Where gRPC listens.
    pub grpc_addr: Option<SocketAddr>,
    /// Where the MQTT broker listens.
    pub mqtt_addr: Option<SocketAddr>,
    /// The embedded broker (`None` with `--mqtt-url`): its own MQTT 5 listener, which
    /// the bridge uses (skipping the front that checks every other client), and the
    /// bridge's credentials.
    pub mqtt_broker: Option<petstore_mqtt::broker::EmbeddedBroker>,
    /// A development token with every scope.
    pub dev_token: String,
    /// The one rate limiter of every protocol.
    pub limiter: Arc<RateLimiter>,
    shutdown: CancellationToken,
    drain_delay: Duration,
    tasks: Vec<JoinHandle<anyhow::Result<()>>>,
}

impl RunningServer {
    /// The base URL of the HTTP listener.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// One line per protocol, as printed at start.
    pub fn banner(&self) -> Vec<String> {
        let http = self.http_url();
        let ws = format!("ws://{}", self.http_addr);
        let mut lines = vec![
            format!(
                "REST        {http}/v1/pets   (OpenAPI: {http}/openapi.json, docs: {http}/docs)"
            ),
            format!(
                "AsyncAPI    {http}/asyncapi.json   (SSE, WebSocket, MQTT and webhook channels)"
            ),
            format!("polling     {http}/v1/events?since=   and {http}/v1/pets/changes?since="),
            format!(
                "GraphQL     {http}/graphql   (GraphiQL: {http}/graphiql, subscriptions: {ws}/graphql)"
            ),
            format!("SSE         {http}/v1/stream/pets"),
            format!("WebSocket   {ws}/v1/ws?token=...   and {ws}/v1/ws/chat?token=..."),
            format!("MCP         {http}/mcp   (stdio: petstore-server mcp-stdio)"),
            format!(
                "webhooks    {http}/v1/webhooks   (inbound payments: {http}/v1/payments/webhook)"
            ),
        ];
        if let Some(grpc) = self.grpc_addr {
            lines.push(format!(
                "gRPC        http://{grpc}   (reflection and health enabled)"
            ));
        }
        if let Some(mqtt) = self.mqtt_addr {
            lines.push(format!(
                "MQTT        mqtt://{mqtt}   (topics under petstore/; a token as the password for orders and chat)"
            ));
        }
        lines.push(format!("store       {}", self.storage));
        lines
    }

    /// Starts the drain without waiting for it: `/readyz` answers 503 and gRPC health
    /// NOT_SERVING, open SSE streams, WebSockets (1001), GraphQL WebSockets and MCP
    /// sessions end; the listeners keep serving for the drain delay, and the MQTT bridge
    /// and the webhook dispatcher keep delivering until both listeners have stopped
    /// (what is written meanwhile is still delivered). [`RunningServer::shutdown`]
    /// finishes the job.
    pub fn begin_drain(&self) {
        self.shutdown.cancel();
    }

    /// Stops every listener gracefully: the drain starts ([`RunningServer::begin_drain`]),
    /// in-flight requests finish, and the listeners stop after the drain delay, within
    /// [`SHUTDOWN_GRACE`]; what was still open then is closed, and counted in
    /// [`Stopped::forced`].
    pub async fn shutdown(self) -> anyhow::Result<Stopped> {
        self.shutdown.cancel();
        let deadline = tokio::time::Instant::now() + self.drain_delay + SHUTDOWN_GRACE;
        let mut stopped = Stopped { forced: 0 };
        for mut task in self.tasks {
            match tokio::time::timeout_at(deadline, &mut task).await {
                Ok(joined) => joined.context("server task panicked")??,
                Err(_) => {
                    tracing::warn!("connections still open after {SHUTDOWN_GRACE:?}; closing them");
                    task.abort();
                    stopped.forced += 1;
                }
            }
        }
        Ok(stopped)
    }
}

/// How [`RunningServer::shutdown`] went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stopped {
    /// Server tasks (listeners, the webhook dispatcher, the MQTT bridge) still busy
    /// when the grace period ran out, and stopped by force: 0 when everything
    /// finished in time.
    pub forced: usize,
}

/// The webhook service of the server: loopback targets are allowed (dev mode;
/// the library default refuses private addresses). With a database (`sql`), endpoints,
/// secrets, cursors, pending deliveries and attempts live in it.
pub fn webhooks(
    store: &PetStore,
    sql: Option<&petstore_sql::SqlStore>,
    args: &ServerArgs,
    shutdown: &CancellationToken,
) -> anyhow::Result<petstore_webhooks::Webhooks> {
    let payments_secret = args
        .payments_webhook_secret
        .as_deref()
        .map(str::parse::<petstore_webhooks::WebhookSecret>)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--payments-webhook-secret: {e}"))?;
    let config = petstore_webhooks::WebhookConfig::default()
        .allow_loopback(true)
        .payments_secret(payments_secret);
    Ok(match sql {
        Some(sql) => petstore_webhooks::Webhooks::with_store(
            store.clone(),
            config,
            petstore_sql::SqlWebhookStore::new(sql),
            shutdown.clone(),
        ),
        None => petstore_webhooks::Webhooks::new(store.clone(), config, shutdown.clone()),
    })
}

/// 408 (as a `timeout` problem) for a request whose response has not started within
/// `--http-request-timeout`: a slow body, most often. REST has its own timeout, with
/// the waits of long polls on top; streams are not cut, as their response starts at
/// once.
async fn request_timeout(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => Problem::new(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            format!("the request did not complete within {limit:?}"),
        )
        .into_response(),
    }
}

/// The HTTP edge every HTTP adapter of the server shares: the one rate limiter (gRPC
/// gets the same one) and the trusted proxies.
pub fn edge(args: &ServerArgs, limiter: &Arc<RateLimiter>) -> Edge {
    Edge::new()
        .rate_limiter(limiter.clone())
        .trusted_proxies(args.trusted_proxies.clone())
}

/// The HTTP router of every HTTP protocol (webhook routes come from [`webhooks`],
/// `/livez` and `/readyz` from the server's [`Health`]), each behind `edge`, with the
/// request timeout and stream limits of `args`.
/// Cancelling `shutdown` ends open SSE streams, WebSocket connections (GraphQL's too),
/// MCP sessions and waiting long polls.
///
/// It has a fallback of its own (a `no_route` problem behind `edge`, for every path
/// no route matches): merge it into an app without one, since axum refuses to merge
/// two routers that both have a fallback.
pub fn http_router(
    store: &PetStore,
    args: &ServerArgs,
    edge: &Edge,
    shutdown: &CancellationToken,
) -> Router {
    Router::new()
        .merge(crate::asyncapi::router())
        .merge(petstore_realtime::router(
            store.clone(),
            petstore_realtime::RealtimeConfig::default()
                .max_streams_per_caller(args.sse_max_streams_per_caller),
            edge,
            shutdown.clone(),
        ))
        .merge(petstore_graphql::router(
            store.clone(),
            petstore_graphql::GraphQlConfig::default(),
            edge,
            shutdown.clone(),
        ))
        .merge(petstore_mcp::router(
            store.clone(),
            petstore_mcp::McpConfig::default()
                .max_sessions(args.mcp_max_sessions)
                .session_idle_timeout(args.mcp_session_idle_timeout),
            edge,
            shutdown.clone(),
        ))
        .layer(from_fn_with_state(
            args.http_request_timeout,
            request_timeout,
        ))
        .merge(petstore_rest::router(
            store.clone(),
            petstore_rest::RestConfig::default()
                .request_timeout(args.http_request_timeout)
                .openapi_fragment(petstore_webhooks::openapi_fragment()),
            edge,
            shutdown.clone(),
        ))
        // A path no router matches gets the edge too (a request id, a log line, the
        // `unmatched` route in the metrics, the rate limit) and a `no_route` problem:
        // merged routers keep their own layers, not their fallbacks.
        .fallback_service(
            Router::new()
                .fallback(|| async { axum::http::StatusCode::NOT_FOUND })
                .layer(axum::middleware::map_response(
                    petstore_http::ensure_problem,
                ))
                .layer(edge.layer(store.clone())),
        )
}

/// The gRPC settings of `args`: keepalive, concurrency limits, message sizes and the
/// request timeout.
fn grpc_config(args: &ServerArgs) -> petstore_grpc::GrpcConfig {
    petstore_grpc::GrpcConfig::default()
        .keepalive_interval(Some(args.grpc_keepalive_interval))
        .keepalive_timeout(args.grpc_keepalive_timeout)
        .max_concurrent_streams(Some(args.grpc_max_concurrent_streams))
        .concurrency_limit_per_connection(Some(args.grpc_concurrency_per_connection))
        .max_message_size(args.grpc_max_message_size)
        .request_timeout(Some(args.grpc_request_timeout))
}

/// Liveness and readiness (`/livez`, `/readyz`, and `/healthz` as an alias of
/// `/livez`): not ready from the moment `shutdown` is cancelled, nor while the store
/// does not answer or the webhook dispatcher does not run.
pub fn health(
    store: &PetStore,
    webhooks: &petstore_webhooks::Webhooks,
    shutdown: &CancellationToken,
) -> Health {
    let health = Health::new(shutdown.clone());
    let store = store.clone();
    health.check("store", move || {
        let store = store.clone();
        async move { store.head().await.map(drop).map_err(|e| e.to_string()) }
    });
    let webhooks = webhooks.clone();
    health.check("webhook_dispatcher", move || {
        let running = webhooks.is_dispatching();
        async move {
            running
                .then_some(())
                .ok_or_else(|| "the webhook dispatcher is not running".to_owned())
        }
    });
    health
}

/// `/livez`, `/readyz`, and the former `/healthz` (liveness, as it always answered).
fn health_router(health: &Health) -> Router {
    health
        .router()
        .route("/healthz", axum::routing::get(|| async { "ok" }))
}

/// Starts every protocol and returns once all listeners are bound.
pub async fn start(args: ServerArgs) -> anyhow::Result<RunningServer> {
    // The recorder first, so that the store's opening and seeding are counted too.
    if !args.no_metrics {
        crate::telemetry::prometheus();
    }
    let storage = open_storage(&args).await?;
    start_with_storage(storage, args).await
}

/// Like [`start`], over a service built by the caller (a backend of its own, or one
/// that tests observe); the store options of `args` are not used, and webhook state
/// stays in memory.
pub async fn start_with_store(store: PetStore, args: ServerArgs) -> anyhow::Result<RunningServer> {
    let storage = Storage {
        service: store,
        sql: None,
        description: "a store given by the caller".to_owned(),
    };
    start_with_storage(storage, args).await
}

async fn start_with_storage(storage: Storage, args: ServerArgs) -> anyhow::Result<RunningServer> {
    let drain_delay = args.drain_delay;
    let Storage {
        service: store,
        sql,
        description: storage,
    } = storage;
    let shutdown = CancellationToken::new();
    // Until the server is returned, an error stops whatever was started.
    let stop_on_error = shutdown.clone().drop_guard();
    // The webhook dispatcher and the MQTT bridge run until both listeners have
    // stopped, the drain delay and the requests in flight included: what is written
    // while draining is still delivered.
    let workers = CancellationToken::new();
    let (http_stopped, http_done) = tokio::sync::oneshot::channel::<()>();
    let (grpc_stopped, grpc_done) = tokio::sync::oneshot::channel::<()>();
    let limiter = Arc::new(RateLimiter::new(rate_limit(&args)));
    let edge = edge(&args, &limiter);
    let mut tasks = Vec::new();

    let http = TcpListener::bind(args.http_addr)
        .await
        .with_context(|| format!("binding HTTP on {}", args.http_addr))?;
    let http_addr = http.local_addr()?;
    let webhooks = webhooks(&store, sql.as_ref(), &args, &workers)?;
    let health = health(&store, &webhooks, &shutdown);
    let mut app = webhooks
        .router(&edge)
        .layer(from_fn_with_state(
            args.http_request_timeout,
            request_timeout,
        ))
        .merge(http_router(&store, &args, &edge, &shutdown))
        .merge(health_router(&health));
    if !args.no_metrics
        && let Some(handle) = crate::telemetry::prometheus()
    {
        app = app.merge(crate::telemetry::metrics_router(handle));
    }
    // The log head as the store holds it at start (each event published moves it on).
    if let Ok(head) = store.head().await {
        metrics::gauge!(petstore_core::telemetry::LOG_HEAD_OFFSET).set(head.offset as f64);
    }
    tasks.push(tokio::spawn(async move {
        webhooks.run().await;
        Ok(())
    }));
    // The listener keeps serving through the drain delay (readiness already says 503).
    let draining = shutdown.clone();
    let stop = async move {
        draining.cancelled().await;
        tokio::time::sleep(drain_delay).await;
    };
    let limits = crate::http::HttpLimits {
        header_timeout: args.http_header_timeout,
        max_connections: args.http_max_connections,
    };
    tasks.push(tokio::spawn(async move {
        crate::http::serve(http, app, limits, stop).await;
        drop(http_stopped);
        Ok(())
    }));

    let grpc = TcpListener::bind(args.grpc_addr)
        .await
        .with_context(|| format!("binding gRPC on {}", args.grpc_addr))?;
    let grpc_addr = grpc.local_addr()?;
    let grpc_server = petstore_grpc::GrpcServer::new(
        store.clone(),
        grpc_config(&args).drain_delay(drain_delay),
        shutdown.clone(),
    )
    .rate_limiter(limiter.clone());
    let incoming = crate::connections::limited_incoming(
        grpc,
        crate::connections::ConnectionLimit::new("gRPC", args.grpc_max_connections),
    );
    tasks.push(tokio::spawn(async move {
        let served = grpc_server
            .serve_with_incoming(incoming)
            .await
            .context("gRPC server");
        drop(grpc_stopped);
        served
    }));
    // (A listener task that ends or is aborted drops its sender: either way it is done.)
    tasks.push(tokio::spawn({
        let workers = workers.clone();
        async move {
            let _ = http_done.await;
            let _ = grpc_done.await;
            workers.cancel();
            Ok(())
        }
    }));

    let mut mqtt_addr = None;
    let mut mqtt_broker = None;
    if !args.no_mqtt {
        let config = match &args.mqtt_url {
            Some(url) => {
                let config = petstore_mqtt::MqttConfig::default().url(url);
                match &args.mqtt_username {
                    Some(user) => {
                        config.credentials(user, args.mqtt_password.as_deref().unwrap_or(""))
                    }
                    None => config,
                }
            }
            None => {
                let config = petstore_mqtt::broker::BrokerConfig::default().addr(args.mqtt_addr);
                let broker = petstore_mqtt::broker::EmbeddedBroker::start(store.clone(), config)
                    .await
                    .with_context(|| {
                        format!("starting the embedded MQTT broker on {}", args.mqtt_addr)
                    })?;
                mqtt_addr = Some(broker.addr());
                // The bridge speaks MQTT 5: straight to that listener, without the
                // front's extra hop for each of its messages.
                let config = broker
                    .bridge_config()
                    .url(format!("mqtt://{}", broker.v5_addr()));
                mqtt_broker = Some(broker);
                config
            }
        };
        let url = config.display_url();
        let status: crate::shared_bridge::Status = Default::default();
        match (&args.mqtt_url, &sql) {
            // A broker other instances of the database may share: one bridge among
            // them, under a lease (standing by counts as healthy).
            (Some(_), Some(sql)) => {
                let run = crate::shared_bridge::run(
                    store.clone(),
                    sql.clone(),
                    config,
                    status.clone(),
                    workers.clone(),
                );
                tasks.push(tokio::spawn(async move {
                    run.await;
                    Ok(())
                }));
            }
            _ => {
                let bridge = petstore_mqtt::Bridge::start(store.clone(), config, workers.clone())
                    .with_context(|| format!("starting the MQTT bridge to {url}"))?;
                *status.lock().unwrap_or_else(|p| p.into_inner()) = Some(bridge.status_updates());
                let stop = workers.clone();
                tasks.push(tokio::spawn(async move {
                    // The token stops the bridge; this waits for its clean stop.
                    stop.cancelled().await;
                    bridge.shutdown().await;
                    Ok(())
                }));
            }
        }
        health.check("mqtt_bridge", move || {
            let status = status
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .map(|s| s.borrow().clone());
            async move {
                match status {
                    None => Ok(()),
                    Some(status) if status.connected => Ok(()),
                    Some(status) => Err(status
                        .last_error
                        .unwrap_or_else(|| "not connected to the broker".to_owned())),
                }
            }
        });
    }

    let dev_token = store
        .tokens()
        .issue("developer", Scope::ALL)
        .context("issuing the development token")?
        .access_token;
    stop_on_error.disarm();
    Ok(RunningServer {
        store,
        storage,
        http_addr,
        grpc_addr: Some(grpc_addr),
        mqtt_addr,
        mqtt_broker,
        dev_token,
        limiter,
        shutdown,
        drain_delay,
        tasks,
    })
}

/// Waits for Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// Grace period for in-flight requests at shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
