//! The `PetStore` service: every command and query of the contract. Each command
//! checks the caller's scopes, validates, and commits its state change together with
//! its events.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde::{Deserialize, Serialize};

use crate::auth::{AccessToken, Principal, Scope, TokenAuthority};
use crate::chat::{ChatMessage, NewChatMessage};
use crate::error::{Error, ErrorKind, Result};
use crate::event::{Channel, EventFilter, EventType, ResumeToken};
use crate::id::{MessageId, OrderId, PaymentId, PetId};
use crate::log::{EventBatch, EventLogExt, Subscription};
use crate::memory::MemoryStore;
use crate::order::{
    IdempotencyKey, NewOrder, Order, OrderQuery, OrderStatus, Payment, PaymentNotice,
    PaymentRequest, PaymentStatus,
};
use crate::pet::{Inventory, NewPet, Pet, PetPatch, PetQuery, PetStatus};
use crate::store::{Change, Expect, IdempotencyRecord, Snapshot, Store, Write};
use crate::user::{Credentials, User};

/// How many times a command is retried when a concurrent writer got there first.
const COMMIT_ATTEMPTS: usize = 5;
/// Default and maximum page sizes.
const DEFAULT_LIMIT: u32 = 20;
/// Largest page of a listing (the `limit` of `PetQuery` / `OrderQuery`).
pub(crate) const MAX_LIMIT: u32 = 100;
/// Maximum events per read of the log.
pub const MAX_EVENT_READ: usize = 1_000;

/// Service settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct ServiceConfig {
    /// When true, reads need `pets:read` / `orders:read` too (by default they are open).
    pub require_auth_for_reads: bool,
    /// The CloudEvents `source` of every event.
    pub source: String,
    /// Lifetime of tokens issued by `POST /v1/auth/token`.
    pub token_ttl: Duration,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            require_auth_for_reads: false,
            source: "/petstore".to_owned(),
            token_ttl: Duration::from_secs(3600),
        }
    }
}

impl ServiceConfig {
    /// Sets [`ServiceConfig::require_auth_for_reads`].
    pub fn require_auth_for_reads(mut self, yes: bool) -> Self {
        self.require_auth_for_reads = yes;
        self
    }

    /// Sets [`ServiceConfig::source`].
    pub fn source(mut self, source: impl Into<String>) -> Self {
        self.source = source.into();
        self
    }
}

/// A page of a listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Page<T> {
    /// The items.
    pub data: Vec<T>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
    /// The event-log position this page reflects: subscribe from it to catch up.
    #[serde(skip)]
    #[schemars(skip)]
    pub position: Option<ResumeToken>,
}

/// The result of placing an order.
#[derive(Debug, Clone, PartialEq)]
pub struct Placed {
    /// The order.
    pub order: Order,
    /// True when an earlier request with the same idempotency key placed it.
    pub replayed: bool,
}

/// The result of applying a payment provider's notice.
#[derive(Debug, Clone, PartialEq)]
pub struct NoticeOutcome {
    /// The order after the notice.
    pub order: Order,
    /// True when this notice id was applied before (nothing changed this time).
    pub duplicate: bool,
}

/// The Pet Store service over any [`Store`]. Cheap to clone; every adapter holds one.
#[derive(Clone)]
pub struct PetStore {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    auth: TokenAuthority,
    config: ServiceConfig,
}

impl fmt::Debug for PetStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PetStore")
            .field("config", &self.inner.config)
            .field("auth", &self.inner.auth)
            .finish_non_exhaustive()
    }
}

/// The cursor of a page is the id of its last item: ids sort by creation, so any
/// well-formed id (the schema's `cursor` pattern) is a position to continue after.
fn encode_cursor(id: &str) -> String {
    id.to_owned()
}

fn decode_cursor<T: std::str::FromStr>(cursor: &str) -> Result<T> {
    cursor
        .parse()
        .map_err(|_| Error::invalid_field("cursor", "not a cursor returned by this API"))
}

fn page_limit(limit: Option<u32>) -> Result<usize> {
    match limit.unwrap_or(DEFAULT_LIMIT) {
        n @ 1..=MAX_LIMIT => Ok(n as usize),
        _ => Err(Error::invalid_field(
            "limit",
            format!("must be between 1 and {MAX_LIMIT}"),
        )),
    }
}

