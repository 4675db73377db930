//! The in-memory backend: the embedded default (everything is lost at exit).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;

use crate::Error;
use crate::backend::{
    Change, Expect, Fanout, IdempotencyRecord, Snapshot, Store, Write, replay_from,
};
use crate::error::Result;
use crate::event::{Event, EventFilter, ResetReason, ResumeToken};
use crate::id::{OrderId, PaymentId, PetId};
use crate::log::{EventBatch, EventLog, LogConfig, Subscription};
use crate::order::{Order, OrderQuery, Payment};
use crate::pet::{Inventory, Pet, PetQuery};
use crate::user::User;

/// Idempotency records are kept this long.
const IDEMPOTENCY_TTL: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// A [`Store`] and [`EventLog`] in process memory. State and log sit behind one lock,
/// so a commit is atomic for every reader and subscriber.
#[derive(Debug)]
pub struct MemoryStore {
    state: RwLock<State>,
    fanout: Fanout,
}

#[derive(Debug)]
struct State {
    pets: BTreeMap<PetId, Pet>,
    orders: BTreeMap<OrderId, Order>,
    payments: HashMap<PaymentId, Payment>,
    users: HashMap<String, User>,
    idempotency: HashMap<String, IdempotencyRecord>,
    inventory: Inventory,
    log: Ring,
    leases: HashMap<String, (String, Instant)>,
}

/// The retained events: the newest `retention` of them.
#[derive(Debug)]
struct Ring {
    epoch: u64,
    head: u64,
    events: VecDeque<Arc<Event>>,
    retention: usize,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new(LogConfig::default())
    }
}

