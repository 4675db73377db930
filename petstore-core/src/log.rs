//! The event log: one sequenced, resumable log of domain events feeding every push
//! pattern.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_core::Stream;
use futures_util::StreamExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::event::{Event, EventFilter, ResetReason, ResumeToken};

/// Sizing of an event log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct LogConfig {
    /// How many of the newest events stay readable for resume and polling.
    pub retention: usize,
    /// How many live events a subscriber may fall behind before it is cut off with
    /// [`ErrorKind::Lagged`](crate::ErrorKind::Lagged) (writers never wait for subscribers).
    pub subscriber_buffer: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            retention: 10_000,
            subscriber_buffer: 1_024,
        }
    }
}

impl LogConfig {
    /// Sets [`LogConfig::retention`].
    pub fn retention(mut self, n: usize) -> Self {
        self.retention = n.max(1);
        self
    }

    /// Sets [`LogConfig::subscriber_buffer`].
    pub fn subscriber_buffer(mut self, n: usize) -> Self {
        self.subscriber_buffer = n.max(1);
        self
    }
}

/// A page of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EventBatch {
    /// Matching events, oldest first.
    pub events: Vec<Arc<Event>>,
    /// Where the next read continues: the position of the last event examined.
    pub next: ResumeToken,
}

/// Reading and following the log. Appends happen only through
/// [`crate::backend::Store::commit`], together with the state change they describe.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// The position just after the newest event.
    ///
    /// # Behavior
    /// - Starts at offset 0 in a fresh log and grows by one per appended event.
    async fn head(&self) -> Result<ResumeToken>;

    /// Up to `limit` events matching `filter`, after `since` (from the oldest retained
    /// event when `None`).
    ///
    /// # Behavior
    /// - Events come in offset order with no gap and no duplicate across pages that
    ///   follow `next`.
    /// - `next` is the position of the last event examined, so filtered-out events are
    ///   not examined again.
    /// - A token from another epoch, or older than the retained log, fails with
    ///   [`ErrorKind::ResumeExpired`](crate::ErrorKind::ResumeExpired); a token ahead of the log fails with
    ///   [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput).
    async fn read(
        &self,
        since: Option<ResumeToken>,
        limit: usize,
        filter: &EventFilter,
    ) -> Result<EventBatch>;

    /// Follows the log: replays the events after `since` (none when `None`), then
    /// delivers live events, with no gap and no duplicate between the two.
    ///
    /// # Behavior
    /// - Same token rules as [`EventLog::read`].
    /// - A subscriber more than [`LogConfig::subscriber_buffer`] events behind receives
    ///   one [`ErrorKind::Lagged`](crate::ErrorKind::Lagged) error, then the stream ends; writers never wait.
    async fn subscribe(
        &self,
        since: Option<ResumeToken>,
        filter: EventFilter,
    ) -> Result<Subscription>;

    /// The position after which the retained events are those that happened after
    /// `time` (what polling by time, `since=<epoch ms>`, reads from). Provided: scans
    /// the retained log; a backend with an index on time can answer faster.
    ///
    /// # Behavior
    /// - The events after the returned position are exactly the retained events whose
    ///   time is after `time` (events are in offset order; a backend whose clocks may
    ///   disagree answers for the first event after `time` in offset order).
    /// - When events after `time` may have been dropped by retention (the oldest
    ///   retained event is after `time` and is not the first event ever), fails with
    ///   [`crate::ErrorKind::ResumeExpired`].
    async fn position_at(&self, time: DateTime<Utc>) -> Result<ResumeToken> {
        let mut since = None;
        let mut first = true;
        loop {
            let batch = self
                .read(since, crate::service::MAX_EVENT_READ, &EventFilter::all())
                .await?;
            if let Some(i) = batch.events.iter().position(|e| e.time() > time) {
                let at = batch.events[i].offset();
                if first && i == 0 && at.offset > 1 {
                    return Err(ResetReason::Expired.into_error_at_time(time));
                }
                return Ok(ResumeToken::new(at.epoch, at.offset - 1));
            }
            if batch.events.is_empty() {
                return Ok(batch.next);
            }
            first = false;
            since = Some(batch.next);
        }
    }
}

/// Conveniences over every [`EventLog`].
#[async_trait]
pub trait EventLogExt: EventLog {
    /// Like [`EventLog::read`], but when nothing matches yet waits up to `wait` for the
    /// first matching event (long polling).
    async fn read_or_wait(
        &self,
        since: Option<ResumeToken>,
        limit: usize,
        filter: &EventFilter,
        wait: Duration,
    ) -> Result<EventBatch> {
        let batch = self.read(since, limit, filter).await?;
        if !batch.events.is_empty() || wait.is_zero() {
            return Ok(batch);
        }
        let mut sub = self.subscribe(Some(batch.next), filter.clone()).await?;
        match tokio::time::timeout(wait, sub.next()).await {
            Ok(Some(Ok(_))) => self.read(Some(batch.next), limit, filter).await,
            Ok(Some(Err(e))) => Err(e),
            Ok(None) | Err(_) => Ok(batch),
        }
    }
}

impl<T: EventLog + ?Sized> EventLogExt for T {}

/// A live feed of events: `Ok(event)` items, and at most one final `Err`
/// ([`ErrorKind::Lagged`](crate::ErrorKind::Lagged)) after which it ends.
pub struct Subscription {
    inner: Pin<Box<dyn Stream<Item = Result<Arc<Event>>> + Send>>,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription").finish_non_exhaustive()
    }
}

impl Subscription {
    /// Wraps any stream (for backends other than the in-memory one).
    pub fn from_stream(stream: impl Stream<Item = Result<Arc<Event>>> + Send + 'static) -> Self {
        Self {
            inner: Box::pin(stream),
        }
    }
}

impl Stream for Subscription {
    type Item = Result<Arc<Event>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subscription_debugs_as_its_type() {
        let sub = Subscription::from_stream(futures_util::stream::empty());
        assert_eq!(format!("{sub:?}"), "Subscription { .. }");
    }
}
