//! The storage seam: a [`WebhookStore`] keeps the adapter's durable state (endpoints
//! with their secrets and delivery cursor, the messages each endpoint owes, and the
//! attempt log), so that a restart resumes where delivery stood.
//!
//! [`crate::MemoryWebhookStore`] is the default. Every implementation runs the
//! behaviour suite (`webhook_store_behaviour_tests!`, feature `testing`): one test per
//! rule of the `# Behavior` sections below.
//!
//! # For implementors
//!
//! Each method is one atomic unit: in SQL, one transaction. A natural schema is three
//! tables:
//!
//! - `webhook_endpoints`: one row per [`Endpoint`] (the event patterns as a JSON
//!   array or text list, the secrets as their `whsec_...` text, the cursor as its
//!   resume-token text), with `version` and `revision` columns. [`WebhookStore::update_endpoint`]
//!   is `UPDATE ... SET version = version + 1, cursor = CASE WHEN revision <> $rev THEN
//!   $cursor ELSE cursor END, ... WHERE id = $id AND version = $version`;
//!   [`WebhookStore::advance`] is `UPDATE ... SET cursor = $c WHERE id = $id AND
//!   revision = $rev` plus the message write, in one transaction.
//! - `webhook_messages`: primary key `(endpoint_id, message_id)`, a per-endpoint
//!   insertion sequence for the order of the log (a reopened message keeps its
//!   value), `status`, the body as bytes; an index on `(endpoint_id, status)` counts
//!   the pending ones.
//! - `webhook_attempts`: primary key the [`AttemptId`] (time-ordered), an index on
//!   `(endpoint_id, id)` for the newest-first listing.
//!
//! Deleting an endpoint deletes its messages and attempts (`ON DELETE CASCADE`).
//!
//! Only the dispatcher holding the delivery lease calls [`WebhookStore::advance`] and
//! [`WebhookStore::settle`]; endpoint changes and [`WebhookStore::queue`] come from any
//! instance, so the pending count checked by `queue` may be passed by a few messages
//! under read-committed isolation (it bounds memory, not correctness).

use std::str::FromStr;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use petstore_core::{Error, EventType, Result, ResumeToken, TypePattern};
use serde::Serialize;

pub use crate::ids::{AttemptId, EndpointId};
pub use crate::signing::WebhookSecret;
/// The URL type of [`Endpoint::url`] (the `url` crate's, as reqwest re-exports it).
pub use reqwest::Url;

/// A webhook endpoint as stored: its settings, its secrets and where its delivery
/// stands in the event log.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    /// The id (`ep_...`).
    pub id: EndpointId,
    /// Where deliveries are POSTed.
    pub url: Url,
    /// Free text from the administrator.
    pub description: String,
    /// Event type patterns; empty means every event type.
    pub events: Vec<TypePattern>,
    /// Whether events are delivered.
    pub enabled: bool,
    /// Why it was disabled (`None` while enabled).
    pub disabled_reason: Option<String>,
    /// Since when every attempt has failed (`None` while healthy).
    pub failing_since: Option<DateTime<Utc>>,
    /// The secret deliveries are signed with.
    pub secret: WebhookSecret,
    /// The secret before the last rotation, which also signs until it expires.
    pub previous_secret: Option<PreviousSecret>,
    /// The position of the last event the endpoint's follower examined.
    pub cursor: ResumeToken,
    /// Set when events could not be delivered because the cursor fell out of the
    /// retained log.
    pub last_gap: Option<String>,
    /// Bumped whenever the follower must start again from the stored cursor: the
    /// cursor was set from outside (replay, re-enable) or `enabled` changed. Within a
    /// revision the cursor belongs to the follower ([`WebhookStore::advance`]).
    pub revision: u64,
    /// Bumped by every [`WebhookStore::update_endpoint`]: the optimistic-concurrency
    /// check of read-modify-write changes.
    pub version: u64,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When its settings last changed.
    pub updated_at: DateTime<Utc>,
}

