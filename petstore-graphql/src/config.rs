//! Settings of the GraphQL router.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Settings of [`crate::router`]: limits that protect the server from abusive operations,
/// the introspection switch and WebSocket behaviour. Rate limiting is the shared
/// [`petstore_http::Edge`]'s.
///
/// ```
/// use std::time::Duration;
/// let config = petstore_graphql::GraphQlConfig::default()
///     .max_depth(8)
///     .max_complexity(2_000)
///     .max_body_bytes(32 * 1024)
///     .introspection(false)
///     .max_subscriptions_per_connection(10)
///     .keep_alive(Duration::from_secs(20));
/// assert_eq!(config.max_depth, 8);
/// assert!(!config.introspection);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct GraphQlConfig {
    /// Deepest accepted selection nesting (default 10): `{ pets { nodes { price { amount } } } }`
    /// has depth 4. Deeper operations fail with `extensions.code = "QUERY_TOO_DEEP"` before
    /// anything runs. Introspection fields (`__schema`, `__type`) are not counted.
    pub max_depth: usize,
    /// Highest accepted complexity (default 5000): every field costs 1, and the selections
    /// under a list field (`pets`, `orders`, `events`) count once per requested item
    /// (`first`, or the default page size). Costlier operations fail with
    /// `extensions.code = "QUERY_TOO_COMPLEX"` before anything runs.
    pub max_complexity: usize,
    /// Largest accepted HTTP request body and WebSocket message in bytes (default 64 KiB);
    /// larger HTTP bodies get 413.
    pub max_body_bytes: usize,
    /// Whether `__schema` / `__type` introspection is served (default true). When off,
    /// such operations fail with `extensions.code = "INTROSPECTION_DISABLED"`.
    pub introspection: bool,
    /// How many operations one WebSocket connection may run at once (default 100); more
    /// fail with `extensions.code = "TOO_MANY_SUBSCRIPTIONS"`.
    pub max_subscriptions_per_connection: usize,
    /// Interval of the server's keep-alive frames on WebSocket connections (default 15 s;
    /// zero disables them): `pong` with `graphql-transport-ws`, `ka` with `graphql-ws`.
    pub keep_alive: Duration,
    /// How long a new WebSocket may take to send an accepted `connection_init`
    /// (default 10 s; zero waits forever); then it is closed (code 4408).
    pub connection_init_timeout: Duration,
    /// Whether `GET /graphiql` serves the GraphiQL IDE (default true).
    pub graphiql: bool,
}

impl Default for GraphQlConfig {
    fn default() -> Self {
        Self {
            max_depth: 10,
            max_complexity: 5_000,
            max_body_bytes: 64 * 1024,
            introspection: true,
            max_subscriptions_per_connection: 100,
            keep_alive: Duration::from_secs(15),
            connection_init_timeout: Duration::from_secs(10),
            graphiql: true,
        }
    }
}

impl GraphQlConfig {
    /// Sets [`GraphQlConfig::max_depth`].
    pub fn max_depth(mut self, depth: usize) -> Self {
        self.max_depth = depth;
        self
    }

    /// Sets [`GraphQlConfig::max_complexity`].
    pub fn max_complexity(mut self, complexity: usize) -> Self {
        self.max_complexity = complexity;
        self
    }

    /// Sets [`GraphQlConfig::max_body_bytes`].
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// Sets [`GraphQlConfig::introspection`].
    pub fn introspection(mut self, on: bool) -> Self {
        self.introspection = on;
        self
    }

    /// Sets [`GraphQlConfig::max_subscriptions_per_connection`].
    pub fn max_subscriptions_per_connection(mut self, n: usize) -> Self {
        self.max_subscriptions_per_connection = n;
        self
    }

    /// Sets [`GraphQlConfig::keep_alive`].
    pub fn keep_alive(mut self, interval: Duration) -> Self {
        self.keep_alive = interval;
        self
    }

    /// Sets [`GraphQlConfig::connection_init_timeout`].
    pub fn connection_init_timeout(mut self, timeout: Duration) -> Self {
        self.connection_init_timeout = timeout;
        self
    }

    /// Sets [`GraphQlConfig::graphiql`].
    pub fn graphiql(mut self, on: bool) -> Self {
        self.graphiql = on;
        self
    }
}
