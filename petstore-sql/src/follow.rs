//! Following the log: the follower task that reads committed events from the table
//! and publishes them to this process's subscribers, what wakes it, and the
//! replay-then-live stream each subscription reads.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use petstore_core::{Error, ErrorKind, Event, EventFilter, Result, ResumeToken, Subscription};
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;

use crate::fanout::{Closed, Registration};
use crate::outbox::{self, PAGE};
use crate::store::Shared;

/// The channel every instance LISTENs on; a commit that appends NOTIFYs it. The
/// payload is empty: a notification only says "read the table".
pub(crate) const CHANNEL: &str = "petstore_log";

/// Publishes every committed event, in offset order, to the local fan-out. Woken by
/// local commits and (PostgreSQL) by notifications from every instance; the poll is
/// the safety net for a notification lost while the listener reconnected.
pub(crate) async fn run_follower(shared: Arc<Shared>, poll: Duration, cancel: CancellationToken) {
    loop {
        if let Err(e) = catch_up(&shared).await {
            tracing::warn!(error = %e, "event log follower could not read the log; retrying");
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = shared.wake.notified() => {}
            () = tokio::time::sleep(poll) => {}
        }
    }
}

/// Reads and publishes everything after the last published offset.
async fn catch_up(shared: &Shared) -> Result<()> {
    let mut conn = shared.conn().await?;
    loop {
        let last = shared.fanout.published();
        let events = outbox::fetch(&mut conn, shared.epoch, last, u64::MAX, PAGE).await?;
        let Some(first) = events.first() else {
            return Ok(());
        };
        if first.offset.offset != last + 1 {
            // Retention deleted events this process never published: its subscribers
            // missed them. They are told (Lagged) and the feed restarts here.
            tracing::warn!(
                published = last,
                oldest = first.offset.offset,
                "the event log follower fell out of retention; live subscribers must resume"
            );
            shared.fanout.interrupt(first.offset.offset - 1);
        }
        shared.fanout.publish(&events);
        if (events.len() as u64) < PAGE {
            return Ok(());
        }
    }
}

/// PostgreSQL: turns notifications on [`CHANNEL`] into wake-ups of the local
/// follower, reconnecting when the connection drops (and waking the follower then,
/// since notifications sent meanwhile are lost).
pub(crate) async fn run_listener(url: String, wake: Arc<Notify>, cancel: CancellationToken) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let listener = async {
            let mut listener = sqlx::postgres::PgListener::connect(&url).await?;
            listener.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = tokio::select! {
            () = cancel.cancelled() => return,
            l = listener => match l {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot LISTEN for new events; retrying");
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            }
        };
        backoff = Duration::from_millis(100);
        wake.notify_one();
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                n = listener.try_recv() => match n {
                    Ok(Some(_)) => wake.notify_one(),
                    // The connection dropped; the next call reconnects and re-listens.
                    Ok(None) => wake.notify_one(),
                    Err(e) => {
                        tracing::warn!(error = %e, "LISTEN connection failed; reconnecting");
                        break;
                    }
                },
            }
        }
    }
}

/// A subscription starting after offset `start`: events up to what the fan-out had
/// published at registration come from the table, the rest from the fan-out.
pub(crate) fn subscription(
    shared: Arc<Shared>,
    filter: EventFilter,
    start: u64,
    registration: Registration,
) -> Subscription {
    let state = Follow {
        replay_until: registration.published,
        last: start,
        buffer: VecDeque::new(),
        rx: registration.rx,
        generation: registration.generation,
        shared,
        filter,
        done: false,
    };
    Subscription::from_stream(futures_util::stream::unfold(state, Follow::next))
}

struct Follow {
    shared: Arc<Shared>,
    filter: EventFilter,
    /// Offset of the last event examined.
    last: u64,
    /// Offsets up to here are read from the table, later ones arrive on `rx`.
    replay_until: u64,
    buffer: VecDeque<Arc<Event>>,
    rx: broadcast::Receiver<Arc<Event>>,
    generation: u64,
    done: bool,
}

impl Follow {
    async fn next(mut self) -> Option<(Result<Arc<Event>>, Self)> {
        loop {
            if self.done {
                return None;
            }
            if let Some(event) = self.buffer.pop_front() {
                return Some((Ok(event), self));
            }
            if self.last < self.replay_until {
                if let Err(e) = self.replay_page().await {
                    self.done = true;
                    return Some((Err(e), self));
                }
                continue;
            }
            match self.rx.recv().await {
                Ok(event) => {
                    let offset = event.offset.offset;
                    if offset <= self.last {
                        continue;
                    }
                    if offset != self.last + 1 {
                        self.done = true;
                        return Some((Err(self.lagged("missed events")), self));
                    }
                    self.last = offset;
                    if self.filter.matches(&event) {
                        return Some((Ok(event), self));
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    self.done = true;
                    let err = self.lagged(&format!("fell {missed} events behind"));
                    return Some((Err(err), self));
                }
                Err(broadcast::error::RecvError::Closed) => {
                    self.done = true;
                    return match self.shared.fanout.why_closed(self.generation) {
                        Closed::Shutdown => None,
                        Closed::Interrupted => {
                            let err = self.lagged("missed events the log no longer retains");
                            Some((Err(err), self))
                        }
                    };
                }
            }
        }
    }

    async fn replay_page(&mut self) -> Result<()> {
        let mut conn = self.shared.conn().await?;
        let events = outbox::fetch(
            &mut conn,
            self.shared.epoch,
            self.last,
            self.replay_until,
            PAGE,
        )
        .await?;
        if events.first().map(|e| e.offset.offset) != Some(self.last + 1) {
            return Err(self.lagged("fell out of the retained log while replaying"));
        }
        for event in events {
            self.last = event.offset.offset;
            if self.filter.matches(&event) {
                self.buffer.push_back(event);
            }
        }
        Ok(())
    }

    fn lagged(&self, what: &str) -> Error {
        let at = ResumeToken::new(self.shared.epoch, self.last);
        Error::new(
            ErrorKind::Lagged,
            format!("subscriber {what} and was cut off; resume from `{at}`"),
        )
    }
}
