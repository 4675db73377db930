//! Settings of the webhook adapter.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backend::Limits;
use crate::signing::WebhookSecret;

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;

/// Settings of [`crate::Webhooks`]. Every field has a production default; the
/// builder-style setters change one each.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct WebhookConfig {
    /// The delay before each attempt of a message; its length is the number of attempts.
    /// Default (Svix's): immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
    #[serde(with = "durations")]
    pub retry_schedule: Vec<Duration>,
    /// Random spread applied to each delay, as a fraction (0.2 = up to ±20 %).
    pub jitter: f64,
    /// Longest wait a receiver's `Retry-After` can impose before the next attempt.
    #[serde(with = "humantime_serde")]
    pub max_retry_after: Duration,
    /// TCP (and TLS) connect timeout of one attempt.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Deadline of one attempt, from connecting to the end of the response.
    #[serde(with = "humantime_serde")]
    pub response_timeout: Duration,
    /// Requests in flight to one endpoint at most.
    pub endpoint_concurrency: usize,
    /// Requests in flight overall at most.
    pub global_concurrency: usize,
    /// Messages of one endpoint that may be pending (in flight or waiting for a retry)
    /// before its cursor stops advancing.
    pub endpoint_backlog: usize,
    /// An endpoint whose every attempt has failed for this long is disabled.
    #[serde(with = "humantime_serde")]
    pub disable_after: Duration,
    /// Allow every non-public target: private, link-local, loopback, unspecified and
    /// multicast addresses (only for receivers on a trusted private network).
    pub allow_private_targets: bool,
    /// Allow loopback targets (`127.0.0.0/8`, `::1`): development and tests.
    pub allow_loopback: bool,
    /// After a secret rotation, deliveries are also signed with the previous secret
    /// for this long.
    #[serde(with = "humantime_serde")]
    pub rotation_grace: Duration,
    /// The secret inbound payment webhooks are signed with; without one,
    /// `POST /v1/payments/webhook` answers 503.
    pub payments_secret: Option<WebhookSecret>,
    /// How far an inbound `webhook-timestamp` may be from now.
    #[serde(with = "humantime_serde")]
    pub timestamp_tolerance: Duration,
    /// Largest accepted request body, inbound and management.
    pub max_body_size: usize,
    /// Endpoints at most.
    pub max_endpoints: usize,
    /// Messages remembered per endpoint (pending ones are never dropped).
    pub message_log_size: usize,
    /// Delivery attempts remembered per endpoint.
    pub attempt_log_size: usize,
    /// How often the dispatcher re-reads the endpoints and pending messages from the
    /// [`crate::WebhookStore`]: it picks up changes made by other instances sharing the
    /// store, and messages whose delivery a storage error interrupted.
    #[serde(with = "humantime_serde")]
    pub sync_interval: Duration,
    /// How long the delivery lease lasts without renewal (renewed every third of it):
    /// when the instance delivering for a shared store dies, another one takes over
    /// within this time (default 6 s).
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            retry_schedule: [
                0,
                5,
                5 * MINUTE,
                30 * MINUTE,
                2 * HOUR,
                5 * HOUR,
                10 * HOUR,
                10 * HOUR,
            ]
            .into_iter()
            .map(Duration::from_secs)
            .collect(),
            jitter: 0.2,
            max_retry_after: Duration::from_secs(10 * HOUR),
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(15),
            endpoint_concurrency: 4,
            global_concurrency: 64,
            endpoint_backlog: 1_000,
            disable_after: Duration::from_secs(5 * 24 * HOUR),
            allow_private_targets: false,
            allow_loopback: false,
            rotation_grace: Duration::from_secs(24 * HOUR),
            payments_secret: None,
            timestamp_tolerance: Duration::from_secs(5 * MINUTE),
            max_body_size: 256 * 1024,
            max_endpoints: 100,
            message_log_size: 1_000,
            attempt_log_size: 1_000,
            sync_interval: Duration::from_secs(5),
            lease_ttl: Duration::from_secs(6),
        }
    }
}

impl WebhookConfig {
    /// Sets [`WebhookConfig::retry_schedule`] (an empty schedule means one immediate attempt).
    pub fn retry_schedule(mut self, delays: impl IntoIterator<Item = Duration>) -> Self {
        self.retry_schedule = delays.into_iter().collect();
        if self.retry_schedule.is_empty() {
            self.retry_schedule.push(Duration::ZERO);
        }
        self
    }

    /// Sets [`WebhookConfig::jitter`] (clamped to 0..=1).
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.jitter = if fraction.is_finite() {
            fraction.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self
    }

    /// Sets [`WebhookConfig::max_retry_after`].
    pub fn max_retry_after(mut self, max: Duration) -> Self {
        self.max_retry_after = max;
        self
    }