impl Endpoint {
    /// Whether the endpoint takes events of type `t`.
    pub fn wants(&self, t: EventType) -> bool {
        self.events.is_empty() || self.events.iter().any(|p| p.matches(t))
    }
}

/// The previous secret of an endpoint during a rotation's grace period.
#[derive(Debug, Clone, PartialEq)]
pub struct PreviousSecret {
    /// The secret.
    pub secret: WebhookSecret,
    /// Until when deliveries are also signed with it.
    pub expires_at: DateTime<Utc>,
}

/// Where a message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    /// Being delivered or waiting for its next attempt.
    Pending,
    /// A 2xx answer was received.
    Succeeded,
    /// Every attempt failed, or the receiver answered 410.
    Failed,
    /// Stopped because the endpoint was disabled.
    Cancelled,
}

impl MessageStatus {
    /// The text form (`pending`, `succeeded`, `failed`, `cancelled`), as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

impl FromStr for MessageStatus {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        [
            Self::Pending,
            Self::Succeeded,
            Self::Failed,
            Self::Cancelled,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
        .ok_or_else(|| Error::invalid_field("status", format!("unknown message status `{s}`")))
    }
}

/// A message an endpoint owes or remembers: one event (or test event) for one
/// endpoint, with where its delivery stands.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The endpoint it is for.
    pub endpoint: EndpointId,
    /// The `webhook-id`: the event id (`evt_...`), or `test_...` for test events. Unique
    /// within an endpoint; the same on every attempt, redelivery and replay.
    pub id: String,
    /// The event type (`pet.created`, `webhook.test`, ...).
    pub event_type: String,
    /// The event's position in the log (`None` for test events).
    pub offset: Option<ResumeToken>,
    /// The exact bytes POSTed on every attempt.
    pub body: Bytes,
    /// Where it stands.
    pub status: MessageStatus,
    /// Attempts made so far, across redeliveries.
    pub attempts: u32,
    /// Attempts made in the current round (since it was queued or reopened): the
    /// position in the retry schedule.
    pub step: u32,
    /// When it was first queued.
    pub created_at: DateTime<Utc>,
    /// When the last attempt started.
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// When the next attempt is due (`None`: now).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The receiver's status code at the last attempt.
    pub last_status_code: Option<u16>,
    /// Why the last attempt (or the message) failed.
    pub last_error: Option<String>,
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// A 2xx answer.
    Succeeded,
    /// Anything else.
    Failed,
}

impl AttemptOutcome {
    /// The text form (`succeeded`, `failed`), as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }
}

impl FromStr for AttemptOutcome {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        [Self::Succeeded, Self::Failed]
            .into_iter()
            .find(|outcome| outcome.as_str() == s)
            .ok_or_else(|| {
                Error::invalid_field("outcome", format!("unknown attempt outcome `{s}`"))
            })
    }
}

/// One delivery attempt, as logged.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    /// The id (`atm_...`).
    pub id: AttemptId,
    /// The endpoint it went to.
    pub endpoint: EndpointId,
    /// The message's `webhook-id`.
    pub message_id: String,
    /// The message's event type.
    pub event_type: String,
    /// 1 for the first attempt of the message, then 2, 3, ...
    pub attempt: u32,
    /// Where it was sent.
    pub url: String,
    /// When it started.
    pub timestamp: DateTime<Utc>,
    /// The receiver's status code, if it answered.
    pub status_code: Option<u16>,
    /// How long it took, in milliseconds.
    pub latency_ms: u64,
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// The start of the receiver's answer (at most 1 KiB).
    pub response_body: Option<String>,
}

/// The bounds a store keeps per endpoint (from [`crate::WebhookConfig`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Messages remembered: beyond it the oldest finished ones go; pending ones stay.
    pub messages: usize,
    /// Messages that may be pending at once.
    pub pending: usize,
    /// Attempts remembered: beyond it the oldest go.
    pub attempts: usize,
}

