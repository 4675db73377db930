//! Typed event payloads: what each event type carries. Adapters map these types, never
//! the JSON; the JSON (`data` of the envelope) is made from them once per event.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::EventType;
use crate::chat::ChatMessage;
use crate::error::{Error, Result};
use crate::id::OrderId;
use crate::order::{Order, OrderStatus, Payment};
use crate::pet::{Pet, PetStatus};

/// The payload of an event: one variant per [`EventType`].
///
/// On the wire (`data` of the envelope) a variant is its resource as JSON, with
/// `previous_status` added to status changes and the order's `customer` added to
/// payment events.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventData {
    /// `pet.created`: the new pet.
    PetCreated(Pet),
    /// `pet.updated`: the pet after a change of its fields.
    PetUpdated(Pet),
    /// `pet.status_changed`: the pet after the change, and its status before.
    PetStatusChanged {
        /// The pet after the change.
        pet: Pet,
        /// Its status before.
        previous_status: PetStatus,
    },
    /// `pet.deleted`: the pet as it was.
    PetDeleted(Pet),
    /// `order.created`: the new order.
    OrderCreated(Order),
    /// `order.status_changed`: the order after the change, and its status before.
    OrderStatusChanged {
        /// The order after the change.
        order: Order,
        /// Its status before.
        previous_status: OrderStatus,
    },
    /// `payment.succeeded`: the payment, and the customer of its order.
    PaymentSucceeded {
        /// The payment.
        payment: Payment,
        /// The customer of the paid order (who may see the event).
        customer: String,
    },
    /// `payment.failed`: the payment, and the customer of its order.
    PaymentFailed {
        /// The payment.
        payment: Payment,
        /// The customer of the order.
        customer: String,
    },
    /// `chat.message`: the message.
    ChatMessage(ChatMessage),
}

impl EventData {
    /// The event type this payload belongs to.
    pub const fn event_type(&self) -> EventType {
        match self {
            EventData::PetCreated(_) => EventType::PetCreated,
            EventData::PetUpdated(_) => EventType::PetUpdated,
            EventData::PetStatusChanged { .. } => EventType::PetStatusChanged,
            EventData::PetDeleted(_) => EventType::PetDeleted,
            EventData::OrderCreated(_) => EventType::OrderCreated,
            EventData::OrderStatusChanged { .. } => EventType::OrderStatusChanged,
            EventData::PaymentSucceeded { .. } => EventType::PaymentSucceeded,
            EventData::PaymentFailed { .. } => EventType::PaymentFailed,
            EventData::ChatMessage(_) => EventType::ChatMessage,
        }
    }

    /// The id of the resource the event is about (`pet_…`, `ord_…`, `pay_…`), or the
    /// chat room: the envelope's `subject`.
    pub fn subject(&self) -> &str {
        match self {
            EventData::ChatMessage(m) => &m.room,
            EventData::PaymentSucceeded { payment, .. }
            | EventData::PaymentFailed { payment, .. } => payment.id.as_str(),
            data => match (data.pet(), data.order()) {
                (Some(pet), _) => pet.id.as_str(),
                (_, Some(order)) => order.id.as_str(),
                _ => "",
            },
        }
    }

    /// The pet, for pet events.
    pub fn pet(&self) -> Option<&Pet> {
        match self {
            EventData::PetCreated(p)
            | EventData::PetUpdated(p)
            | EventData::PetDeleted(p)
            | EventData::PetStatusChanged { pet: p, .. } => Some(p),
            _ => None,
        }
    }

    /// The order, for order events.
    pub fn order(&self) -> Option<&Order> {
        match self {
            EventData::OrderCreated(o) | EventData::OrderStatusChanged { order: o, .. } => Some(o),
            _ => None,
        }
    }

    /// The payment, for payment events.
    pub fn payment(&self) -> Option<&Payment> {
        match self {
            EventData::PaymentSucceeded { payment, .. }
            | EventData::PaymentFailed { payment, .. } => Some(payment),
            _ => None,
        }
    }

    /// The order an order or payment event is about.
    pub fn order_id(&self) -> Option<&OrderId> {
        self.order()
            .map(|o| &o.id)
            .or_else(|| self.payment().map(|p| &p.order_id))
    }

    /// The customer an order or payment event belongs to: only they and admins may
    /// see it. `None` for events everyone who may read their channel sees.
    pub fn customer(&self) -> Option<&str> {
        match self {
            EventData::OrderCreated(o) | EventData::OrderStatusChanged { order: o, .. } => {
                Some(&o.customer)
            }
            EventData::PaymentSucceeded { customer, .. }
            | EventData::PaymentFailed { customer, .. } => Some(customer),
            _ => None,
        }
    }

