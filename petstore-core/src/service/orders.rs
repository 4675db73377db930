//! Orders: placing, reading, and moving an order (and its pet) through the state
//! machine. An order belongs to its customer: only they and admins may see or act on
//! it, and anyone else is told it does not exist.

use chrono::Utc;

use super::page::{Page, paginate};
use super::{PetStore, Placed};
use crate::auth::{Principal, Scope};
use crate::backend::{Change, Expect, IdempotencyRecord, Write};
use crate::error::{Error, ErrorKind, Result};
use crate::event::EventData;
use crate::id::OrderId;
use crate::order::{IdempotencyKey, NewOrder, Order, OrderQuery, OrderStatus};
use crate::pet::{Pet, PetStatus};

impl PetStore {
    /// Places an order for the caller; the pet must be `available` and becomes
    /// `pending`. With an idempotency key, a retry of the same request returns the
    /// first order.
    #[tracing::instrument(level = "info", name = "place_order", skip_all, fields(sub = who.subject()))]
    pub async fn place_order(
        &self,
        who: &Principal,
        new: NewOrder,
        idempotency_key: Option<&str>,
    ) -> Result<Placed> {
        who.require(Scope::OrdersWrite)?;
        new.validate()?;
        let customer = who.subject().unwrap_or_default().to_owned();
        let key = match idempotency_key {
            Some(k) => Some(format!(
                "order:{customer}:{}",
                IdempotencyKey::new(k)?.as_str()
            )),
            None => None,
        };
        let fingerprint = format!("{}:{}", new.pet_id, new.quantity);
        self.retrying(|| async {
            // The pet before the key: a concurrent request with the same key that
            // commits in between has then either not touched the pet yet (this attempt
            // then fails its version check and retries) or written its key too.
            let pet = self
                .store()
                .pet(&new.pet_id)
                .await?
                .ok_or_else(|| Error::not_found("pet", &new.pet_id))?;
            if let Some(key) = &key
                && let Some(rec) = self.store().idempotency(key).await?
            {
                if rec.fingerprint != fingerprint {
                    return Err(Error::invalid_field(
                        "idempotency_key",
                        "was already used with a different request",
                    ));
                }
                let id: OrderId = rec.resource.parse()?;
                let order = self.store().order(&id).await?;
                let order = order.ok_or_else(|| Error::not_found("order", &id))?;
                return Ok(Placed {
                    order,
                    replayed: true,
                });
            }
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
                .event(EventData::OrderCreated(order.clone()))
                .event(EventData::PetStatusChanged {
                    pet: held,
                    previous_status: pet.status,
                });
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

    /// One order: the caller's own, or any for an admin.
    #[tracing::instrument(level = "debug", name = "order", skip_all, fields(sub = who.subject(), id = %id))]
    pub async fn order(&self, who: &Principal, id: &OrderId) -> Result<Order> {
        self.authorize_read(who, Scope::OrdersRead)?;
        self.visible_order(who, id).await
    }

    /// The order `id` if `who` may see it; `NotFound` when it does not exist or
    /// belongs to someone else (its existence is not revealed).
    pub(super) async fn visible_order(&self, who: &Principal, id: &OrderId) -> Result<Order> {
        match self.store().order(id).await? {
            Some(order) if Self::may_see(who, &order) => Ok(order),
            _ => Err(Error::not_found("order", id)),
        }
    }

    /// Lists orders (a caller who is not an admin sees only their own); pages follow
    /// `next_cursor`.
    #[tracing::instrument(level = "debug", name = "orders", skip_all, fields(sub = who.subject()))]
    pub async fn orders(&self, who: &Principal, query: &OrderQuery) -> Result<Page<Order>> {
        self.authorize_read(who, Scope::OrdersRead)?;
        let mut query = query.clone();
        if !who.has(Scope::Admin) {
            query.customer = who.subject().map(str::to_owned);
        }
        let query = &query;
        paginate(
            query.limit,
            query.cursor.as_deref(),
            |after: Option<OrderId>, n| async move {
                self.store().orders(query, after.as_ref(), n).await
            },
        )
        .await
    }

    /// Cancels a `placed` or `approved` order of the caller's (any, for an admin);
    /// the pet becomes `available`.
    #[tracing::instrument(level = "info", name = "cancel_order", skip_all, fields(sub = who.subject(), id = %id))]
    pub async fn cancel_order(&self, who: &Principal, id: &OrderId) -> Result<Order> {
        who.require(Scope::OrdersWrite)?;
        self.retrying(|| async {
            self.visible_order(who, id).await?;
            self.transition_once(id, OrderStatus::Cancelled, |_, c| c)
                .await
        })
        .await
    }

    /// Delivers an `approved` order (admin); the pet becomes `sold`.
    #[tracing::instrument(level = "info", name = "deliver_order", skip_all, fields(sub = who.subject(), id = %id))]
    pub async fn deliver_order(&self, who: &Principal, id: &OrderId) -> Result<Order> {
        who.require(Scope::Admin)?;
        self.retrying(|| self.transition_once(id, OrderStatus::Delivered, |_, c| c))
            .await
    }

    /// One attempt at moving an order to `next` (and its pet accordingly); `decorate`
    /// adds writes and events that must commit with it.
    pub(super) async fn transition_once(
        &self,
        id: &OrderId,
        next: OrderStatus,
        decorate: impl Fn(&mut Order, Change) -> Change,
    ) -> Result<Order> {
        let current = self
            .store()
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
            .event(EventData::OrderStatusChanged {
                order: order.clone(),
                previous_status: current.status,
            });
        if let Some(pet) = self.store().pet(&order.pet_id).await? {
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
                    .event(EventData::PetStatusChanged {
                        pet: moved,
                        previous_status: pet.status,
                    });
            }
        }
        self.commit(change).await?;
        Ok(order)
    }
}