/// What [`WebhookStore::advance`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advance {
    /// The cursor moved; no message was queued (none given, or it was pending
    /// already).
    Moved,
    /// The cursor moved and the message was queued (inserted or reopened).
    Queued,
    /// Nothing changed: the endpoint has `limits.pending` pending messages.
    Full,
    /// Nothing changed: the stored revision is not the given one.
    Stale,
    /// The endpoint does not exist.
    Gone,
}

/// What [`WebhookStore::queue`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Queue {
    /// Queued (inserted or reopened); the message as stored now.
    Queued(Box<Message>),
    /// Nothing changed: a message with this id is pending already.
    Pending,
    /// Nothing changed: the endpoint has `limits.pending` pending messages.
    Full,
}

/// Storage for webhook endpoints, their messages and attempts.
///
/// One process delivers for the whole store at a time (the dispatcher holds a lease
/// while it does), but management writes come from every process sharing the store:
/// writes that can race are conditional (`version`, `revision`, "only while pending").
#[async_trait]
pub trait WebhookStore: std::fmt::Debug + Send + Sync + 'static {
    /// Adds an endpoint; `false` (and nothing stored) when `limit` endpoints exist
    /// already.
    ///
    /// # Behavior
    /// - Stored as given: [`WebhookStore::endpoint`] returns an equal value.
    /// - With `limit` endpoints stored, `false` and nothing changes.
    async fn create_endpoint(&self, endpoint: &Endpoint, limit: usize) -> Result<bool>;

    /// One endpoint.
    ///
    /// # Behavior
    /// - `None` for an unknown id; the last stored state otherwise.
    async fn endpoint(&self, id: &EndpointId) -> Result<Option<Endpoint>>;

    /// Every endpoint.
    ///
    /// # Behavior
    /// - In id (creation) order.
    async fn endpoints(&self) -> Result<Vec<Endpoint>>;

    /// Replaces an endpoint if the stored `version` is `endpoint.version`; the stored
    /// version becomes `endpoint.version + 1`. `false` (and nothing changes) when the
    /// version differs or the endpoint is gone.
    ///
    /// # Behavior
    /// - Every field is replaced, except the cursor and `last_gap` when `revision` is
    ///   the stored one: within a revision they belong to [`WebhookStore::advance`],
    ///   so a settings change never moves the cursor back.
    /// - A stale `version` or an unknown id: `false`, nothing changes.
    /// - Secrets round-trip exactly, the previous one with its expiry.
    async fn update_endpoint(&self, endpoint: &Endpoint) -> Result<bool>;

    /// Deletes an endpoint with its messages and attempts; `false` when unknown.
    ///
    /// # Behavior
    /// - Afterwards the endpoint, its messages (also in [`WebhookStore::pending`]) and
    ///   its attempts are gone; a second delete is `false`.
    async fn delete_endpoint(&self, id: &EndpointId) -> Result<bool>;

    /// The follower's step: moves the endpoint's cursor to `cursor` if its revision is
    /// `revision`, and queues `message` in the same atomic write.
    ///
    /// # Behavior
    /// - Unknown endpoint: [`Advance::Gone`]; another revision: [`Advance::Stale`];
    ///   nothing changes.
    /// - Without a message: the cursor moves, [`Advance::Moved`]. `version` does not
    ///   change.
    /// - With a message whose id is pending already: the cursor moves, the message is
    ///   untouched, [`Advance::Moved`].
    /// - Otherwise, when `limits.pending` messages of the endpoint are pending:
    ///   [`Advance::Full`] and nothing changes (the cursor waits).
    /// - Otherwise the message is queued as by [`WebhookStore::queue`] and the cursor
    ///   moves: [`Advance::Queued`].
    async fn advance(
        &self,
        endpoint: &EndpointId,
        revision: u64,
        cursor: ResumeToken,
        message: Option<&Message>,
        limits: &Limits,
    ) -> Result<Advance>;

    /// Queues a message for delivery (`message.endpoint`): a new id is inserted as
    /// given; a finished message with the same id is reopened.
    ///
    /// # Behavior
    /// - Unknown endpoint: a `NotFound` error.
    /// - A pending message with the id: [`Queue::Pending`], nothing changes.
    /// - `limits.pending` messages pending: [`Queue::Full`], nothing changes.
    /// - A new id: inserted (as the newest); then, beyond `limits.messages`, the oldest
    ///   finished messages are dropped, never a pending one.
    /// - A finished message with the id is reopened: status pending, `step` 0,
    ///   `next_attempt_at` from `message`; its place in the log, body, `attempts`,
    ///   `created_at` and last-attempt fields stay.
    async fn queue(&self, message: &Message, limits: &Limits) -> Result<Queue>;

    /// One message of an endpoint.
    ///
    /// # Behavior
    /// - `None` for an unknown endpoint or message id.
    async fn message(&self, endpoint: &EndpointId, id: &str) -> Result<Option<Message>>;

    /// Up to `limit` messages of an endpoint, newest (last inserted) first.
    ///
    /// # Behavior
    /// - Empty for an unknown endpoint. A reopened message keeps its place.
    async fn messages(&self, endpoint: &EndpointId, limit: usize) -> Result<Vec<Message>>;

    /// Every pending message of every endpoint: `(endpoint, message id)`.
    ///
    /// # Behavior
    /// - Exactly the pending ones; per endpoint, oldest first.
    async fn pending(&self) -> Result<Vec<(EndpointId, String)>>;

    /// Records the outcome of a delivery step of a pending message: `message`'s
    /// delivery state (status, `attempts`, `step`, last and next attempt times, last
    /// status code and error) replaces the stored one's, and `attempt`, if any, is
    /// appended to the endpoint's attempt log. `false` (and nothing changes) when the
    /// stored message is not pending or is gone.
    ///
    /// # Behavior
    /// - Only a pending message is changed; a finished or unknown one: `false`.
    /// - A message settled with a finished status leaves the pending set.
    /// - Beyond `limits.attempts`, the oldest attempts of the endpoint are dropped.
    async fn settle(
        &self,
        message: &Message,
        attempt: Option<&Attempt>,
        limits: &Limits,
    ) -> Result<bool>;

    /// Up to `limit` attempts of an endpoint, newest first, only those of `message`
    /// when given.
    ///
    /// # Behavior
    /// - Newest (last appended) first; filtered by message id; empty for an unknown
    ///   endpoint.
    async fn attempts(
        &self,
        endpoint: &EndpointId,
        message: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Attempt>>;
}