impl MemoryStore {
    /// An empty store whose log is sized by `config`.
    pub fn new(config: LogConfig) -> Self {
        // A random epoch: tokens from an earlier process never resume into this one.
        let epoch = u64::from_le_bytes(
            uuid::Uuid::new_v4().as_bytes()[..8]
                .try_into()
                .unwrap_or_default(),
        );
        Self {
            state: RwLock::new(State {
                pets: BTreeMap::new(),
                orders: BTreeMap::new(),
                payments: HashMap::new(),
                users: HashMap::new(),
                idempotency: HashMap::new(),
                inventory: Inventory::default(),
                log: Ring {
                    epoch,
                    head: 0,
                    events: VecDeque::new(),
                    retention: config.retention.max(1),
                },
                leases: HashMap::new(),
            }),
            fanout: Fanout::new(ResumeToken::new(epoch, 0), config.subscriber_buffer),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied commit (commit
        // checks everything before writing), so a poisoned lock is still consistent.
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }
}

impl Ring {
    fn head(&self) -> ResumeToken {
        ResumeToken::new(self.epoch, self.head)
    }

    /// Index in `events` of the first event after `since`.
    fn start_index(&self, since: Option<ResumeToken>) -> Result<usize> {
        let Some(since) = since else { return Ok(0) };
        if since.epoch != self.epoch {
            return Err(ResetReason::EpochMismatch.into_error(since));
        }
        if since.offset > self.head {
            return Err(Error::invalid_field(
                "since",
                format!(
                    "resume token `{since}` is ahead of the log (head is {})",
                    self.head
                ),
            ));
        }
        let first = self
            .events
            .front()
            .map_or(self.head + 1, |e| e.offset().offset);
        if since.offset + 1 < first {
            return Err(ResetReason::Expired.into_error(since));
        }
        Ok((since.offset + 1 - first) as usize)
    }

    fn read(
        &self,
        since: Option<ResumeToken>,
        limit: usize,
        filter: &EventFilter,
    ) -> Result<EventBatch> {
        let start = self.start_index(since)?;
        let mut next = since.unwrap_or(ResumeToken::new(
            self.epoch,
            self.events
                .front()
                .map_or(self.head, |e| e.offset().offset - 1),
        ));
        let mut events = Vec::new();
        for event in self.events.iter().skip(start) {
            if events.len() >= limit {
                break;
            }
            next = event.offset();
            if filter.matches(event) {
                events.push(event.clone());
            }
        }
        Ok(EventBatch { events, next })
    }
}

fn page<K: Ord + Clone, V: Clone>(
    map: &BTreeMap<K, V>,
    after: Option<&K>,
    limit: usize,
    keep: impl Fn(&V) -> bool,
) -> Vec<V> {
    let lower = after.map_or(Bound::Unbounded, |k| Bound::Excluded(k.clone()));
    map.range((lower, Bound::Unbounded))
        .map(|(_, v)| v)
        .filter(|v| keep(v))
        .take(limit)
        .cloned()
        .collect()
}

fn check(expect: Expect, current: Option<u64>, what: &dyn std::fmt::Display) -> Result<()> {
    match (expect, current) {
        (Expect::Absent, None) => Ok(()),
        (Expect::Version(v), Some(c)) if v == c => Ok(()),
        _ => Err(Error::stale_write(what)),
    }
}

impl State {
    fn validate(&self, change: &Change) -> Result<()> {
        for write in &change.writes {
            match write {
                Write::PutPet { pet, expect } => {
                    check(*expect, self.pets.get(&pet.id).map(|p| p.version), &pet.id)?
                }
                Write::DeletePet { id, version } => check(
                    Expect::Version(*version),
                    self.pets.get(id).map(|p| p.version),
                    id,
                )?,
                Write::PutOrder { order, expect } => check(
                    *expect,
                    self.orders.get(&order.id).map(|o| o.version),
                    &order.id,
                )?,
                Write::PutPayment(p) => {
                    check(Expect::Absent, self.payments.get(&p.id).map(|_| 0), &p.id)?
                }
                Write::PutUser(u) => check(
                    Expect::Absent,
                    self.users.get(&u.username).map(|_| 0),
                    &u.username,
                )?,
                Write::PutIdempotency { key, .. } => check(
                    Expect::Absent,
                    self.idempotency.get(key).map(|_| 0),
                    &"idempotency key",
                )?,
            }
        }
        Ok(())
    }

    fn apply(&mut self, write: Write) {
        match write {
            Write::PutPet { pet, .. } => {
                self.inventory.add(pet.status, 1);
                if let Some(old) = self.pets.insert(pet.id.clone(), pet) {
                    self.inventory.add(old.status, -1);
                }
            }
            Write::DeletePet { id, .. } => {
                if let Some(old) = self.pets.remove(&id) {
                    self.inventory.add(old.status, -1);
                }
            }
            Write::PutOrder { order, .. } => {
                self.orders.insert(order.id.clone(), order);
            }
            Write::PutPayment(p) => {
                self.payments.insert(p.id.clone(), p);
            }
            Write::PutUser(u) => {
                self.users.insert(u.username.clone(), u);
            }
            Write::PutIdempotency { key, record } => {
                if self.idempotency.len() >= 10_000 {
                    let cutoff = Utc::now() - IDEMPOTENCY_TTL;
                    self.idempotency.retain(|_, r| r.created_at > cutoff);
                }
                self.idempotency.insert(key, record);
            }
        }
    }
}

#[async_trait]
impl EventLog for MemoryStore {
    async fn head(&self) -> Result<ResumeToken> {
        Ok(self.read().log.head())
    }

    async fn read(
        &self,
        since: Option<ResumeToken>,
        limit: usize,
        filter: &EventFilter,
    ) -> Result<EventBatch> {
        self.read().log.read(since, limit, filter)
    }

    async fn subscribe(
        &self,
        since: Option<ResumeToken>,
        filter: EventFilter,
    ) -> Result<Subscription> {
        // Under the lock that commits take: the replay and the live receiver meet at
        // the head, with nothing published in between.
        let state = self.read();
        let start = state.log.start_index(since)?;
        let replay = |_until| {
            replay_from(
                state
                    .log
                    .events
                    .iter()
                    .skip(start)
                    .filter(|e| filter.matches(e))
                    .cloned()
                    .collect(),
            )
        };
        Ok(self.fanout.subscribe(since, filter.clone(), replay))
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn pet(&self, id: &PetId) -> Result<Option<Pet>> {
        Ok(self.read().pets.get(id).cloned())
    }

    async fn pets(
        &self,
        query: &PetQuery,
        after: Option<&PetId>,
        limit: usize,
    ) -> Result<Snapshot<Vec<Pet>>> {
        let state = self.read();
        Ok(Snapshot {
            items: page(&state.pets, after, limit, |p| query.matches(p)),
            position: state.log.head(),
        })
    }

    async fn order(&self, id: &OrderId) -> Result<Option<Order>> {
        Ok(self.read().orders.get(id).cloned())
    }

    async fn orders(
        &self,
        query: &OrderQuery,
        after: Option<&OrderId>,
        limit: usize,
    ) -> Result<Snapshot<Vec<Order>>> {
        let state = self.read();
        Ok(Snapshot {
            items: page(&state.orders, after, limit, |o| query.matches(o)),
            position: state.log.head(),
        })
    }

    async fn payment(&self, id: &PaymentId) -> Result<Option<Payment>> {
        Ok(self.read().payments.get(id).cloned())
    }

    async fn user(&self, username: &str) -> Result<Option<User>> {
        Ok(self.read().users.get(username).cloned())
    }

    async fn idempotency(&self, key: &str) -> Result<Option<IdempotencyRecord>> {
        Ok(self.read().idempotency.get(key).cloned())
    }

    async fn inventory(&self) -> Result<Snapshot<Inventory>> {
        let state = self.read();
        Ok(Snapshot {
            items: state.inventory,
            position: state.log.head(),
        })
    }

    async fn commit(&self, mut change: Change, source: &str) -> Result<Vec<Arc<Event>>> {
        let now = Utc::now();
        let source: Arc<str> = source.into();
        let events = std::mem::take(&mut change.events);
        let mut evicted = Vec::new();
        let appended: Vec<Arc<Event>> = {
            let mut state = self.write();
            state.validate(&change)?;
            for write in change.writes {
                state.apply(write);
            }
            let log = &mut state.log;
            let appended: Vec<Arc<Event>> = events
                .into_iter()
                .map(|new| {
                    log.head += 1;
                    let event = Arc::new(
                        crate::backend::EventParts {
                            id: crate::id::EventId::generate(),
                            source: source.clone(),
                            time: now,
                            offset: ResumeToken::new(log.epoch, log.head),
                            data: new.data,
                            traceparent: new.traceparent,
                        }
                        .build(),
                    );
                    log.events.push_back(event.clone());
                    event
                })
                .collect();
            while log.events.len() > log.retention {
                evicted.extend(log.events.pop_front());
            }
            // Published under the lock, so subscribers see commits in offset order.
            for event in &appended {
                self.fanout.publish(event.clone());
            }
            appended
        };
        // Freeing an evicted event's payload is not free: not under the lock.
        drop(evicted);
        Ok(appended)
    }

    async fn acquire_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        let now = Instant::now();
        let mut state = self.write();
        match state.leases.get(name) {
            Some((owner, until)) if owner != holder && *until > now => Ok(false),
            _ => {
                state
                    .leases
                    .insert(name.to_owned(), (holder.to_owned(), now + ttl));
                Ok(true)
            }
        }
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        let mut state = self.write();
        if state
            .leases
            .get(name)
            .is_some_and(|(owner, _)| owner == holder)
        {
            state.leases.remove(name);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EventData;

    /// Commits one new pet and its event.
    async fn commit_pet(store: &MemoryStore) -> Arc<Event> {
        let pet = crate::seed::sample_pets().remove(0).into_pet(Utc::now());
        let change = Change::new()
            .write(Write::PutPet {
                pet: pet.clone(),
                expect: Expect::Absent,
            })
            .event(EventData::PetCreated(pet));
        store.commit(change, "/test").await.unwrap().remove(0)
    }

    /// An event that happened exactly at `time` is not after it (the provided
    /// `EventLog::position_at`).
    #[tokio::test]
    async fn position_at_a_time_excludes_the_events_at_that_time() {
        let store = MemoryStore::default();
        let event = commit_pet(&store).await;
        let at = event.time();
        assert_eq!(store.position_at(at).await.unwrap(), event.offset());
        let just_before = at - chrono::TimeDelta::nanoseconds(1);
        assert_eq!(store.position_at(just_before).await.unwrap().offset, 0);
    }

    /// A read from the start that examines nothing (limit 0) is positioned just
    /// before the oldest retained event, so the next read starts with it.
    #[tokio::test]
    async fn an_empty_read_from_the_start_stops_before_the_oldest_retained_event() {
        let store = MemoryStore::new(LogConfig::default().retention(2));
        for _ in 0..5 {
            commit_pet(&store).await;
        }
        let all = EventFilter::all();
        let batch = EventLog::read(&store, None, 0, &all).await.unwrap();
        assert!(batch.events.is_empty());
        assert_eq!(batch.next.offset, 3);
        let rest = EventLog::read(&store, Some(batch.next), 10, &all)
            .await
            .unwrap();
        let offsets: Vec<u64> = rest.events.iter().map(|e| e.offset().offset).collect();
        assert_eq!(offsets, [4, 5]);
    }

    /// A full idempotency table drops only the records older than the time to live:
    /// the fresh ones stay.
    #[test]
    fn a_full_idempotency_table_drops_only_expired_records() {
        let store = MemoryStore::default();
        let mut state = store.write();
        let record = |age: chrono::TimeDelta| IdempotencyRecord {
            fingerprint: "f".into(),
            resource: "ord_x".into(),
            created_at: Utc::now() - age,
        };
        let put = |key: String, record| Write::PutIdempotency { key, record };
        state.apply(put("old".into(), record(IDEMPOTENCY_TTL * 2)));
        for i in 1..10_000 {
            state.apply(put(format!("k{i}"), record(chrono::TimeDelta::zero())));
        }
        assert_eq!(state.idempotency.len(), 10_000);
        state.apply(put("new".into(), record(chrono::TimeDelta::zero())));
        assert_eq!(state.idempotency.len(), 10_000, "only the old record went");
        assert!(!state.idempotency.contains_key("old"));
        assert!(state.idempotency.contains_key("k1") && state.idempotency.contains_key("new"));
    }
}