fn with_previous(value: &impl Serialize, previous: &str) -> serde_json::Value {
    let mut json = serde_json::to_value(value).unwrap_or_default();
    if let Some(obj) = json.as_object_mut() {
        obj.insert("previous_status".to_owned(), previous.into());
    }
    json
}

fn to_json(value: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or_default()
}

impl PetStore {
    /// A service over `store`, issuing and verifying tokens with `auth`.
    pub fn new(store: impl Store, auth: TokenAuthority, config: ServiceConfig) -> Self {
        Self::from_arc(Arc::new(store), auth, config)
    }

    /// Like [`PetStore::new`] for an already shared store.
    pub fn from_arc(store: Arc<dyn Store>, auth: TokenAuthority, config: ServiceConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                auth,
                config,
            }),
        }
    }

    /// An in-memory service with a random token secret and default settings.
    pub fn in_memory() -> Self {
        let config = ServiceConfig::default();
        Self::new(
            MemoryStore::default(),
            TokenAuthority::random(config.token_ttl),
            config,
        )
    }

    /// The settings.
    pub fn config(&self) -> &ServiceConfig {
        &self.inner.config
    }

    /// The backend (read-only use by adapters that follow the log).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The token issuer/verifier.
    pub fn tokens(&self) -> &TokenAuthority {
        &self.inner.auth
    }

    // ----- authentication ---------------------------------------------------------

    /// The principal for an optional bearer token: anonymous without one,
    /// `Unauthenticated` for a bad one.
    pub fn authenticate(&self, bearer_token: Option<&str>) -> Result<Principal> {
        match bearer_token {
            None => Ok(Principal::anonymous()),
            Some(token) => self.inner.auth.verify(token),
        }
    }

    /// The principal for an optional `Authorization` header value (`Bearer <jwt>`).
    pub fn authenticate_header(&self, header: Option<&str>) -> Result<Principal> {
        match header {
            None => Ok(Principal::anonymous()),
            Some(h) => self.inner.auth.verify_bearer(h),
        }
    }

    /// Exchanges a user's name and password for a token carrying the user's scopes.
    pub async fn issue_token(&self, credentials: &Credentials) -> Result<AccessToken> {
        let user = self.inner.store.user(&credentials.username).await?;
        // Verify against a dummy hash when the user is unknown, so timing does not tell
        // which usernames exist.
        let ok = match &user {
            Some(u) => u.verify_password(&credentials.password),
            None => {
                dummy_user().verify_password(&credentials.password);
                false
            }
        };
        match user {
            Some(u) if ok => self.inner.auth.issue(&u.username, u.scopes.iter().copied()),
            _ => Err(Error::new(
                ErrorKind::Unauthenticated,
                "unknown username or wrong password",
            )),
        }
    }

    /// Creates a user (admin only).
    pub async fn create_user(
        &self,
        who: &Principal,
        username: &str,
        password: &str,
        scopes: Vec<Scope>,
    ) -> Result<User> {
        who.require(Scope::Admin)?;
        let user = User::new(username, password, scopes)?;
        match self
            .commit(Change::new().write(Write::PutUser(user.clone())))
            .await
        {
            Err(e) if e.is_stale_write() => Err(Error::new(
                ErrorKind::Conflict,
                format!("user `{username}` exists"),
            )),
            other => other.map(|_| user),
        }
    }

    // ----- authorization ----------------------------------------------------------

    /// Checks a read scope, honouring [`ServiceConfig::require_auth_for_reads`]: while
    /// reads are open, anyone (even anonymous) may read.
    pub fn authorize_read(&self, who: &Principal, scope: Scope) -> Result<()> {
        if scope.is_read() && !self.inner.config.require_auth_for_reads {
            return Ok(());
        }
        who.require(scope)
    }

    /// Checks that `who` may follow `channel`: the channel's read scope, or for chat
    /// any authenticated principal.
    pub fn authorize_channel(&self, who: &Principal, channel: &Channel) -> Result<()> {
        match channel.read_scope() {
            Some(scope) => self.authorize_read(who, scope),
            None if who.is_authenticated() => Ok(()),
            None => Err(Error::new(
                ErrorKind::Unauthenticated,
                format!("channel `{channel}` needs a token"),
            )),
        }
    }

    fn readable_filter(&self, who: &Principal, mut filter: EventFilter) -> Result<EventFilter> {
        if filter.channels.is_empty() {
            // Everything the caller may read.
            let all = [Channel::Pets, Channel::Orders, Channel::Chat];
            filter.channels = all
                .into_iter()
                .filter(|c| self.authorize_channel(who, c).is_ok())
                .collect();
            if filter.channels.is_empty() {
                return Err(who.require(Scope::PetsRead).unwrap_err());
            }
        } else {
            for channel in &filter.channels {
                self.authorize_channel(who, channel)?;
            }
        }
        Ok(filter)
    }

    // ----- commits ----------------------------------------------------------------

    async fn commit(&self, change: Change) -> Result<Vec<Arc<crate::Event>>> {
        self.inner
            .store
            .commit(change, &self.inner.config.source)
            .await
    }

    /// Runs `attempt` until it commits without a concurrent-write conflict.
    async fn retrying<T, F, Fut>(&self, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut tries = 0;
        loop {
            tries += 1;
            match attempt().await {
                Err(e) if e.is_stale_write() && tries < COMMIT_ATTEMPTS => continue,
                other => return other,
            }
        }
    }

    // ----- pets -------------------------------------------------------------------

    /// One pet.
    pub async fn pet(&self, who: &Principal, id: &PetId) -> Result<Pet> {
        self.authorize_read(who, Scope::PetsRead)?;
        self.inner
            .store
            .pet(id)
            .await?
            .ok_or_else(|| Error::not_found("pet", id))
    }

    /// Searches pets; pages follow `next_cursor`.
    pub async fn pets(&self, who: &Principal, query: &PetQuery) -> Result<Page<Pet>> {
        self.authorize_read(who, Scope::PetsRead)?;
        paginate(
            query.limit,
            query.cursor.as_deref(),
            |after: Option<PetId>, n| async move {
                self.inner.store.pets(query, after.as_ref(), n).await
            },
        )
        .await
    }

    /// Adds a pet.
    pub async fn create_pet(&self, who: &Principal, new: NewPet) -> Result<Pet> {
        who.require(Scope::PetsWrite)?;
        new.validate()?;
        let pet = new.into_pet(Utc::now());
        self.commit(
            Change::new()
                .write(Write::PutPet {
                    pet: pet.clone(),
                    expect: Expect::Absent,
                })
                .event(EventType::PetCreated, pet.id.as_str(), to_json(&pet)),
        )
        .await?;
        Ok(pet)
    }

    /// Replaces a pet's fields (`PUT`). `if_match` is the expected version.
    pub async fn replace_pet(
        &self,
        who: &Principal,
        id: &PetId,
        new: NewPet,
        if_match: Option<u64>,
    ) -> Result<Pet> {
        who.require(Scope::PetsWrite)?;
        new.validate()?;
        self.change_pet(id, PetPatch::from(new), if_match).await
    }

    /// Changes some of a pet's fields (`PATCH`, JSON merge patch).
    pub async fn update_pet(
        &self,
        who: &Principal,
        id: &PetId,
        patch: PetPatch,
        if_match: Option<u64>,
    ) -> Result<Pet> {
        who.require(Scope::PetsWrite)?;
        patch.validate()?;
        self.change_pet(id, patch, if_match).await
    }

    /// Sets a pet's status.
    pub async fn set_pet_status(
        &self,
        who: &Principal,
        id: &PetId,
        status: PetStatus,
    ) -> Result<Pet> {
        self.update_pet(
            who,
            id,
            PetPatch {
                status: Some(status),
                ..PetPatch::default()
            },
            None,
        )
        .await
    }

    async fn active_order(&self, pet: &PetId) -> Result<Option<Order>> {
        let query = OrderQuery {
            pet_id: Some(pet.clone()),
            ..OrderQuery::default()
        };
        let mut after = None;
        loop {
            let page = self
                .inner
                .store
                .orders(&query, after.as_ref(), 100)
                .await?
                .items;
            if let Some(o) = page.iter().find(|o| o.status.is_active()) {
                return Ok(Some(o.clone()));
            }
            match page.last() {
                Some(last) if page.len() == 100 => after = Some(last.id.clone()),
                _ => return Ok(None),
            }
        }
    }

    async fn change_pet(&self, id: &PetId, patch: PetPatch, if_match: Option<u64>) -> Result<Pet> {
        self.retrying(|| async {
            let current = self
                .inner
                .store
                .pet(id)
                .await?
                .ok_or_else(|| Error::not_found("pet", id))?;
            check_if_match(if_match, current.version)?;
            let mut next = patch.clone().apply(current.clone());
            if next == current {
                return Ok(current);
            }
            if next.status != current.status
                && next.status != PetStatus::Pending
                && let Some(order) = self.active_order(id).await?
            {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "pet `{id}` is held by order `{}`; cancel or deliver the order instead",
                        order.id
                    ),
                ));
            }
            next.version = current.version + 1;
            next.updated_at = Utc::now();
            let status_changed = next.status != current.status;
            let mut fields_changed = next.clone();
            fields_changed.status = current.status;
            fields_changed.version = current.version;
            fields_changed.updated_at = current.updated_at;
            let mut change = Change::new().write(Write::PutPet {
                pet: next.clone(),
                expect: Expect::Version(current.version),
            });
            if fields_changed != current {
                change = change.event(EventType::PetUpdated, id.as_str(), to_json(&next));
            }
            if status_changed {
                change = change.event(
                    EventType::PetStatusChanged,
                    id.as_str(),
                    with_previous(&next, current.status.as_str()),
                );
            }
            self.commit(change).await?;
            Ok(next)
        })
        .await
    }

    /// Removes a pet. A pet held by an active order cannot be removed.
    pub async fn delete_pet(
        &self,
        who: &Principal,
        id: &PetId,
        if_match: Option<u64>,
    ) -> Result<()> {
        who.require(Scope::PetsWrite)?;
        self.retrying(|| async {
            let current = self
                .inner
                .store
                .pet(id)
                .await?
                .ok_or_else(|| Error::not_found("pet", id))?;
            check_if_match(if_match, current.version)?;
            if let Some(order) = self.active_order(id).await? {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!("pet `{id}` is held by order `{}`", order.id),
                ));
            }
            self.commit(
                Change::new()
                    .write(Write::DeletePet {
                        id: id.clone(),
                        version: current.version,
                    })
                    .event(EventType::PetDeleted, id.as_str(), to_json(&current)),
            )
            .await?;
            Ok(())
        })
        .await
    }

    /// Pet counts per status.
    pub async fn inventory(&self, who: &Principal) -> Result<Snapshot<Inventory>> {
        self.authorize_read(who, Scope::PetsRead)?;
        self.inner.store.inventory().await
    }

    // ----- orders -----------------------------------------------------------------

    /// Places an order; the pet must be `available` and becomes `pending`. With an
    /// idempotency key, a retry of the same request returns the first order.
    pub async fn place_order(
        &self,
        who: &Principal,
        new: NewOrder,
        idempotency_key: Option<&str>,
    ) -> Result<Placed> {
        who.require(Scope::OrdersWrite)?;
        new.validate()?;
        let customer = who.subject().unwrap_or("anonymous").to_owned();
        let key = match idempotency_key {
            Some(k) => Some(format!(
                "order:{customer}:{}",
                IdempotencyKey::new(k)?.as_str()
            )),
            None => None,
        };
        let fingerprint = format!("{}:{}", new.pet_id, new.quantity);
        self.retrying(|| async {
            if let Some(key) = &key
                && let Some(rec) = self.inner.store.idempotency(key).await?
            {
                if rec.fingerprint != fingerprint {
                    return Err(Error::invalid_field(
                        "idempotency_key",
                        "was already used with a different request",
                    ));
                }
                let id: OrderId = rec.resource.parse()?;
                let order = self.inner.store.order(&id).await?;
                let order = order.ok_or_else(|| Error::not_found("order", &id))?;
                return Ok(Placed {
                    order,
                    replayed: true,
                });
            }
            let pet = self
                .inner
                .store
                .pet(&new.pet_id)
                .await?
                .ok_or_else(|| Error::not_found("pet", &new.pet_id))?;
            if pet.status != PetStatus::Available {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!("pet `{}` is {}, not available", pet.id, pet.status),
                ));
            }
            let now = Utc::now();
            let order = Order {
                id: OrderId::generate(),
                pet_id: pet.id.clone(),
                quantity: new.quantity,
                total: pet.price.times(new.quantity),
                status: OrderStatus::Placed,
                customer: customer.clone(),
                payment_id: None,
                created_at: now,
                updated_at: now,
                version: 1,
            };
            let held = Pet {
                status: PetStatus::Pending,
                version: pet.version + 1,
                updated_at: now,
                ..pet.clone()
            };
            let mut change = Change::new()
                .write(Write::PutOrder {
                    order: order.clone(),
                    expect: Expect::Absent,
                })
                .write(Write::PutPet {
                    pet: held.clone(),
                    expect: Expect::Version(pet.version),
                })
                .event(EventType::OrderCreated, order.id.as_str(), to_json(&order))
                .event(
                    EventType::PetStatusChanged,
                    held.id.as_str(),
                    with_previous(&held, pet.status.as_str()),
                );
            if let Some(key) = &key {
                change = change.write(Write::PutIdempotency {
                    key: key.clone(),
                    record: IdempotencyRecord {
                        fingerprint: fingerprint.clone(),
                        resource: order.id.to_string(),
                        created_at: now,
                    },
                });
            }
            self.commit(change).await?;
            Ok(Placed {
                order,
                replayed: false,
            })
        })
        .await
    }

    /// One order.
    pub async fn order(&self, who: &Principal, id: &OrderId) -> Result<Order> {
        self.authorize_read(who, Scope::OrdersRead)?;
        self.inner
            .store
            .order(id)
            .await?
            .ok_or_else(|| Error::not_found("order", id))
    }

    /// Lists orders; pages follow `next_cursor`.
    pub async fn orders(&self, who: &Principal, query: &OrderQuery) -> Result<Page<Order>> {
        self.authorize_read(who, Scope::OrdersRead)?;
        paginate(
            query.limit,
            query.cursor.as_deref(),
            |after: Option<OrderId>, n| async move {
                self.inner.store.orders(query, after.as_ref(), n).await
            },
        )
        .await
    }

    /// One payment.
    pub async fn payment(&self, who: &Principal, id: &PaymentId) -> Result<Payment> {
        self.authorize_read(who, Scope::OrdersRead)?;
        self.inner
            .store
            .payment(id)
            .await?
            .ok_or_else(|| Error::not_found("payment", id))
    }

    /// Moves an order to `next` and its pet accordingly, retrying on concurrent writes.
    async fn transition(&self, id: &OrderId, next: OrderStatus) -> Result<Order> {
        self.retrying(|| self.transition_once(id, next, |_, c| c))
            .await
    }

    /// One attempt at moving an order to `next` (and its pet accordingly); `decorate`
    /// adds writes and events that must commit with it.
    async fn transition_once(
        &self,
        id: &OrderId,
        next: OrderStatus,
        decorate: impl Fn(&mut Order, Change) -> Change,
    ) -> Result<Order> {
        {
            let current = self
                .inner
                .store
                .order(id)
                .await?
                .ok_or_else(|| Error::not_found("order", id))?;
            current.status.transition(next)?;
            let now = Utc::now();
            let mut order = Order {
                status: next,
                version: current.version + 1,
                updated_at: now,
                ..current.clone()
            };
            let mut change = decorate(&mut order, Change::new());
            change = change
                .write(Write::PutOrder {
                    order: order.clone(),
                    expect: Expect::Version(current.version),
                })
                .event(
                    EventType::OrderStatusChanged,
                    id.as_str(),
                    with_previous(&order, current.status.as_str()),
                );
            if let Some(pet) = self.inner.store.pet(&order.pet_id).await? {
                let status = next.pet_status();
                if pet.status != status {
                    let moved = Pet {
                        status,
                        version: pet.version + 1,
                        updated_at: now,
                        ..pet.clone()
                    };
                    change = change
                        .write(Write::PutPet {
                            pet: moved.clone(),
                            expect: Expect::Version(pet.version),
                        })
                        .event(
                            EventType::PetStatusChanged,
                            moved.id.as_str(),
                            with_previous(&moved, pet.status.as_str()),
                        );
                }
            }
            self.commit(change).await?;
            Ok(order)
        }
    }

    /// Cancels a `placed` or `approved` order; the pet becomes `available`.
    pub async fn cancel_order(&self, who: &Principal, id: &OrderId) -> Result<Order> {
        who.require(Scope::OrdersWrite)?;
        self.transition(id, OrderStatus::Cancelled).await
    }

    /// Delivers an `approved` order (admin); the pet becomes `sold`.
    pub async fn deliver_order(&self, who: &Principal, id: &OrderId) -> Result<Order> {
        who.require(Scope::Admin)?;
        self.transition(id, OrderStatus::Delivered).await
    }

    /// Pays a `placed` order with the built-in fake processor. A declined payment is
    /// recorded (`payment.failed`) and the order stays `placed`.
    pub async fn pay_order(
        &self,
        who: &Principal,
        id: &OrderId,
        request: PaymentRequest,
    ) -> Result<Payment> {
        who.require(Scope::OrdersWrite)?;
        request.validate()?;
        let declined = request.token == PaymentRequest::DECLINED;
        let reference = format!("fake_{}", uuid::Uuid::new_v4().simple());
        let notice = PaymentNotice {
            order_id: id.clone(),
            status: if declined {
                PaymentStatus::Failed
            } else {
                PaymentStatus::Succeeded
            },
            reference,
            failure_reason: declined.then(|| "card declined".to_owned()),
        };
        self.retrying(|| self.record_payment(&notice, None))
            .await
            .map(|(payment, _)| payment)
    }

    /// One attempt at recording a payment; `remember` (an idempotency write) commits
    /// with it.
    async fn record_payment(
        &self,
        notice: &PaymentNotice,
        remember: Option<Write>,
    ) -> Result<(Payment, Order)> {
        let id = &notice.order_id;
        let current = self
            .inner
            .store
            .order(id)
            .await?
            .ok_or_else(|| Error::not_found("order", id))?;
        if current.status != OrderStatus::Placed {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "order `{id}` is {}; only a placed order can be paid",
                    current.status
                ),
            ));
        }
        let payment = Payment {
            id: PaymentId::generate(),
            order_id: id.clone(),
            amount: current.total,
            status: notice.status,
            failure_reason: notice.failure_reason.clone(),
            reference: notice.reference.clone(),
            created_at: Utc::now(),
        };
        match notice.status {
            PaymentStatus::Succeeded => {
                let p = payment.clone();
                let order = self
                    .transition_once(id, OrderStatus::Approved, move |order, mut change| {
                        order.payment_id = Some(p.id.clone());
                        if let Some(w) = remember.clone() {
                            change = change.write(w);
                        }
                        change.write(Write::PutPayment(p.clone())).event(
                            EventType::PaymentSucceeded,
                            p.id.as_str(),
                            to_json(&p),
                        )
                    })
                    .await?;
                Ok((payment, order))
            }
            PaymentStatus::Failed => {
                let mut change = Change::new();
                if let Some(w) = remember {
                    change = change.write(w);
                }
                self.commit(
                    change
                        .write(Write::PutPayment(payment.clone()))
                        .write(Write::PutOrder {
                            order: current.clone(),
                            expect: Expect::Version(current.version),
                        })
                        .event(
                            EventType::PaymentFailed,
                            payment.id.as_str(),
                            to_json(&payment),
                        ),
                )
                .await?;
                Ok((payment, current))
            }
        }
    }

    /// Applies a payment provider's notice (inbound webhook) at most once per
    /// `notice_id`. Needs `orders:write` (the webhook adapter uses its own principal).
    pub async fn apply_payment_notice(
        &self,
        who: &Principal,
        notice_id: &str,
        notice: PaymentNotice,
    ) -> Result<NoticeOutcome> {
        who.require(Scope::OrdersWrite)?;
        if notice_id.is_empty() || notice_id.len() > 255 {
            return Err(Error::invalid_field(
                "webhook-id",
                "must be 1 to 255 characters",
            ));
        }
        let key = format!("payment-notice:{notice_id}");
        self.retrying(|| async {
            if self.inner.store.idempotency(&key).await?.is_some() {
                let order = self.inner.store.order(&notice.order_id).await?;
                let order = order.ok_or_else(|| Error::not_found("order", &notice.order_id))?;
                return Ok(NoticeOutcome {
                    order,
                    duplicate: true,
                });
            }
            let remember = Write::PutIdempotency {
                key: key.clone(),
                record: IdempotencyRecord {
                    fingerprint: notice.reference.clone(),
                    resource: notice.order_id.to_string(),
                    created_at: Utc::now(),
                },
            };
            let (_, order) = self.record_payment(&notice, Some(remember)).await?;
            Ok(NoticeOutcome {
                order,
                duplicate: false,
            })
        })
        .await
    }

    // ----- chat -------------------------------------------------------------------

    /// Posts a chat message (`chat:write`); it lives in the event log.
    pub async fn post_chat(&self, who: &Principal, message: NewChatMessage) -> Result<ChatMessage> {
        who.require(Scope::ChatWrite)?;
        message.validate()?;
        let msg = ChatMessage {
            id: MessageId::generate(),
            room: message.room,
            author: who.subject().unwrap_or_default().to_owned(),
            text: message.text.trim().to_owned(),
            sent_at: Utc::now(),
        };
        self.commit(Change::new().event(EventType::ChatMessage, msg.room.clone(), to_json(&msg)))
            .await?;
        Ok(msg)
    }

    // ----- events -----------------------------------------------------------------

    /// The current log head.
    pub async fn head(&self) -> Result<ResumeToken> {
        self.inner.store.head().await
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
        if limit == 0 || limit > MAX_EVENT_READ {
            return Err(Error::invalid_field(
                "limit",
                format!("must be between 1 and {MAX_EVENT_READ}"),
            ));
        }
        let filter = self.readable_filter(who, filter)?;
        self.inner
            .store
            .read_or_wait(since, limit, &filter, wait.min(Duration::from_secs(60)))
            .await
    }

    /// Follows the log from `since` (live only when `None`), for the channels in
    /// `filter` (everything readable when empty).
    pub async fn subscribe(
        &self,
        who: &Principal,
        since: Option<ResumeToken>,
        filter: EventFilter,
    ) -> Result<Subscription> {
        let filter = self.readable_filter(who, filter)?;
        self.inner.store.subscribe(since, filter).await
    }
}

