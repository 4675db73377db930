//! Reading and following the event log, narrowed to what the reader may see.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Follower, MAX_EVENT_READ, PetStore};
use crate::auth::Principal;
use crate::error::{Error, Result};
use crate::event::{EventFilter, ResumeToken};
use crate::log::{EventBatch, EventLogExt, Subscription};

impl PetStore {
    /// The current log head.
    pub async fn head(&self) -> Result<ResumeToken> {
        self.store().head().await
    }

    /// Reads the log (polling). Without channels in `filter`, returns every event the
    /// caller may read. `wait` > 0 long-polls when nothing is new.
    pub async fn events(
        &self,
        who: &Principal,
        since: Option<ResumeToken>,
        limit: usize,
        filter: EventFilter,
        wait: Duration,
    ) -> Result<EventBatch> {
        let filter = self.readable_filter(who, filter).await?;
        if limit == 0 || limit > MAX_EVENT_READ {
            return Err(Error::invalid_field(
                "limit",
                format!("must be between 1 and {MAX_EVENT_READ}"),
            ));
        }
        self.store()
            .read_or_wait(since, limit, &filter, wait.min(Duration::from_secs(60)))
            .await
    }

    /// The position to read from for the events after `time` (polling with a time
    /// instead of a token). Fails with `ResumeExpired` when retention dropped some of
    /// them.
    pub async fn position_at(&self, who: &Principal, time: DateTime<Utc>) -> Result<ResumeToken> {
        self.readable_filter(who, EventFilter::all()).await?;
        self.store().position_at(time).await
    }

    /// Follows the log from `since` (live only when `None`), for the channels in
    /// `filter` (everything readable when empty).
    pub async fn subscribe(
        &self,
        who: &Principal,
        since: Option<ResumeToken>,
        filter: EventFilter,
    ) -> Result<Subscription> {
        let filter = self.readable_filter(who, filter).await?;
        self.store().subscribe(since, filter).await
    }

    /// A [`Follower`] of the log for a durable consumer acting as `who`, after `from`
    /// (after the current head when `None`).
    pub async fn follow(
        &self,
        who: Principal,
        filter: EventFilter,
        from: Option<ResumeToken>,
    ) -> Result<Follower> {
        let from = match from {
            Some(from) => from,
            None => self.head().await?,
        };
        Ok(Follower::new(self.clone(), who, filter, from))
    }
}
