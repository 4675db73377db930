//! Orders and payments, with the order state machine.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result, Validator};
use crate::id::{OrderId, PaymentId, PetId};
use crate::money::Money;
use crate::pet::PetStatus;
use crate::rules::{IDEMPOTENCY_KEY, PAYMENT_TOKEN, whole};
use crate::service::MAX_LIMIT;

/// Where an order stands: `placed` -> `approved` (paid) -> `delivered`;
/// `placed`/`approved` -> `cancelled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Placed, awaiting payment; the pet is `pending`.
    Placed,
    /// Paid; the pet is still `pending`.
    Approved,
    /// Handed over; the pet is `sold`.
    Delivered,
    /// Cancelled; the pet is `available` again.
    Cancelled,
}

impl OrderStatus {
    /// Every status.
    pub const ALL: [OrderStatus; 4] = [
        OrderStatus::Placed,
        OrderStatus::Approved,
        OrderStatus::Delivered,
        OrderStatus::Cancelled,
    ];

    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Placed => "placed",
            OrderStatus::Approved => "approved",
            OrderStatus::Delivered => "delivered",
            OrderStatus::Cancelled => "cancelled",
        }
    }

    /// Whether the order still holds its pet.
    pub const fn is_active(self) -> bool {
        matches!(self, OrderStatus::Placed | OrderStatus::Approved)
    }

    /// The state machine: whether `self -> next` is allowed.
    pub const fn can_become(self, next: OrderStatus) -> bool {
        matches!(
            (self, next),
            (OrderStatus::Placed, OrderStatus::Approved)
                | (OrderStatus::Approved, OrderStatus::Delivered)
                | (
                    OrderStatus::Placed | OrderStatus::Approved,
                    OrderStatus::Cancelled
                )
        )
    }

    /// The status the ordered pet takes when the order enters this status.
    pub const fn pet_status(self) -> PetStatus {
        match self {
            OrderStatus::Placed | OrderStatus::Approved => PetStatus::Pending,
            OrderStatus::Delivered => PetStatus::Sold,
            OrderStatus::Cancelled => PetStatus::Available,
        }
    }

    /// `Ok` when `self -> next` is allowed, else a `Conflict` naming both states.
    pub fn transition(self, next: OrderStatus) -> Result<OrderStatus> {
        if self.can_become(next) {
            Ok(next)
        } else {
            Err(Error::new(
                ErrorKind::Conflict,
                format!("an order that is `{self}` cannot become `{next}`"),
            ))
        }
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OrderStatus {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        OrderStatus::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| Error::invalid_field("status", format!("unknown order status `{s}`")))
    }
}

/// An order for a pet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Order {
    /// Identifier (`ord_…`).
    pub id: OrderId,
    /// The ordered pet.
    pub pet_id: PetId,
    /// How many.
    pub quantity: u32,
    /// Price times quantity, fixed when placed.
    pub total: Money,
    /// State.
    pub status: OrderStatus,
    /// Who placed it (token subject).
    pub customer: String,
    /// The successful payment, once paid.
    pub payment_id: Option<PaymentId>,
    /// When it was placed.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// Incremented by every change; the ETag.
    pub version: u64,
}

/// The body of `POST /v1/orders`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOrder {
    /// The pet to order; it must be `available`.
    pub pet_id: PetId,
    /// How many (default 1).
    #[serde(default = "one", deserialize_with = "whole::required")]
    #[schemars(range(min = 1, max = NewOrder::MAX_QUANTITY))]
    pub quantity: u32,
}

fn one() -> u32 {
    1
}

impl NewOrder {
    /// Maximum quantity of one order.
    pub const MAX_QUANTITY: u32 = 10;

    /// An order of one `pet_id`.
    pub fn new(pet_id: PetId) -> Self {
        Self {
            pet_id,
            quantity: 1,
        }
    }

    /// Checks the quantity.
    pub fn validate(&self) -> Result<()> {
        let mut v = Validator::default();
        v.check(
            (1..=Self::MAX_QUANTITY).contains(&self.quantity),
            "quantity",
            format!("must be between 1 and {}", Self::MAX_QUANTITY),
        );
        v.finish()
    }
}

/// A client's key for placing an order at most once (HTTP `Idempotency-Key`, gRPC
/// `idempotency-key` metadata): a retry with the same key and request returns the first
/// order. Keys are scoped per customer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "String", into = "String")]
pub struct IdempotencyKey(
    #[schemars(length(min = IDEMPOTENCY_KEY.min, max = IDEMPOTENCY_KEY.max), pattern(IDEMPOTENCY_KEY.pattern))]
     String,
);

