//! What a command hands to [`super::Store::commit`]: writes with their
//! optimistic-concurrency expectations, and the events that describe them.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::context::TraceParent;
use crate::event::{Event, EventData, ResumeToken};
use crate::id::{EventId, PetId};
use crate::order::{Order, Payment};
use crate::pet::Pet;
use crate::user::User;

/// What a write expects to find, for optimistic concurrency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The record must not exist yet.
    Absent,
    /// The record must exist with exactly this version.
    Version(u64),
}

/// One write of a [`Change`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Write {
    /// Insert or replace a pet.
    PutPet {
        /// The new state.
        pet: Pet,
        /// What must be stored now.
        expect: Expect,
    },
    /// Remove a pet.
    DeletePet {
        /// Which pet.
        id: PetId,
        /// The version that must be stored now.
        version: u64,
    },
    /// Insert or replace an order.
    PutOrder {
        /// The new state.
        order: Order,
        /// What must be stored now.
        expect: Expect,
    },
    /// Insert a payment (payments are never changed).
    PutPayment(Payment),
    /// Insert a user.
    PutUser(User),
    /// Remember the result of an idempotent request; fails if the key exists.
    PutIdempotency {
        /// The scoped key.
        key: String,
        /// What it produced.
        record: IdempotencyRecord,
    },
}

/// The outcome of an idempotent request, kept so that a retry gets the same answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct IdempotencyRecord {
    /// A fingerprint of the request; the same key with another request is refused.
    pub fingerprint: String,
    /// The id of the resource the request produced.
    pub resource: String,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
}

/// An event before the log gives it its offset.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct NewEvent {
    /// The payload (its variant is the event type).
    pub data: EventData,
    /// The trace context of the write, set by the service from
    /// [`crate::RequestContext`].
    pub traceparent: Option<TraceParent>,
}

impl NewEvent {
    /// An event carrying `data`.
    pub fn new(data: EventData) -> Self {
        Self {
            data,
            traceparent: None,
        }
    }

    /// The event as appended at `offset`, with a fresh id: what a backend does when
    /// it commits.
    pub fn sequenced(self, source: &str, time: DateTime<Utc>, offset: ResumeToken) -> Event {
        EventParts {
            id: EventId::generate(),
            source: source.into(),
            time,
            offset,
            data: self.data,
            traceparent: self.traceparent,
        }
        .build()
    }
}

/// Every part of a stored event, for a backend that reads events back from storage
/// (the same id, time and offset on every instance that reads them).
#[derive(Debug, Clone, PartialEq)]
pub struct EventParts {
    /// The event id.
    pub id: EventId,
    /// The CloudEvents `source`.
    pub source: Arc<str>,
    /// When it happened.
    pub time: DateTime<Utc>,
    /// Its position in the log.
    pub offset: ResumeToken,
    /// The payload.
    pub data: EventData,
    /// The trace context of the write that caused it.
    pub traceparent: Option<TraceParent>,
}

impl EventParts {
    /// The event.
    pub fn build(self) -> Event {
        Event::from_parts(self)
    }
}

/// An atomic unit of change: every write's expectation holds and all writes apply and
/// all events append, or nothing happens.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Change {
    /// State writes.
    pub writes: Vec<Write>,
    /// Events describing them, in order.
    pub events: Vec<NewEvent>,
}

impl Change {
    /// An empty change.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a write.
    pub fn write(mut self, write: Write) -> Self {
        self.writes.push(write);
        self
    }

    /// Adds an event.
    pub fn event(mut self, data: EventData) -> Self {
        self.events.push(NewEvent::new(data));
        self
    }
}
