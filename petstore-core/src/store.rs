//! The storage seam: a [`Store`] keeps pets, orders, payments and users, and appends
//! events in the same atomic [`Store::commit`] as the state change they describe (an
//! outbox, so that a SQL backend can implement it with one transaction).

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::event::{Event, EventType, ResumeToken};
use crate::id::{OrderId, PaymentId, PetId};
use crate::log::EventLog;
use crate::order::{Order, OrderQuery, Payment};
use crate::pet::{Inventory, Pet, PetQuery};
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

/// An event before it gets its offset.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// The type.
    pub event_type: EventType,
    /// The resource id (or chat room).
    pub subject: String,
    /// The payload.
    pub data: serde_json::Value,
}

/// An atomic unit of change: every write's expectation holds and all writes apply and
/// all events append, or nothing happens.
#[derive(Debug, Clone, Default)]
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
    pub fn event(
        mut self,
        event_type: EventType,
        subject: impl Into<String>,
        data: serde_json::Value,
    ) -> Self {
        self.events.push(NewEvent {
            event_type,
            subject: subject.into(),
            data,
        });
        self
    }
}

/// A read together with the log position it saw, so that "snapshot, then catch up
/// from `position`, then live" never races.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot<T> {
    /// What was read.
    pub items: T,
    /// The log head at the time of the read.
    pub position: ResumeToken,
}

/// Turns a [`NewEvent`] into an envelope; the backend sets `offset` when appending.
pub fn envelope(new: NewEvent, source: &str, time: DateTime<Utc>) -> Event {
    Event::new(new.event_type, new.subject, new.data, source, time)
}

impl Error {
    /// The error a backend returns when a write's [`Expect`] does not hold. The
    /// service retries the command on it (it re-reads the state first).
    pub fn stale_write(what: impl std::fmt::Display) -> Self {
        Error::new(
            ErrorKind::Conflict,
            format!("{what} was changed concurrently"),
        )
        .with_source(StaleWrite)
    }

    /// Whether this is a [`Error::stale_write`].
    pub fn is_stale_write(&self) -> bool {
        std::error::Error::source(self).is_some_and(|s| s.is::<StaleWrite>())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("stale write")]
struct StaleWrite;

/// Storage for the Pet Store state and its event log. The in-memory [`crate::MemoryStore`]
/// is the default; a SQL backend keeps the log as an outbox table.
///
/// Run `petstore_core::store_behaviour_tests!` against every implementation.
#[async_trait]
pub trait Store: EventLog {
    /// One pet.
    ///
    /// # Behavior
    /// - `None` for an unknown id; the newest committed state otherwise.
    async fn pet(&self, id: &PetId) -> Result<Option<Pet>>;

    /// Up to `limit` pets matching `query`'s filters with ids after `after`, in id
    /// (creation) order, with the log head seen.
    ///
    /// # Behavior
    /// - Ordered by id, strictly after `after`; filters as [`PetQuery::matches`].
    async fn pets(
        &self,
        query: &PetQuery,
        after: Option<&PetId>,
        limit: usize,
    ) -> Result<Snapshot<Vec<Pet>>>;

    /// One order.
    ///
    /// # Behavior
    /// - `None` for an unknown id.
    async fn order(&self, id: &OrderId) -> Result<Option<Order>>;

    /// Up to `limit` orders matching `query` with ids after `after`, in id order.
    ///
    /// # Behavior
    /// - Ordered by id, strictly after `after`; filters as [`OrderQuery::matches`].
    async fn orders(
        &self,
        query: &OrderQuery,
        after: Option<&OrderId>,
        limit: usize,
    ) -> Result<Snapshot<Vec<Order>>>;

    /// One payment.
    ///
    /// # Behavior
    /// - `None` for an unknown id.
    async fn payment(&self, id: &PaymentId) -> Result<Option<Payment>>;

    /// One user.
    ///
    /// # Behavior
    /// - `None` for an unknown name.
    async fn user(&self, username: &str) -> Result<Option<User>>;

    /// A remembered idempotent request.
    ///
    /// # Behavior
    /// - `None` until a commit wrote the key.
    async fn idempotency(&self, key: &str) -> Result<Option<IdempotencyRecord>>;

    /// Pet counts per status, with the log head seen.
    ///
    /// # Behavior
    /// - Equal to counting every stored pet.
    async fn inventory(&self) -> Result<Snapshot<Inventory>>;

    /// Applies `change` atomically and appends its events; returns them with offsets.
    ///
    /// # Behavior
    /// - If any [`Expect`] fails, nothing is written, no event is appended and the
    ///   error is [`Error::stale_write`].
    /// - Events get consecutive offsets in the order given and are visible to readers
    ///   and subscribers exactly when the writes are.
    async fn commit(&self, change: Change, source: &str) -> Result<Vec<Arc<Event>>>;
}