impl IdempotencyKey {
    /// `text` as a key, or `InvalidInput` (field `idempotency_key`) when it breaks the rule.
    pub fn new(text: &str) -> Result<Self> {
        let mut v = Validator::default();
        v.text("idempotency_key", text, &IDEMPOTENCY_KEY);
        v.finish().map(|()| Self(text.to_owned()))
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for IdempotencyKey {
    type Error = Error;

    fn try_from(text: String) -> Result<Self> {
        Self::new(&text)
    }
}

impl From<IdempotencyKey> for String {
    fn from(key: IdempotencyKey) -> String {
        key.0
    }
}

/// Filters for listing orders.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[non_exhaustive]
pub struct OrderQuery {
    /// Only orders with this status.
    pub status: Option<OrderStatus>,
    /// Only orders for this pet.
    pub pet_id: Option<PetId>,
    /// Only orders of this customer (token subject). The service sets it to the
    /// caller for everyone but admins.
    pub customer: Option<String>,
    /// Page size (default 20).
    #[schemars(range(min = 1, max = MAX_LIMIT))]
    pub limit: Option<u32>,
    /// Opaque cursor from a previous page's `next_cursor`.
    #[schemars(pattern(OrderId::CURSOR_PATTERN))]
    pub cursor: Option<String>,
}

impl OrderQuery {
    /// Filters by status.
    pub fn status(mut self, status: OrderStatus) -> Self {
        self.status = Some(status);
        self
    }
    /// Filters by customer.
    pub fn customer(mut self, customer: impl Into<String>) -> Self {
        self.customer = Some(customer.into());
        self
    }
    /// Page size.
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = Some(limit);
        self
    }
    /// Continues after a previous page.
    pub fn cursor(mut self, cursor: impl Into<String>) -> Self {
        self.cursor = Some(cursor.into());
        self
    }

    /// Whether `order` passes the filters.
    pub fn matches(&self, order: &Order) -> bool {
        self.status.is_none_or(|s| order.status == s)
            && self.pet_id.as_ref().is_none_or(|p| &order.pet_id == p)
            && self.customer.as_ref().is_none_or(|c| &order.customer == c)
    }
}

/// Outcome of a payment attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    /// The money moved; the order is approved.
    Succeeded,
    /// Declined; the order stays `placed`.
    Failed,
}

/// A payment attempt for an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Payment {
    /// Identifier (`pay_…`).
    pub id: PaymentId,
    /// The paid order.
    pub order_id: OrderId,
    /// The amount charged.
    pub amount: Money,
    /// The outcome.
    pub status: PaymentStatus,
    /// Why it failed, when it did.
    pub failure_reason: Option<String>,
    /// The processor's reference (fake processor: `fake_…`; webhooks: the provider's id).
    pub reference: String,
    /// When it was attempted.
    pub created_at: DateTime<Utc>,
}

/// The body of `POST /v1/orders/{id}/payment`: a card token for the built-in fake
/// processor. Tokens follow the usual test-card convention: `tok_visa` (and any other
/// token) succeeds, `tok_declined` fails.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentRequest {
    /// A payment-method token of the built-in processor: `tok_visa` succeeds,
    /// `tok_declined` is declined.
    #[serde(default = "default_token")]
    #[schemars(length(min = PAYMENT_TOKEN.min, max = PAYMENT_TOKEN.max), pattern(PAYMENT_TOKEN.pattern))]
    pub token: String,
}

fn default_token() -> String {
    "tok_visa".to_owned()
}

impl Default for PaymentRequest {
    fn default() -> Self {
        Self {
            token: default_token(),
        }
    }
}

impl PaymentRequest {
    /// The token the fake processor always declines.
    pub const DECLINED: &'static str = "tok_declined";

    /// Checks the token's shape.
    pub fn validate(&self) -> Result<()> {
        let mut v = Validator::default();
        v.text("token", &self.token, &PAYMENT_TOKEN);
        v.finish()
    }
}

/// A payment outcome reported by an external payment provider (inbound webhook).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentNotice {
    /// The order paid for.
    pub order_id: OrderId,
    /// Success or failure.
    pub status: PaymentStatus,
    /// The provider's reference for the payment.
    pub reference: String,
    /// Why it failed, when it did.
    #[serde(default)]
    pub failure_reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_print_as_their_wire_names() {
        assert_eq!(OrderStatus::Approved.to_string(), "approved");
        assert_eq!(
            OrderStatus::Cancelled.to_string(),
            OrderStatus::Cancelled.as_str()
        );
    }

    #[test]
    fn statuses_parse_from_their_wire_names() {
        for status in OrderStatus::ALL {
            assert_eq!(status.as_str().parse::<OrderStatus>().unwrap(), status);
        }
        let err = "shipped".parse::<OrderStatus>().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
    }

    /// A key is its text, as a string and on the wire.
    #[test]
    fn an_idempotency_key_is_its_text() {
        let key = IdempotencyKey::new("order-42").unwrap();
        assert_eq!(serde_json::to_value(&key).unwrap(), "order-42");
        assert_eq!(String::from(key), "order-42");
    }

    /// An order that does not say how many is for one.
    #[test]
    fn the_quantity_defaults_to_one() {
        let id = crate::PetId::generate();
        let new: NewOrder = serde_json::from_value(serde_json::json!({ "pet_id": id })).unwrap();
        assert_eq!(new.quantity, 1);
        assert_eq!(NewOrder::new(id).quantity, 1);
    }
    use OrderStatus::*;

    #[test]
    fn state_machine_allows_exactly_the_contract_edges() {
        let allowed = [
            (Placed, Approved),
            (Approved, Delivered),
            (Placed, Cancelled),
            (Approved, Cancelled),
        ];
        for from in OrderStatus::ALL {
            for to in OrderStatus::ALL {
                assert_eq!(
                    from.can_become(to),
                    allowed.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
        }
        assert_eq!(
            Delivered.transition(Cancelled).unwrap_err().kind(),
            ErrorKind::Conflict
        );
    }

    #[test]
    fn quantity_is_bounded() {
        let pet = PetId::generate();
        assert!(
            NewOrder {
                pet_id: pet.clone(),
                quantity: 0
            }
            .validate()
            .is_err()
        );
        assert!(
            NewOrder {
                pet_id: pet.clone(),
                quantity: 11
            }
            .validate()
            .is_err()
        );
        assert!(NewOrder::new(pet).validate().is_ok());
    }
}
