//! Settings of the REST router.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Settings of [`crate::router`]: limits, CORS, compression and the docs page. Rate
/// limiting, request ids and trusted proxies are settings of the shared
/// [`petstore_http::Edge`].
///
/// ```
/// use std::time::Duration;
///
/// let config = petstore_rest::RestConfig::default()
///     .body_limit(128 * 1024)
///     .request_timeout(Duration::from_secs(10))
///     .cors_origins(["https://shop.example"])
///     .compression(false);
/// assert_eq!(config.body_limit, 128 * 1024);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct RestConfig {
    /// Largest accepted request body in bytes (default 64 KiB); larger bodies get 413.
    pub body_limit: usize,
    /// Longest time a request may take (default 30 s); slower ones get 503. Long polls
    /// get this plus [`RestConfig::max_poll_wait`].
    pub request_timeout: Duration,
    /// Cap of the `wait` parameter of the polling routes (default 30 s, at most 60 s).
    pub max_poll_wait: Duration,
    /// Origins allowed by CORS. Empty (the default) sends no CORS headers; `"*"` allows
    /// any origin.
    pub cors_origins: Vec<String>,
    /// Whether responses are gzip-compressed for clients that accept it (default true).
    pub compression: bool,
    /// Whether `GET /docs` serves the interactive API page (default true).
    pub docs: bool,
}

impl Default for RestConfig {
    fn default() -> Self {
        Self {
            body_limit: 64 * 1024,
            request_timeout: Duration::from_secs(30),
            max_poll_wait: Duration::from_secs(30),
            cors_origins: Vec::new(),
            compression: true,
            docs: true,
        }
    }
}

impl RestConfig {
    /// The core never waits longer than this in one poll.
    pub(crate) const POLL_WAIT_CEILING: Duration = Duration::from_secs(60);

    /// Sets [`RestConfig::body_limit`].
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// Sets [`RestConfig::request_timeout`].
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets [`RestConfig::max_poll_wait`] (capped at 60 s).
    pub fn max_poll_wait(mut self, wait: Duration) -> Self {
        self.max_poll_wait = wait.min(Self::POLL_WAIT_CEILING);
        self
    }

    /// Sets [`RestConfig::cors_origins`] (`"*"` for any origin).
    pub fn cors_origins(mut self, origins: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.cors_origins = origins.into_iter().map(Into::into).collect();
        self
    }

    /// Sets [`RestConfig::compression`].
    pub fn compression(mut self, on: bool) -> Self {
        self.compression = on;
        self
    }

    /// Sets [`RestConfig::docs`].
    pub fn docs(mut self, on: bool) -> Self {
        self.docs = on;
        self
    }

    /// The effective poll-wait cap.
    pub(crate) fn poll_wait_cap(&self) -> Duration {
        self.max_poll_wait.min(Self::POLL_WAIT_CEILING)
    }
}
