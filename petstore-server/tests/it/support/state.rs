//! The store's state as the suites compare it: a snapshot of everything a refused
//! request must leave alone, and the event log after a position.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use petstore_core::backend::Write;
use petstore_core::testing::Commits;
use petstore_core::{Event, EventFilter, Order, OrderQuery, Pet, PetQuery, PetStore, ResumeToken};

use super::system;

/// The commit records of the servers the suites started, by service instance.
fn records() -> &'static Mutex<HashMap<String, Commits>> {
    static RECORDS: OnceLock<Mutex<HashMap<String, Commits>>> = OnceLock::new();
    RECORDS.get_or_init(Mutex::default)
}

/// Makes [`snapshot`] of `store` count the commits recorded in `commits`.
pub(crate) fn record(store: &PetStore, commits: Commits) {
    records()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(store.instance().to_owned(), commits);
}

fn commits_of(store: &PetStore) -> Option<Commits> {
    records()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(store.instance())
        .cloned()
}

/// Everything a refused request must leave alone.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Snapshot {
    pub(crate) head: ResumeToken,
    pub(crate) pets: Vec<Pet>,
    pub(crate) orders: Vec<Order>,
    /// Every write committed so far (payments, idempotency keys, payment notice
    /// records: state no listing shows), when the server records them; empty
    /// otherwise.
    /// One entry per commit: its writes, as `Debug` prints them.
    pub(crate) writes: Vec<String>,
}

/// The log head, every pet and every order (all pages).
pub(crate) async fn snapshot(store: &PetStore) -> Snapshot {
    let who = system();
    let head = store.head().await.expect("head");
    let mut pets = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut query = PetQuery::default().limit(100);
        if let Some(c) = cursor.take() {
            query = query.cursor(c);
        }
        let page = store.pets(&who, &query).await.expect("pets");
        pets.extend(page.data);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let mut orders = Vec::new();
    loop {
        let mut query = OrderQuery::default().limit(100);
        if let Some(c) = cursor.take() {
            query = query.cursor(c);
        }
        let page = store.orders(&who, &query).await.expect("orders");
        orders.extend(page.data);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let writes = commits_of(store).map_or_else(Vec::new, |c| {
        c.since(0)
            .iter()
            .map(|writes: &Vec<Write>| format!("{writes:?}"))
            .collect()
    });
    Snapshot {
        head,
        pets,
        orders,
        writes,
    }
}

/// `Err` saying what changed between two snapshots.
pub(crate) fn unchanged(before: &Snapshot, after: &Snapshot) -> Result<(), String> {
    if before == after {
        return Ok(());
    }
    let mut what = Vec::new();
    if before.head != after.head {
        what.push(format!("log head moved {} -> {}", before.head, after.head));
    }
    if before.pets != after.pets {
        what.push(format!(
            "pets changed ({} -> {})",
            before.pets.len(),
            after.pets.len()
        ));
    }
    if before.orders != after.orders {
        what.push(format!(
            "orders changed ({} -> {})",
            before.orders.len(),
            after.orders.len()
        ));
    }
    if before.writes != after.writes {
        let new = after.writes.get(before.writes.len()..).unwrap_or_default();
        what.push(format!("{} new commits: {}", new.len(), new.join("; ")));
    }
    Err(format!("the store changed: {}", what.join("; ")))
}

/// Every event after `since` up to the current head that passes `filter`: what any
/// follower of the log must have seen.
pub(crate) async fn log_after(
    store: &PetStore,
    since: ResumeToken,
    filter: EventFilter,
) -> Vec<Arc<Event>> {
    let head = store.head().await.expect("head");
    let mut events = Vec::new();
    let mut cursor = since;
    while cursor.offset < head.offset {
        let batch = store
            .events(
                &system(),
                Some(cursor),
                1_000,
                filter.clone(),
                Duration::ZERO,
            )
            .await
            .expect("the log reads");
        cursor = batch.next;
        events.extend(batch.events);
    }
    events
}
