//! What only backend implementors need: the [`Store`] trait, the [`Change`] a command
//! commits, and the [`Fanout`] that turns a stored log into live subscriptions.
//! Applications use [`crate::PetStore`] (and pick a backend such as
//! [`crate::MemoryStore`]); adapters see the service, never the backend.
//!
//! A [`Store`] keeps pets, orders, payments and users, and appends events in the same
//! atomic [`Store::commit`] as the state change they describe (an outbox, so that a
//! SQL backend implements it with one transaction). Run
//! `petstore_core::store_behaviour_tests!` against every implementation.

mod change;
mod fanout;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use change::{Change, EventParts, Expect, IdempotencyRecord, NewEvent, Write};
pub use fanout::{Fanout, Replay, replay_from};

pub use crate::log::EventLog;

use crate::error::{Error, ErrorKind, Result};
use crate::event::{Event, ResumeToken};
use crate::id::{OrderId, PaymentId, PetId};
use crate::order::{Order, OrderQuery, Payment};
use crate::pet::{Inventory, Pet, PetQuery};
use crate::user::User;

/// A read together with the log position it saw, so that "snapshot, then catch up
/// from `position`, then live" never races.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot<T> {
    /// What was read.
    pub items: T,
    /// The log head at the time of the read.
    pub position: ResumeToken,
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
    /// - Events get consecutive offsets in the order given, with no gap between
    ///   commits, and are readable exactly when the writes are; subscribers receive
    ///   them in offset order.
    async fn commit(&self, change: Change, source: &str) -> Result<Vec<Arc<Event>>>;

    /// Acquires or renews the lease `name` for `holder` for `ttl`: the way work that
    /// must happen once per store (a webhook endpoint's deliveries, the bridge to a
    /// shared MQTT broker) gets one owner among the instances sharing the store.
    ///
    /// # Behavior
    /// - Granted (`true`) when the lease is free, expired, or held by `holder`; a
    ///   grant lasts `ttl` from now.
    /// - Refused (`false`) while another holder's grant lasts.
    /// - A released lease is free at once.
    async fn acquire_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool>;

    /// Releases `holder`'s lease `name` (nothing happens if another holder has it).
    ///
    /// # Behavior
    /// - After it, another holder's [`Store::acquire_lease`] is granted.
    async fn release_lease(&self, name: &str, holder: &str) -> Result<()>;
}
