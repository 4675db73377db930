//! The one log follower for durable consumers (the webhook dispatcher, the MQTT
//! bridge, the MCP resource feed): it replays from its position, follows the live log,
//! and recovers by itself from a lag and from a position the log no longer retains.
//!
//! # The policy for a position the log no longer retains
//!
//! When the events after the follower's position have left retention (or the log is
//! a new generation, another epoch), the follower goes on from the **oldest retained
//! event** and reports the gap once as [`Followed::Gap`]. It loses only what the log
//! no longer has; jumping to the head instead would also skip the events the log
//! still retains. Consumers log the gap and count it.

use std::sync::Arc;

use futures_util::StreamExt;

use super::PetStore;
use crate::auth::Principal;
use crate::error::{Error, ErrorKind, Result};
use crate::event::{Event, EventFilter, ResetReason, ResumeToken};
use crate::log::Subscription;

/// What [`Follower::next`] yields.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Followed {
    /// The next event.
    Event(Arc<Event>),
    /// The events after `after` were gone from the log; the follower goes on after
    /// `resumed_at` (the position before the oldest retained event).
    Gap {
        /// The follower's position when it found the gap.
        after: ResumeToken,
        /// Where it goes on from.
        resumed_at: ResumeToken,
        /// Why the events were gone.
        reason: ResetReason,
    },
}

/// Follows the event log as a principal, for a consumer that must not lose its place.
/// Build one with [`PetStore::follow`].
#[derive(Debug)]
pub struct Follower {
    service: PetStore,
    who: Principal,
    filter: EventFilter,
    /// The last event yielded (or the start).
    position: ResumeToken,
    sub: Option<Subscription>,
    lagged: u64,
}

impl Follower {
    pub(super) fn new(
        service: PetStore,
        who: Principal,
        filter: EventFilter,
        from: ResumeToken,
    ) -> Self {
        Self {
            service,
            who,
            filter,
            position: from,
            sub: None,
            lagged: 0,
        }
    }

    /// The position of the last event yielded (resuming from it yields what follows).
    pub fn position(&self) -> ResumeToken {
        self.position
    }

    /// Goes on after `to` instead (for example after a consumer lost what it had
    /// taken but not yet finished).
    pub fn seek(&mut self, to: ResumeToken) {
        self.position = to;
        self.sub = None;
    }

    /// How many times the live log outran this follower (it re-read from its
    /// position each time, losing nothing).
    pub fn lagged(&self) -> u64 {
        self.lagged
    }

    /// The next event, or a gap report. Errors are those of the log or of
    /// authorization (for example the store is unreachable); the follower keeps its
    /// position, so calling `next` again later goes on where it was.
    pub async fn next(&mut self) -> Result<Followed> {
        loop {
            let sub = match self.sub.as_mut() {
                Some(sub) => sub,
                None => {
                    let from = self.position;
                    match self
                        .service
                        .subscribe(&self.who, Some(from), self.filter.clone())
                        .await
                    {
                        Ok(sub) => self.sub.insert(sub),
                        Err(e) if e.kind() == ErrorKind::ResumeExpired => {
                            let resumed_at = self.service.oldest_position().await?;
                            self.position = resumed_at;
                            return Ok(Followed::Gap {
                                after: from,
                                resumed_at,
                                reason: e.reset_reason().unwrap_or(ResetReason::Expired),
                            });
                        }
                        Err(e) => return Err(e),
                    }
                }
            };
            match sub.next().await {
                Some(Ok(event)) => {
                    self.position = event.offset();
                    return Ok(Followed::Event(event));
                }
                Some(Err(e)) if e.kind() == ErrorKind::Lagged => {
                    // Re-read from the last event yielded: nothing is lost.
                    self.lagged += 1;
                    self.sub = None;
                }
                Some(Err(e)) => {
                    self.sub = None;
                    return Err(e);
                }
                None => {
                    self.sub = None;
                    return Err(Error::new(
                        ErrorKind::Unavailable,
                        "the event log closed the subscription",
                    ));
                }
            }
        }
    }
}
