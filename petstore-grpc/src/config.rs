//! Server settings.

use std::time::Duration;

/// Settings of the gRPC server: limits, keepalive, deadlines and shutdown. Rate
/// limiting is the shared limiter given to [`crate::GrpcServer::rate_limiter`].
///
/// ```
/// use std::time::Duration;
/// use petstore_grpc::GrpcConfig;
///
/// let config = GrpcConfig::default()
///     .max_message_size(1024 * 1024)
///     .request_timeout(Some(Duration::from_secs(10)));
/// assert_eq!(config.max_message_size, 1024 * 1024);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GrpcConfig {
    /// Largest message accepted or sent, in bytes (default 4 MiB). A larger request
    /// fails with `OUT_OF_RANGE` before reaching the store.
    pub max_message_size: usize,
    /// Requests served at once on one connection; more wait (default 64, `None`: no limit).
    pub concurrency_limit_per_connection: Option<usize>,
    /// HTTP/2 streams (calls, including open streaming calls) one connection may have
    /// open at once (default 256, `None`: the HTTP/2 default).
    pub max_concurrent_streams: Option<u32>,
    /// Interval of HTTP/2 keepalive pings; a client that stops answering is dropped and
    /// its streams freed (default 30 s, `None`: no pings).
    pub keepalive_interval: Option<Duration>,
    /// How long to wait for a keepalive ping's answer (default 10 s).
    pub keepalive_timeout: Duration,
    /// Upper bound on the time to answer a unary call or to open a stream (default
    /// 30 s, `None`: unbounded). A client's shorter `grpc-timeout` always wins, and is
    /// also enforced on streams: a stream past its deadline ends with
    /// `DEADLINE_EXCEEDED`.
    pub request_timeout: Option<Duration>,
    /// After the shutdown signal, how long open calls may take to finish before the
    /// server stops waiting for them (default 10 s). Streams of this crate end at once
    /// with `UNAVAILABLE`; the grace covers other calls in flight.
    pub shutdown_grace: Duration,
    /// After the shutdown signal, how long the server keeps accepting connections and
    /// calls while health already reports NOT_SERVING (default 0). Behind a load
    /// balancer that polls health, set it above the polling interval so that the
    /// balancer stops sending traffic before the listener closes.
    pub drain_delay: Duration,
    /// Serve the gRPC server reflection services, v1 and v1alpha (default true).
    pub reflection: bool,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            max_message_size: 4 * 1024 * 1024,
            concurrency_limit_per_connection: Some(64),
            max_concurrent_streams: Some(256),
            keepalive_interval: Some(Duration::from_secs(30)),
            keepalive_timeout: Duration::from_secs(10),
            request_timeout: Some(Duration::from_secs(30)),
            shutdown_grace: Duration::from_secs(10),
            drain_delay: Duration::ZERO,
            reflection: true,
        }
    }
}

impl GrpcConfig {
    /// Sets [`GrpcConfig::max_message_size`].
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Sets [`GrpcConfig::concurrency_limit_per_connection`].
    pub fn concurrency_limit_per_connection(mut self, limit: Option<usize>) -> Self {
        self.concurrency_limit_per_connection = limit;
        self
    }

    /// Sets [`GrpcConfig::max_concurrent_streams`].
    pub fn max_concurrent_streams(mut self, max: Option<u32>) -> Self {
        self.max_concurrent_streams = max;
        self
    }

    /// Sets [`GrpcConfig::keepalive_interval`].
    pub fn keepalive_interval(mut self, interval: Option<Duration>) -> Self {
        self.keepalive_interval = interval;
        self
    }

    /// Sets [`GrpcConfig::keepalive_timeout`].
    pub fn keepalive_timeout(mut self, timeout: Duration) -> Self {
        self.keepalive_timeout = timeout;
        self
    }

    /// Sets [`GrpcConfig::request_timeout`].
    pub fn request_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets [`GrpcConfig::shutdown_grace`].
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Sets [`GrpcConfig::drain_delay`].
    pub fn drain_delay(mut self, delay: Duration) -> Self {
        self.drain_delay = delay;
        self
    }

    /// Sets [`GrpcConfig::reflection`].
    pub fn reflection(mut self, enabled: bool) -> Self {
        self.reflection = enabled;
        self
    }
}