    /// The status before a status change.
    pub fn previous_status(&self) -> Option<&'static str> {
        match self {
            EventData::PetStatusChanged {
                previous_status, ..
            } => Some(previous_status.as_str()),
            EventData::OrderStatusChanged {
                previous_status, ..
            } => Some(previous_status.as_str()),
            _ => None,
        }
    }

    /// Reads a payload of `event_type` from its JSON (the envelope's `data`), as a
    /// backend that stored it does.
    pub fn from_json(event_type: EventType, json: &str) -> Result<Self> {
        fn parse<'a, T: Deserialize<'a>>(json: &'a str) -> Result<T> {
            serde_json::from_str(json).map_err(|e| {
                Error::invalid_field("data", format!("not a payload of this event type: {e}"))
            })
        }
        Ok(match event_type {
            EventType::PetCreated => EventData::PetCreated(parse(json)?),
            EventType::PetUpdated => EventData::PetUpdated(parse(json)?),
            EventType::PetDeleted => EventData::PetDeleted(parse(json)?),
            EventType::PetStatusChanged => {
                let w: WithPrevious<Pet, PetStatus> = parse(json)?;
                EventData::PetStatusChanged {
                    pet: w.item,
                    previous_status: w.previous_status,
                }
            }
            EventType::OrderCreated => EventData::OrderCreated(parse(json)?),
            EventType::OrderStatusChanged => {
                let w: WithPrevious<Order, OrderStatus> = parse(json)?;
                EventData::OrderStatusChanged {
                    order: w.item,
                    previous_status: w.previous_status,
                }
            }
            EventType::PaymentSucceeded => {
                let w: WithCustomer<Payment> = parse(json)?;
                EventData::PaymentSucceeded {
                    payment: w.item,
                    customer: w.customer,
                }
            }
            EventType::PaymentFailed => {
                let w: WithCustomer<Payment> = parse(json)?;
                EventData::PaymentFailed {
                    payment: w.item,
                    customer: w.customer,
                }
            }
            EventType::ChatMessage => EventData::ChatMessage(parse(json)?),
        })
    }

    /// The payload as JSON text (the envelope's `data`), as a backend stores it.
    pub fn to_json(&self) -> String {
        // Serialising plain data into a String cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A resource with the status it had before a status change.
#[derive(Serialize, Deserialize, JsonSchema)]
pub(crate) struct WithPrevious<T, S> {
    #[serde(flatten)]
    pub(crate) item: T,
    /// The status before the change.
    pub(crate) previous_status: S,
}

/// A payment with the customer of its order.
#[derive(Serialize, Deserialize, JsonSchema)]
pub(crate) struct WithCustomer<T> {
    #[serde(flatten)]
    pub(crate) item: T,
    /// The customer of the paid order.
    pub(crate) customer: String,
}

impl Serialize for EventData {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Ref<'a, T, P> {
            #[serde(flatten)]
            item: &'a T,
            #[serde(flatten)]
            extra: P,
        }
        #[derive(Serialize)]
        struct Previous<S> {
            previous_status: S,
        }
        #[derive(Serialize)]
        struct Customer<'a> {
            customer: &'a str,
        }
        match self {
            EventData::PetCreated(p) | EventData::PetUpdated(p) | EventData::PetDeleted(p) => {
                p.serialize(s)
            }
            EventData::PetStatusChanged {
                pet,
                previous_status,
            } => Ref {
                item: pet,
                extra: Previous {
                    previous_status: *previous_status,
                },
            }
            .serialize(s),
            EventData::OrderCreated(o) => o.serialize(s),
            EventData::OrderStatusChanged {
                order,
                previous_status,
            } => Ref {
                item: order,
                extra: Previous {
                    previous_status: *previous_status,
                },
            }
            .serialize(s),
            EventData::PaymentSucceeded { payment, customer }
            | EventData::PaymentFailed { payment, customer } => Ref {
                item: payment,
                extra: Customer { customer },
            }
            .serialize(s),
            EventData::ChatMessage(m) => m.serialize(s),
        }
    }
}

/// The JSON Schema of an event's `data`: one of the payload shapes.
#[derive(JsonSchema)]
#[schemars(rename = "EventData")]
#[allow(dead_code)] // Only its schema is used.
#[serde(untagged)]
pub(crate) enum EventDataSchema {
    /// `pet.created`, `pet.updated`, `pet.deleted`.
    Pet(Pet),
    /// `pet.status_changed`.
    PetStatusChanged(WithPrevious<Pet, PetStatus>),
    /// `order.created`.
    Order(Order),
    /// `order.status_changed`.
    OrderStatusChanged(WithPrevious<Order, OrderStatus>),
    /// `payment.succeeded`, `payment.failed`.
    Payment(WithCustomer<Payment>),
    /// `chat.message`.
    ChatMessage(ChatMessage),
}
