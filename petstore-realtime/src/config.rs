//! Settings of the SSE and WebSocket endpoints.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Settings of [`crate::router`]. Every limit is per connection, except
/// [`RealtimeConfig::max_streams_per_caller`].
///
/// ```
/// use std::time::Duration;
/// use petstore_realtime::RealtimeConfig;
///
/// let config = RealtimeConfig::default()
///     .heartbeat_interval(Duration::from_secs(10))
///     .outbound_queue(64)
///     .max_subscriptions(16);
/// assert_eq!(config.outbound_queue, 64);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct RealtimeConfig {
    /// How often an idle connection gets a heartbeat: an SSE comment line, a WebSocket
    /// ping frame. Keeps proxies from closing quiet connections and detects dead peers.
    pub heartbeat_interval: Duration,
    /// The SSE `retry:` hint: how long an `EventSource` waits before reconnecting.
    pub retry_hint: Duration,
    /// How many event messages may wait for a WebSocket client's socket (replies to
    /// its frames get a little extra room). While the queue is full, further events
    /// wait in the event log instead; a client that falls more than the log's
    /// `LogConfig::subscriber_buffer` events behind is disconnected as a slow consumer
    /// and can resume from its last offset. SSE responses are written straight from
    /// the log, so for them only the log's buffer applies.
    pub outbound_queue: usize,
    /// The largest WebSocket message (and frame) a client may send, in bytes.
    pub max_message_size: usize,
    /// How many channels one connection may follow (WebSocket subscriptions, or
    /// channels of one SSE stream).
    pub max_subscriptions: usize,
    /// A WebSocket client that sends nothing for this long (not even the pong the
    /// heartbeat asks for) is disconnected.
    pub idle_timeout: Duration,
    /// How long the server waits for a WebSocket client to take the final close frame
    /// and answer it before the connection is dropped.
    pub write_timeout: Duration,
    /// How many SSE streams one caller (a token's subject, or a client address when
    /// anonymous) may have open at once; one more is refused with 429
    /// (`too_many_streams`).
    pub max_streams_per_caller: usize,
}

impl Default for RealtimeConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(15),
            retry_hint: Duration::from_secs(2),
            outbound_queue: 64,
            max_message_size: 64 * 1024,
            max_subscriptions: 64,
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(10),
            max_streams_per_caller: 16,
        }
    }
}

impl RealtimeConfig {
    /// Sets [`RealtimeConfig::heartbeat_interval`] (at least 1 ms).
    pub fn heartbeat_interval(mut self, every: Duration) -> Self {
        self.heartbeat_interval = every.max(Duration::from_millis(1));
        self
    }

    /// Sets [`RealtimeConfig::retry_hint`].
    pub fn retry_hint(mut self, after: Duration) -> Self {
        self.retry_hint = after;
        self
    }

    /// Sets [`RealtimeConfig::outbound_queue`] (at least 1).
    pub fn outbound_queue(mut self, messages: usize) -> Self {
        self.outbound_queue = messages.max(1);
        self
    }

    /// Sets [`RealtimeConfig::max_message_size`] (at least 256 bytes).
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes.max(256);
        self
    }

    /// Sets [`RealtimeConfig::max_subscriptions`] (at least 1).
    pub fn max_subscriptions(mut self, channels: usize) -> Self {
        self.max_subscriptions = channels.max(1);
        self
    }

    /// Sets [`RealtimeConfig::idle_timeout`] (at least 1 ms).
    pub fn idle_timeout(mut self, after: Duration) -> Self {
        self.idle_timeout = after.max(Duration::from_millis(1));
        self
    }

    /// Sets [`RealtimeConfig::write_timeout`].
    pub fn write_timeout(mut self, after: Duration) -> Self {
        self.write_timeout = after;
        self
    }

    /// Sets [`RealtimeConfig::max_streams_per_caller`] (at least 1).
    pub fn max_streams_per_caller(mut self, streams: usize) -> Self {
        self.max_streams_per_caller = streams.max(1);
        self
    }
}
