//! Following the log: the follower task that reads committed events from the table
//! and publishes them to this process's subscribers (through the core's `Fanout`),
//! what wakes it, and the replay each new subscription reads from the table before
//! it goes live.

use std::sync::Arc;
use std::time::Duration;

use petstore_core::backend::Replay;
use petstore_core::{Error, ErrorKind, Result, ResumeToken};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

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
        let Some(fanout) = shared.fanout() else {
            return Ok(());
        };
        let last = fanout.published().offset;
        let events = outbox::fetch(&mut conn, shared.epoch, last, u64::MAX, PAGE).await?;
        let Some(first) = events.first() else {
            return Ok(());
        };
        let fanout = if first.offset().offset != last + 1 {
            // Retention deleted events this process never published. Its live
            // subscriptions end (a resume from their last token is refused as expired,
            // never silently skipped) and the feed restarts before the oldest row.
            tracing::warn!(
                published = last,
                oldest = first.offset().offset,
                "the event log follower fell out of retention; live subscribers must resume"
            );
            match shared.restart_fanout(first.offset().offset - 1) {
                Some(fanout) => fanout,
                None => return Ok(()),
            }
        } else {
            fanout
        };
        let full = events.len() as u64 == PAGE;
        for event in events {
            fanout.publish(event);
        }
        if !full {
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

/// The stored events in `(after, until]`, oldest first, read in pages: what a new
/// subscription replays before the `Fanout` hands it live events. A row missing at
/// the start of a page (deleted by retention meanwhile) ends it with `Lagged`.
pub(crate) fn replay(shared: Arc<Shared>, after: u64, until: ResumeToken) -> Replay {
    let until = until.offset;
    let pages = futures_util::stream::try_unfold(after, move |last| {
        let shared = shared.clone();
        async move {
            if last >= until {
                return Ok(None);
            }
            let mut conn = shared.conn().await?;
            let events = outbox::fetch(&mut conn, shared.epoch, last, until, PAGE).await?;
            if events.first().map(|e| e.offset().offset) != Some(last + 1) {
                let at = ResumeToken::new(shared.epoch, last);
                return Err(Error::new(
                    ErrorKind::Lagged,
                    format!(
                        "subscriber fell out of the retained log while replaying; resume from `{at}`"
                    ),
                ));
            }
            let next = events.last().map_or(until, |e| e.offset().offset);
            Ok(Some((
                futures_util::stream::iter(events.into_iter().map(Ok::<_, Error>)),
                next,
            )))
        }
    });
    Box::pin(futures_util::TryStreamExt::try_flatten(pages))
}