/// Something listed by id: the cursor of a page is the id of its last item.
trait Keyed {
    type Id: std::str::FromStr;
    fn key(&self) -> &str;
}

impl Keyed for Pet {
    type Id = PetId;
    fn key(&self) -> &str {
        self.id.as_str()
    }
}

impl Keyed for Order {
    type Id = OrderId;
    fn key(&self) -> &str {
        self.id.as_str()
    }
}

/// One page: validates the limit, decodes the cursor, fetches one item more than the
/// limit to learn whether a next page exists.
async fn paginate<T, F, Fut>(limit: Option<u32>, cursor: Option<&str>, fetch: F) -> Result<Page<T>>
where
    T: Keyed,
    F: FnOnce(Option<T::Id>, usize) -> Fut,
    Fut: Future<Output = Result<Snapshot<Vec<T>>>>,
{
    let limit = page_limit(limit)?;
    let after = cursor.map(decode_cursor::<T::Id>).transpose()?;
    let Snapshot {
        mut items,
        position,
    } = fetch(after, limit + 1).await?;
    let next_cursor = (items.len() > limit).then(|| {
        items.truncate(limit);
        encode_cursor(items[limit - 1].key())
    });
    Ok(Page {
        data: items,
        next_cursor,
        position: Some(position),
    })
}

fn check_if_match(if_match: Option<u64>, version: u64) -> Result<()> {
    match if_match {
        Some(v) if v != version => Err(Error::new(
            ErrorKind::PreconditionFailed,
            format!("expected version {v}, the current version is {version}"),
        )),
        _ => Ok(()),
    }
}

fn dummy_user() -> &'static User {
    static DUMMY: std::sync::OnceLock<User> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| User::new("dummy", "dummy-password", []).expect("valid dummy user"))
}
