//! The follower of one endpoint: reads the event log from the endpoint's cursor with
//! the core's [`petstore_core::Follower`] (catch-up, then live, re-reading after a
//! lag; after a change of revision, again from the stored cursor) and hands every
//! event to [`Taker::take`], which moves the cursor in the store and queues a message
//! for the events the endpoint wants.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use petstore_core::{ErrorKind, Event, EventFilter, Followed, ResumeToken};
use tokio::sync::{Notify, watch};

use crate::backend::{Advance, Endpoint, WebhookStoreExt};
use crate::delivery::first_due;
use crate::ids::EndpointId;
use crate::local::Handles;
use crate::messages::new_message;
use crate::webhooks::AppState;

/// Pause after an unexpected failure to follow the log, and the longest wait for room
/// in a full backlog between two looks.
const FOLLOW_BACKOFF: Duration = Duration::from_secs(1);

/// Follows the log for endpoint `id` until it is deleted.
pub(crate) async fn follow(shared: Arc<AppState>, id: EndpointId) {
    let Some(Handles {
        mut control, freed, ..
    }) = shared.local.handles(&id)
    else {
        return;
    };
    loop {
        control.borrow_and_update();
        let endpoint = match shared.webhook_store.endpoint(&id).await {
            Ok(Some(endpoint)) => endpoint,
            Ok(None) => return,
            Err(e) => {
                if pause(&mut control, &id, &e).await {
                    continue;
                }
                return;
            }
        };
        if !endpoint.enabled {
            if control.changed().await.is_err() {
                return;
            }
            continue;
        }
        let cursor = endpoint.cursor;
        let mut taker = Taker {
            shared: &shared,
            endpoint,
            control: &mut control,
            freed: &freed,
        };
        // Every readable event: the cursor moves past the ones the endpoint's filter
        // rejects too, so it never falls behind the log for nothing. The core follower
        // re-reads after a lag, and reports a cursor the log no longer retains as a
        // gap (it goes on from the oldest retained event: the policy of the core).
        let followed = shared
            .service
            .follow(shared.follower.clone(), EventFilter::all(), Some(cursor))
            .await;
        let flow = match followed {
            Ok(mut follower) => loop {
                let item = tokio::select! {
                    changed = taker.control.changed() => match changed {
                        Ok(()) => match taker.refresh().await {
                            Flow::Next => continue,
                            flow => break flow,
                        },
                        Err(_) => break Flow::Stop,
                    },
                    item = follower.next() => item,
                };
                match item {
                    Ok(Followed::Event(event)) => match taker.take(&event).await {
                        Flow::Next => {}
                        flow => break flow,
                    },
                    Ok(Followed::Gap {
                        resumed_at, reason, ..
                    }) => {
                        let why = format!("the log no longer held them ({reason})");
                        break taker.skip_to(resumed_at, &why).await;
                    }
                    Ok(_) => {}
                    Err(e) => break pause_flow(taker.control, &id, &e).await,
                }
            },
            Err(e) => pause_flow(taker.control, &id, &e).await,
        };
        if flow == Flow::Stop {
            return;
        }
    }
}

/// What the follower does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// Go on with the next event.
    Next,
    /// Read the endpoint again and subscribe from its stored cursor.
    Again,
    /// The endpoint is gone.
    Stop,
}

/// Waits a moment after an error; `false` when the endpoint is gone.
async fn pause(
    control: &mut watch::Receiver<u64>,
    id: &EndpointId,
    error: &petstore_core::Error,
) -> bool {
    tracing::warn!(endpoint = %id, %error, "cannot follow the event log; retrying");
    tokio::select! {
        () = tokio::time::sleep(FOLLOW_BACKOFF) => true,
        changed = control.changed() => changed.is_ok(),
    }
}

async fn pause_flow(
    control: &mut watch::Receiver<u64>,
    id: &EndpointId,
    error: &petstore_core::Error,
) -> Flow {
    if pause(control, id, error).await {
        Flow::Again
    } else {
        Flow::Stop
    }
}

/// Takes events for one endpoint, as of one revision of it.
struct Taker<'a> {
    shared: &'a AppState,
    endpoint: Endpoint,
    control: &'a mut watch::Receiver<u64>,
    freed: &'a Notify,
}

impl Taker<'_> {
    /// After a poke: reads the endpoint again. A new revision (or disabled, or gone)
    /// ends this subscription; other changes (filter, URL) apply from the next event.
    async fn refresh(&mut self) -> Flow {
        let id = &self.endpoint.id;
        match self.shared.webhook_store.endpoint(id).await {
            Ok(Some(e)) if e.enabled && e.revision == self.endpoint.revision => {
                self.endpoint = e;
                Flow::Next
            }
            Ok(Some(_)) => Flow::Again,
            Ok(None) => Flow::Stop,
            Err(e) => pause_flow(self.control, id, &e).await,
        }
    }

    /// Moves the cursor past `event`, queueing its message when the endpoint wants it.
    /// A full backlog stops the cursor here: events wait in the log.
    async fn take(&mut self, event: &Event) -> Flow {
        let shared = self.shared;
        let id = self.endpoint.id.clone();
        loop {
            let now = Utc::now();
            // Built before the store is asked: replays of a pending message are rare.
            let message = self.endpoint.wants(event.event_type()).then(|| {
                new_message(
                    id.clone(),
                    event.id().as_str().to_owned(),
                    event.event_type().as_str().to_owned(),
                    Some(event.offset()),
                    shared.bodies.body(event),
                    now,
                    first_due(&shared.config, now),
                )
            });
            let advanced = shared
                .webhook_store
                .advance(
                    &id,
                    self.endpoint.revision,
                    event.offset(),
                    message.as_ref(),
                    &shared.config.limits(),
                )
                .await;
            match advanced {
                Ok(Advance::Moved) => return Flow::Next,
                Ok(Advance::Queued) => {
                    shared.local.ready(id, event.id().as_str().to_owned());
                    return Flow::Next;
                }
                Ok(Advance::Full) => {
                    let flow = tokio::select! {
                        () = self.freed.notified() => Flow::Next,
                        // Room made by another instance is seen on the next look.
                        () = tokio::time::sleep(FOLLOW_BACKOFF) => Flow::Next,
                        changed = self.control.changed() => match changed {
                            Ok(()) => self.refresh().await,
                            Err(_) => Flow::Stop,
                        },
                    };
                    if flow != Flow::Next {
                        return flow;
                    }
                }
                Ok(Advance::Stale) => return Flow::Again,
                Ok(Advance::Gone) => return Flow::Stop,
                Err(e) => return pause_flow(self.control, &id, &e).await,
            }
        }
    }

    /// After the cursor fell out of the retained log: go on after `head` (a new
    /// revision), unless the endpoint changed meanwhile.
    async fn skip_to(&mut self, head: ResumeToken, why: &str) -> Flow {
        let revision = self.endpoint.revision;
        let skipped = self
            .shared
            .webhook_store
            .modify_endpoint(&self.endpoint.id, |e| {
                if e.revision != revision {
                    return Ok(false);
                }
                tracing::warn!(endpoint = %e.id, %why, "webhook endpoint skipped events");
                e.last_gap = Some(format!(
                    "events after `{}` up to `{head}` were not delivered: {why}",
                    e.cursor
                ));
                e.cursor = head;
                e.revision += 1;
                Ok(true)
            })
            .await;
        match skipped {
            Ok(_) => Flow::Again,
            Err(e) if e.kind() == ErrorKind::NotFound => Flow::Stop,
            Err(e) => pause_flow(self.control, &self.endpoint.id, &e).await,
        }
    }
}
