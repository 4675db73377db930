//! The replay-then-live hand-off every backend's [`super::EventLog::subscribe`] needs:
//! live events reach subscribers through one shared ring, and a new subscriber first
//! replays the stored events after its token, with no gap and no duplicate between
//! the two.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use futures_core::Stream;
use futures_util::StreamExt;
use tokio::sync::broadcast;

use crate::error::{Error, ErrorKind, Result};
use crate::event::{Event, EventFilter, ResumeToken};
use crate::log::Subscription;

/// The stored events after a subscriber's token, oldest first, for
/// [`Fanout::subscribe`].
pub type Replay = Pin<Box<dyn Stream<Item = Result<Arc<Event>>> + Send>>;

/// Live fan-out of a log's events to its subscribers.
///
/// The backend calls [`Fanout::publish`] with every event once it is committed and
/// readable, in offset order with no gap (the in-memory store under its lock; a SQL
/// store from the one task that tails the table). Writers never wait: the ring holds
/// `buffer` events shared by every subscriber, and one that falls a whole ring behind
/// gets one [`ErrorKind::Lagged`] item, then its stream ends.
pub struct Fanout {
    epoch: u64,
    live: broadcast::Sender<Arc<Event>>,
    /// Offset of the newest published event. Stored before the event is sent, so a
    /// subscriber that reads it has either the event in its receiver or in its replay.
    published: AtomicU64,
    /// Set by [`Fanout::interrupt`]: subscribers whose feed then closes missed events.
    interrupted: Arc<AtomicBool>,
}

impl fmt::Debug for Fanout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fanout")
            .field("epoch", &self.epoch)
            .field("published", &self.published())
            .field("subscribers", &self.live.receiver_count())
            .finish()
    }
}

impl Fanout {
    /// A fan-out for the log of `epoch` whose newest event so far is `published`,
    /// with a ring of `buffer` events.
    pub fn new(published: ResumeToken, buffer: usize) -> Self {
        let (live, _) = broadcast::channel(buffer.max(1));
        Self {
            epoch: published.epoch,
            live,
            published: AtomicU64::new(published.offset),
            interrupted: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Marks this feed as broken (the backend could not publish every event, e.g. its
    /// tail fell out of the log's retention): once the fan-out is dropped, each of its
    /// subscribers gets one [`ErrorKind::Lagged`] item instead of a plain end, so that
    /// nobody mistakes the gap for a shutdown. The backend starts a new `Fanout` for
    /// new subscribers.
    pub fn interrupt(&self) {
        self.interrupted.store(true, Ordering::Release);
    }

    /// The position of the newest published event.
    pub fn published(&self) -> ResumeToken {
        ResumeToken::new(self.epoch, self.published.load(Ordering::Acquire))
    }

    /// How many subscriptions are open.
    pub fn subscribers(&self) -> usize {
        self.live.receiver_count()
    }

    /// Hands `event` to every live subscriber. Call it once per event, in offset
    /// order, with no gap.
    /// It also sets [`crate::telemetry::LOG_HEAD_OFFSET`]: in a cluster, the newest
    /// event of the log this instance has seen, whoever appended it.
    pub fn publish(&self, event: Arc<Event>) {
        let offset = event.offset().offset;
        self.published.fetch_max(offset, Ordering::AcqRel);
        metrics::gauge!(crate::telemetry::LOG_HEAD_OFFSET).set(offset as f64);
        // No receiver is not an error: nobody is listening right now.
        let _ = self.live.send(event);
    }

    /// Follows the log after `since` (live only when `None`). `replay(until)` must
    /// yield the stored events after `since` up to and including `until`, oldest
    /// first (it may yield only those that match `filter`); the backend checks
    /// `since` (epoch, retention, ahead of the log) before calling this.
    pub fn subscribe(
        &self,
        since: Option<ResumeToken>,
        filter: EventFilter,
        replay: impl FnOnce(ResumeToken) -> Replay,
    ) -> Subscription {
        // The receiver first: every event published after this point reaches it, and
        // `until` (read after) covers every event published before it.
        let rx = self.live.subscribe();
        let until = self.published();
        let replay = match since {
            Some(since) if since.offset < until.offset => Some(replay(until)),
            _ => None,
        };
        let state = Follow {
            replay,
            rx,
            filter,
            last: since.map_or(until.offset, |s| s.offset),
            until: until.offset,
            epoch: self.epoch,
            interrupted: self.interrupted.clone(),
            done: false,
        };
        Subscription::from_stream(futures_util::stream::unfold(state, Follow::next))
    }
}

/// A replay as a [`Replay`] stream, for a backend that has it in memory.
pub fn replay_from(events: VecDeque<Arc<Event>>) -> Replay {
    Box::pin(futures_util::stream::iter(events.into_iter().map(Ok)))
}

struct Follow {
    replay: Option<Replay>,
    rx: broadcast::Receiver<Arc<Event>>,
    filter: EventFilter,
    /// Offset of the last event examined.
    last: u64,
    /// The end of the replay.
    until: u64,
    epoch: u64,
    interrupted: Arc<AtomicBool>,
    done: bool,
}

impl Follow {
    async fn next(mut self) -> Option<(Result<Arc<Event>>, Self)> {
        if self.done {
            return None;
        }
        while let Some(replay) = self.replay.as_mut() {
            match replay.next().await {
                Some(Ok(event)) => {
                    let offset = event.offset().offset;
                    if offset <= self.last || offset > self.until {
                        continue;
                    }
                    self.last = offset;
                    if self.filter.matches(&event) {
                        return Some((Ok(event), self));
                    }
                }
                Some(Err(e)) => {
                    self.done = true;
                    return Some((Err(e), self));
                }
                None => {
                    // The replay may have skipped filtered events at its end.
                    self.last = self.last.max(self.until);
                    self.replay = None;
                }
            }
        }
        loop {
            match self.rx.recv().await {
                Ok(event) => {
                    let offset = event.offset().offset;
                    if offset <= self.last {
                        continue;
                    }
                    self.last = offset;
                    if self.filter.matches(&event) {
                        return Some((Ok(event), self));
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    self.done = true;
                    crate::telemetry::subscriber_cut_off(missed);
                    let at = ResumeToken::new(self.epoch, self.last);
                    let err = Error::new(
                        ErrorKind::Lagged,
                        format!(
                            "subscriber fell {missed} events behind and was cut off; resume from `{at}`"
                        ),
                    );
                    return Some((Err(err), self));
                }
                Err(broadcast::error::RecvError::Closed) => {
                    self.done = true;
                    if !self.interrupted.load(Ordering::Acquire) {
                        return None;
                    }
                    let at = ResumeToken::new(self.epoch, self.last);
                    let err = Error::new(
                        ErrorKind::Lagged,
                        format!(
                            "the live feed was interrupted and this subscriber missed events; resume from `{at}`"
                        ),
                    );
                    return Some((Err(err), self));
                }
            }
        }
    }
}
