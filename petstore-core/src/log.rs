//! The event log: one sequenced, resumable log of domain events feeding every push
//! pattern.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use futures_core::Stream;
use futures_util::StreamExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::error::{Error, ErrorKind, Result};
use crate::event::{Event, EventFilter, ResetReason, ResumeToken};

/// Sizing of an event log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct LogConfig {
    /// How many of the newest events stay readable for resume and polling.
    pub retention: usize,
    /// How many live events a subscriber may fall behind before it is cut off with
    /// [`ErrorKind::Lagged`] (writers never wait for subscribers).
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
/// [`crate::Store::commit`], together with the state change they describe.
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
    ///   [`ErrorKind::ResumeExpired`]; a token ahead of the log fails with
    ///   [`ErrorKind::InvalidInput`].
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
    ///   one [`ErrorKind::Lagged`] error, then the stream ends; writers never wait.
    async fn subscribe(
        &self,
        since: Option<ResumeToken>,
        filter: EventFilter,
    ) -> Result<Subscription>;
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
/// ([`ErrorKind::Lagged`]) after which it ends.
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

/// The in-memory log used by [`crate::MemoryStore`]: a bounded ring of the newest
/// events and a broadcast channel for live subscribers. Callers serialise appends
/// (the store holds its state lock), which is what makes state and events atomic.
#[derive(Debug)]
pub(crate) struct MemoryLog {
    epoch: u64,
    head: u64,
    events: VecDeque<Arc<Event>>,
    config: LogConfig,
    live: broadcast::Sender<Arc<Event>>,
}

impl MemoryLog {
    pub(crate) fn new(config: LogConfig) -> Self {
        let (live, _) = broadcast::channel(config.subscriber_buffer.max(1));
        // A random epoch: tokens from an earlier process never resume into this one.
        let epoch = u64::from_le_bytes(
            uuid::Uuid::new_v4().as_bytes()[..8]
                .try_into()
                .unwrap_or_default(),
        );
        Self {
            epoch,
            head: 0,
            events: VecDeque::new(),
            config,
            live,
        }
    }

    pub(crate) fn head(&self) -> ResumeToken {
        ResumeToken::new(self.epoch, self.head)
    }

    /// Gives the next offset to `event`, stores it and publishes it. Events that fall
    /// out of retention go to `evicted`, for the caller to drop after releasing its
    /// lock (freeing an event's payload is not free).
    pub(crate) fn append(&mut self, mut event: Event, evicted: &mut Vec<Arc<Event>>) -> Arc<Event> {
        self.head += 1;
        event.offset = ResumeToken::new(self.epoch, self.head);
        let event = Arc::new(event);
        self.events.push_back(event.clone());
        while self.events.len() > self.config.retention {
            evicted.extend(self.events.pop_front());
        }
        // No receiver is not an error: nobody is listening right now.
        let _ = self.live.send(event.clone());
        event
    }

    /// Index in `events` of the first event after `since`.
    fn start_index(&self, since: Option<ResumeToken>) -> Result<usize> {
        let Some(since) = since else { return Ok(0) };
        if since.epoch != self.epoch {
            return Err(ResetReason::EpochMismatch.into_error(since));
        }
        if since.offset > self.head {
            return Err(Error::invalid_field(
                "since",
                format!(
                    "resume token `{since}` is ahead of the log (head is {})",
                    self.head
                ),
            ));
        }
        let first = self
            .events
            .front()
            .map_or(self.head + 1, |e| e.offset.offset);
        if since.offset + 1 < first {
            return Err(ResetReason::Expired.into_error(since));
        }
        Ok((since.offset + 1 - first) as usize)
    }

    pub(crate) fn read(
        &self,
        since: Option<ResumeToken>,
        limit: usize,
        filter: &EventFilter,
    ) -> Result<EventBatch> {
        let start = self.start_index(since)?;
        let mut next = since.unwrap_or(ResumeToken::new(
            self.epoch,
            self.events
                .front()
                .map_or(self.head, |e| e.offset.offset - 1),
        ));
        let mut events = Vec::new();
        for event in self.events.iter().skip(start) {
            if events.len() >= limit {
                break;
            }
            next = event.offset;
            if filter.matches(event) {
                events.push(event.clone());
            }
        }
        Ok(EventBatch { events, next })
    }

    pub(crate) fn subscribe(
        &self,
        since: Option<ResumeToken>,
        filter: EventFilter,
    ) -> Result<Subscription> {
        let replay: VecDeque<Arc<Event>> = match since {
            Some(_) => {
                let start = self.start_index(since)?;
                self.events
                    .iter()
                    .skip(start)
                    .filter(|e| filter.matches(e))
                    .cloned()
                    .collect()
            }
            None => VecDeque::new(),
        };
        // Subscribing under the same lock as the replay snapshot: every event after the
        // snapshot is in the receiver, none before it.
        let rx = self.live.subscribe();
        let state = FollowState {
            replay,
            rx,
            filter,
            last: self.head,
            epoch: self.epoch,
            done: false,
        };
        Ok(Subscription::from_stream(futures_util::stream::unfold(
            state,
            FollowState::next,
        )))
    }
}

struct FollowState {
    replay: VecDeque<Arc<Event>>,
    rx: broadcast::Receiver<Arc<Event>>,
    filter: EventFilter,
    /// Offset of the last event examined.
    last: u64,
    epoch: u64,
    done: bool,
}

impl FollowState {
    async fn next(mut self) -> Option<(Result<Arc<Event>>, Self)> {
        if self.done {
            return None;
        }
        if let Some(event) = self.replay.pop_front() {
            return Some((Ok(event), self));
        }
        loop {
            match self.rx.recv().await {
                Ok(event) => {
                    if event.offset.offset <= self.last {
                        continue;
                    }
                    self.last = event.offset.offset;
                    if self.filter.matches(&event) {
                        return Some((Ok(event), self));
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    self.done = true;
                    let at = ResumeToken::new(self.epoch, self.last);
                    let err = Error::new(
                        ErrorKind::Lagged,
                        format!(
                            "subscriber fell {missed} events behind and was cut off; resume from `{at}`"
                        ),
                    );
                    return Some((Err(err), self));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}