    /// Sets [`WebhookConfig::connect_timeout`].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`WebhookConfig::response_timeout`].
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Sets [`WebhookConfig::endpoint_concurrency`] (at least 1).
    pub fn endpoint_concurrency(mut self, n: usize) -> Self {
        self.endpoint_concurrency = n.max(1);
        self
    }

    /// Sets [`WebhookConfig::global_concurrency`] (at least 1).
    pub fn global_concurrency(mut self, n: usize) -> Self {
        self.global_concurrency = n.max(1);
        self
    }

    /// Sets [`WebhookConfig::endpoint_backlog`] (at least 1).
    pub fn endpoint_backlog(mut self, n: usize) -> Self {
        self.endpoint_backlog = n.max(1);
        self
    }

    /// Sets [`WebhookConfig::disable_after`].
    pub fn disable_after(mut self, period: Duration) -> Self {
        self.disable_after = period;
        self
    }

    /// Sets [`WebhookConfig::allow_private_targets`].
    pub fn allow_private_targets(mut self, yes: bool) -> Self {
        self.allow_private_targets = yes;
        self
    }

    /// Sets [`WebhookConfig::allow_loopback`].
    pub fn allow_loopback(mut self, yes: bool) -> Self {
        self.allow_loopback = yes;
        self
    }

    /// Sets [`WebhookConfig::rotation_grace`].
    pub fn rotation_grace(mut self, grace: Duration) -> Self {
        self.rotation_grace = grace;
        self
    }

    /// Sets [`WebhookConfig::payments_secret`].
    pub fn payments_secret(mut self, secret: impl Into<Option<WebhookSecret>>) -> Self {
        self.payments_secret = secret.into();
        self
    }

    /// Sets [`WebhookConfig::timestamp_tolerance`].
    pub fn timestamp_tolerance(mut self, tolerance: Duration) -> Self {
        self.timestamp_tolerance = tolerance;
        self
    }

    /// Sets [`WebhookConfig::max_body_size`].
    pub fn max_body_size(mut self, bytes: usize) -> Self {
        self.max_body_size = bytes;
        self
    }

    /// Sets [`WebhookConfig::max_endpoints`].
    pub fn max_endpoints(mut self, n: usize) -> Self {
        self.max_endpoints = n;
        self
    }

    /// Sets [`WebhookConfig::message_log_size`] (at least 1).
    pub fn message_log_size(mut self, n: usize) -> Self {
        self.message_log_size = n.max(1);
        self
    }

    /// Sets [`WebhookConfig::attempt_log_size`] (at least 1).
    pub fn attempt_log_size(mut self, n: usize) -> Self {
        self.attempt_log_size = n.max(1);
        self
    }

    /// Sets [`WebhookConfig::lease_ttl`] (at least 30 ms).
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl.max(Duration::from_millis(30));
        self
    }

    /// Sets [`WebhookConfig::sync_interval`] (at least 1 ms).
    pub fn sync_interval(mut self, every: Duration) -> Self {
        self.sync_interval = every.max(Duration::from_millis(1));
        self
    }

    /// The bounds the store keeps per endpoint.
    pub(crate) fn limits(&self) -> Limits {
        Limits {
            messages: self.message_log_size,
            pending: self.endpoint_backlog,
            attempts: self.attempt_log_size,
        }
    }
}

/// The retry schedule as human durations (`["0s", "5s", "5m"]`).
mod durations {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        v.iter()
            .map(|d| humantime_serde::re::humantime::format_duration(*d).to_string())
            .collect::<Vec<_>>()
            .serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        let v = Vec::<humantime_serde::Serde<Duration>>::deserialize(d)?;
        Ok(v.into_iter()
            .map(humantime_serde::Serde::into_inner)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_read_and_written_as_human_durations() {
        let config: WebhookConfig = serde_json::from_value(serde_json::json!({
            "retry_schedule": ["0s", "5s", "5m", "1h 30m"],
            "connect_timeout": "2s",
            "disable_after": "3days",
        }))
        .unwrap();
        assert_eq!(
            config.retry_schedule,
            [0, 5, 300, 5400].map(Duration::from_secs)
        );
        assert_eq!(config.connect_timeout, Duration::from_secs(2));
        assert_eq!(config.disable_after, Duration::from_secs(3 * 86_400));
        // Unset fields keep their defaults.
        let defaults = WebhookConfig::default();
        assert_eq!(config.response_timeout, defaults.response_timeout);

        let json = serde_json::to_value(&config).unwrap();
        assert_eq!(
            json["retry_schedule"],
            serde_json::json!(["0s", "5s", "5m", "1h 30m"])
        );
        assert_eq!(json["connect_timeout"], "2s");
        assert_eq!(json["disable_after"], "3days");

        for bad in [
            serde_json::json!({ "connect_timeout": { "secs": 2, "nanos": 0 } }),
            serde_json::json!({ "connect_timeout": "soon" }),
            serde_json::json!({ "retry_schedule": ["5s", 5] }),
        ] {
            assert!(
                serde_json::from_value::<WebhookConfig>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }
}