/// How many times [`WebhookStoreExt::modify_endpoint`] re-reads after a concurrent
/// change before it gives up.
const MODIFY_ATTEMPTS: usize = 16;

/// Conveniences over any [`WebhookStore`].
#[async_trait]
pub trait WebhookStoreExt: WebhookStore {
    /// One endpoint, or `NotFound`.
    async fn existing_endpoint(&self, id: &EndpointId) -> Result<Endpoint> {
        self.endpoint(id)
            .await?
            .ok_or_else(|| Error::not_found("webhook endpoint", id))
    }

    /// Read-modify-write of one endpoint: reads it, lets `change` edit it (returning
    /// whether anything changed) and writes it with the version check, reading again
    /// after a concurrent change. Returns the endpoint as stored: `NotFound` when it
    /// does not exist, `change`'s error as is, `Conflict` after repeated concurrent
    /// changes.
    async fn modify_endpoint<F>(&self, id: &EndpointId, mut change: F) -> Result<Endpoint>
    where
        F: FnMut(&mut Endpoint) -> Result<bool> + Send,
    {
        for _ in 0..MODIFY_ATTEMPTS {
            let mut endpoint = self.existing_endpoint(id).await?;
            if !change(&mut endpoint)? {
                return Ok(endpoint);
            }
            if self.update_endpoint(&endpoint).await? {
                endpoint.version += 1;
                return Ok(endpoint);
            }
        }
        Err(Error::stale_write(format_args!("webhook endpoint `{id}`")))
    }
}

impl<S: WebhookStore + ?Sized> WebhookStoreExt for S {}
