//! The in-memory backend: the embedded default.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;
use chrono::Utc;

use crate::Error;
use crate::error::Result;
use crate::event::{Event, EventFilter, ResumeToken};
use crate::id::{OrderId, PaymentId, PetId};
use crate::log::{EventBatch, EventLog, LogConfig, MemoryLog, Subscription};
use crate::order::{Order, OrderQuery, Payment};
use crate::pet::{Inventory, Pet, PetQuery};
use crate::store::{Change, Expect, IdempotencyRecord, Snapshot, Store, Write, envelope};
use crate::user::User;

/// Idempotency records are kept this long.
const IDEMPOTENCY_TTL: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// A [`Store`] and [`EventLog`] in process memory. State and log sit behind one lock,
/// so a commit is atomic for every reader and subscriber.
#[derive(Debug)]
pub struct MemoryStore {
    state: RwLock<State>,
}

#[derive(Debug)]
struct State {
    pets: BTreeMap<PetId, Pet>,
    orders: BTreeMap<OrderId, Order>,
    payments: HashMap<PaymentId, Payment>,
    users: HashMap<String, User>,
    idempotency: HashMap<String, IdempotencyRecord>,
    inventory: Inventory,
    log: MemoryLog,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new(LogConfig::default())
    }
}

impl MemoryStore {
    /// An empty store whose log is sized by `config`.
    pub fn new(config: LogConfig) -> Self {
        Self {
            state: RwLock::new(State {
                pets: BTreeMap::new(),
                orders: BTreeMap::new(),
                payments: HashMap::new(),
                users: HashMap::new(),
                idempotency: HashMap::new(),
                inventory: Inventory::default(),
                log: MemoryLog::new(config),
            }),
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
        self.read().log.subscribe(since, filter)
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
        // Built before taking the lock; only the offsets are given under it.
        let events: Vec<Event> = std::mem::take(&mut change.events)
            .into_iter()
            .map(|e| envelope(e, source, now))
            .collect();
        let mut evicted = Vec::new();
        let appended = {
            let mut state = self.write();
            state.validate(&change)?;
            for write in change.writes {
                state.apply(write);
            }
            events
                .into_iter()
                .map(|e| state.log.append(e, &mut evicted))
                .collect()
        };
        drop(evicted);
        Ok(appended)
    }
}
