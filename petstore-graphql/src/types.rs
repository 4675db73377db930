//! GraphQL views of the core domain types, and inputs converted to core types.
//!
//! GraphQL has no unsigned 64-bit integer: versions and counts are `Int` (checked
//! conversion), money amounts are decimal `String`s with a currency, resume tokens are
//! opaque `String`s.

use std::sync::Arc;

use juniper::{GraphQLEnum, GraphQLInputObject, GraphQLObject, ID, Nullable, graphql_object};
use petstore_core::chrono::{DateTime, Utc};
use petstore_core::{
    AccessToken, ChatMessage, Error, ErrorKind, Event, EventData, FieldError, Inventory, Money,
    NewPet, Order, OrderId, OrderStatus, Payment, PaymentId, PaymentStatus, Pet, PetId, PetPatch,
    PetStatus, Principal, ResumeToken,
};

use crate::error::ApiResult;
use crate::schema::Context;

// ----- conversions ------------------------------------------------------------------

/// A count or version as a GraphQL `Int`; values past `i32::MAX` are a server error
/// rather than a silently wrong number.
pub(crate) fn int(n: u64, what: &str) -> ApiResult<i32> {
    i32::try_from(n).map_err(|_| {
        Error::new(
            ErrorKind::Internal,
            format!("{what} {n} does not fit a GraphQL Int"),
        )
        .into()
    })
}

/// A non-negative GraphQL `Int` argument as `u32`.
pub(crate) fn unsigned(n: i32, field: &str) -> Result<u32, Error> {
    u32::try_from(n).map_err(|_| Error::invalid_field(field, "must not be negative"))
}

pub(crate) fn pet_id(id: &str) -> Result<PetId, Error> {
    id.parse()
}

pub(crate) fn order_id(id: &str) -> Result<OrderId, Error> {
    id.parse()
}

pub(crate) fn payment_id(id: &str) -> Result<PaymentId, Error> {
    id.parse()
}

/// Parses an optional resume token argument.
pub(crate) fn resume_token(since: Option<&str>) -> Result<Option<ResumeToken>, Error> {
    since.map(str::parse).transpose()
}

/// `NotFound` becomes `None`, for nullable lookups nested in other objects.
fn found<T>(result: Result<T, Error>) -> ApiResult<Option<T>> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

// ----- enums ------------------------------------------------------------------------

/// Where a pet is in its sale.
#[derive(GraphQLEnum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(name = "PetStatus")]
pub(crate) enum GqlPetStatus {
    /// For sale.
    Available,
    /// Held by an active order.
    Pending,
    /// Delivered to its buyer.
    Sold,
}

impl From<PetStatus> for GqlPetStatus {
    fn from(s: PetStatus) -> Self {
        match s {
            PetStatus::Available => Self::Available,
            PetStatus::Pending => Self::Pending,
            PetStatus::Sold => Self::Sold,
        }
    }
}

impl From<GqlPetStatus> for PetStatus {
    fn from(s: GqlPetStatus) -> Self {
        match s {
            GqlPetStatus::Available => Self::Available,
            GqlPetStatus::Pending => Self::Pending,
            GqlPetStatus::Sold => Self::Sold,
        }
    }
}

/// Where an order is in its life: `PLACED` -> `APPROVED` (paid) -> `DELIVERED`;
/// `PLACED` / `APPROVED` -> `CANCELLED`.
#[derive(GraphQLEnum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(name = "OrderStatus")]
pub(crate) enum GqlOrderStatus {
    /// Placed, awaiting payment; the pet is held.
    Placed,
    /// Paid, awaiting delivery.
    Approved,
    /// Delivered; the pet is sold.
    Delivered,
    /// Cancelled; the pet is available again.
    Cancelled,
}

impl From<OrderStatus> for GqlOrderStatus {
    fn from(s: OrderStatus) -> Self {
        match s {
            OrderStatus::Placed => Self::Placed,
            OrderStatus::Approved => Self::Approved,
            OrderStatus::Delivered => Self::Delivered,
            OrderStatus::Cancelled => Self::Cancelled,
        }
    }
}

impl From<GqlOrderStatus> for OrderStatus {
    fn from(s: GqlOrderStatus) -> Self {
        match s {
            GqlOrderStatus::Placed => Self::Placed,
            GqlOrderStatus::Approved => Self::Approved,
            GqlOrderStatus::Delivered => Self::Delivered,
            GqlOrderStatus::Cancelled => Self::Cancelled,
        }
    }
}

/// The outcome of a payment.
#[derive(GraphQLEnum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(name = "PaymentStatus")]
pub(crate) enum GqlPaymentStatus {
    /// The payment went through; the order is approved.
    Succeeded,
    /// The payment was declined; the order stays placed.
    Failed,
}

impl From<PaymentStatus> for GqlPaymentStatus {
    fn from(s: PaymentStatus) -> Self {
        match s {
            PaymentStatus::Succeeded => Self::Succeeded,
            PaymentStatus::Failed => Self::Failed,
        }
    }
}

// ----- objects ----------------------------------------------------------------------

/// An exact amount of money.
#[derive(GraphQLObject, Debug, Clone)]
#[graphql(name = "Money")]
pub(crate) struct GqlMoney {
    /// Decimal amount as a string (never a float), e.g. `"249.99"`.
    amount: String,
    /// ISO 4217 currency code, e.g. `"USD"`.
    currency: String,
}

impl From<Money> for GqlMoney {
    fn from(m: Money) -> Self {
        Self {
            amount: m.amount.to_string(),
            currency: m.currency.to_string(),
        }
    }
}

/// A pet in the catalogue.
#[derive(Debug, Clone)]
pub(crate) struct GqlPet(pub(crate) Pet);

/// A pet in the catalogue.
#[graphql_object(name = "Pet", context = Context)]
impl GqlPet {
    /// Identifier (`pet_…`).
    fn id(&self) -> ID {
        ID::new(self.0.id.as_str())
    }
    /// Name, 1 to 50 characters.
    fn name(&self) -> &str {
        &self.0.name
    }
    /// Species in lower case, e.g. `dog`.
    fn species(&self) -> &str {
        &self.0.species
    }
    /// Breed, if known.
    fn breed(&self) -> Option<&str> {
        self.0.breed.as_deref()
    }
    /// Age in years, if known.
    fn age(&self) -> ApiResult<Option<i32>> {
        self.0.age.map(|a| int(a.into(), "age")).transpose()
    }
    /// Sale status.
    fn status(&self) -> GqlPetStatus {
        self.0.status.into()
    }
    /// Lower-case tags, sorted.
    fn tags(&self) -> &[String] {
        &self.0.tags
    }
    /// Photo URLs.
    fn photo_urls(&self) -> &[String] {
        &self.0.photo_urls
    }
    /// Price.
    fn price(&self) -> GqlMoney {
        self.0.price.into()
    }
    /// When it was added.
    fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When it last changed.
    fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    /// Version, incremented by every change; pass it as `ifVersion` for optimistic
    /// concurrency.
    fn version(&self) -> ApiResult<i32> {
        int(self.0.version, "version")
    }
}

/// An order for a pet.
#[derive(Debug, Clone)]
pub(crate) struct GqlOrder(pub(crate) Order);

/// An order for a pet.
#[graphql_object(name = "Order", context = Context)]
impl GqlOrder {
    /// Identifier (`ord_…`).
    fn id(&self) -> ID {
        ID::new(self.0.id.as_str())
    }
    /// The ordered pet's id.
    fn pet_id(&self) -> ID {
        ID::new(self.0.pet_id.as_str())
    }
    /// The ordered pet; null if it was removed since.
    async fn pet(&self, ctx: &Context) -> ApiResult<Option<GqlPet>> {
        Ok(found(ctx.service.pet(&ctx.principal, &self.0.pet_id).await)?.map(GqlPet))
    }
    /// Quantity, 1 to 10.
    fn quantity(&self) -> ApiResult<i32> {
        int(self.0.quantity.into(), "quantity")
    }
    /// Price times quantity.
    fn total(&self) -> GqlMoney {
        self.0.total.into()
    }
    /// Status.
    fn status(&self) -> GqlOrderStatus {
        self.0.status.into()
    }
    /// Who placed it (token subject).
    fn customer(&self) -> &str {
        &self.0.customer
    }
    /// The successful payment's id, once paid.
    fn payment_id(&self) -> Option<ID> {
        self.0.payment_id.as_ref().map(|p| ID::new(p.as_str()))
    }
    /// The successful payment, once paid.
    async fn payment(&self, ctx: &Context) -> ApiResult<Option<GqlPayment>> {
        let Some(id) = &self.0.payment_id else {
            return Ok(None);
        };
        Ok(found(ctx.service.payment(&ctx.principal, id).await)?.map(GqlPayment))
    }
    /// When it was placed.
    fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When it last changed.
    fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    /// Version, incremented by every change.
    fn version(&self) -> ApiResult<i32> {
        int(self.0.version, "version")
    }
}

/// A payment attempt for an order.
#[derive(Debug, Clone)]
pub(crate) struct GqlPayment(pub(crate) Payment);

/// A payment attempt for an order.
#[graphql_object(name = "Payment", context = Context)]
impl GqlPayment {
    /// Identifier (`pay_…`).
    fn id(&self) -> ID {
        ID::new(self.0.id.as_str())
    }
    /// The paid order's id.
    fn order_id(&self) -> ID {
        ID::new(self.0.order_id.as_str())
    }
    /// The amount charged.
    fn amount(&self) -> GqlMoney {
        self.0.amount.into()
    }
    /// Outcome.
    fn status(&self) -> GqlPaymentStatus {
        self.0.status.into()
    }
    /// Why it failed, for failed payments.
    fn failure_reason(&self) -> Option<&str> {
        self.0.failure_reason.as_deref()
    }
    /// The payment provider's reference.
    fn reference(&self) -> &str {
        &self.0.reference
    }
    /// When it was made.
    fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// Pagination state of a list.
#[derive(GraphQLObject, Debug, Clone)]
#[graphql(name = "PageInfo")]
pub(crate) struct GqlPageInfo {
    /// Whether another page follows.
    pub(crate) has_next_page: bool,
    /// Pass as `after` to get the next page; null on the last page.
    pub(crate) end_cursor: Option<String>,
}

/// A page of pets.
#[derive(GraphQLObject, Debug, Clone)]
#[graphql(name = "PetConnection", context = Context)]
pub(crate) struct GqlPetConnection {
    /// The pets of this page, in creation order.
    pub(crate) nodes: Vec<GqlPet>,
    /// Where the next page starts.
    pub(crate) page_info: GqlPageInfo,
    /// The event-log position this page reflects: subscribe with `since` set to it to
    /// catch up with every change after the snapshot, then follow live.
    pub(crate) position: Option<String>,
}

/// A page of orders.
#[derive(GraphQLObject, Debug, Clone)]
#[graphql(name = "OrderConnection", context = Context)]
pub(crate) struct GqlOrderConnection {
    /// The orders of this page, in creation order.
    pub(crate) nodes: Vec<GqlOrder>,
    /// Where the next page starts.
    pub(crate) page_info: GqlPageInfo,
    /// The event-log position this page reflects (see `PetConnection.position`).
    pub(crate) position: Option<String>,
}

/// Pet counts per status.
#[derive(GraphQLObject, Debug, Clone)]
#[graphql(name = "Inventory")]
pub(crate) struct GqlInventory {
    /// Pets for sale.
    pub(crate) available: i32,
    /// Pets held by active orders.
    pub(crate) pending: i32,
    /// Pets sold.
    pub(crate) sold: i32,
    /// The event-log position these counts reflect.
    pub(crate) position: String,
}

impl GqlInventory {
    pub(crate) fn new(inv: Inventory, position: ResumeToken) -> ApiResult<Self> {
        Ok(Self {
            available: int(inv.available, "available")?,
            pending: int(inv.pending, "pending")?,
            sold: int(inv.sold, "sold")?,
            position: position.to_string(),
        })
    }
}

/// A domain event: the CloudEvents 1.0 envelope every push pattern carries, plus
/// `offset`, the resume token.
#[derive(Debug, Clone)]
pub(crate) struct GqlEvent(pub(crate) Arc<Event>);

/// A domain event: the CloudEvents 1.0 envelope every push pattern carries, plus
/// `offset`, the resume token.
#[graphql_object(name = "Event", context = Context)]
impl GqlEvent {
    /// Unique id (`evt_…`), the same in every protocol.
    fn id(&self) -> ID {
        ID::new(self.0.id().as_str())
    }
    /// The event type, e.g. `order.created`, `pet.status_changed`.
    #[graphql(name = "type")]
    fn event_type(&self) -> &'static str {
        self.0.event_type().as_str()
    }
    /// The producing service, e.g. `/petstore`.
    fn source(&self) -> &str {
        self.0.source()
    }
    /// When it happened.
    fn time(&self) -> DateTime<Utc> {
        self.0.time()
    }
    /// The id of the resource it is about (`pet_…`, `ord_…`, `pay_…` or a chat room).
    fn subject(&self) -> &str {
        self.0.subject()
    }
    /// The resume token of this event: pass it as `since` to get the events after it.
    fn offset(&self) -> String {
        self.0.offset().to_string()
    }
    /// The payload (the resource after the change) as JSON text.
    fn data(&self) -> String {
        self.0.data().to_json()
    }
    /// CloudEvents spec version, `1.0`.
    fn specversion(&self) -> &str {
        "1.0"
    }
    /// Media type of `data`, `application/json`.
    fn datacontenttype(&self) -> &str {
        "application/json"
    }
}

/// A page of the event log (polling).
#[derive(GraphQLObject, Debug, Clone)]
#[graphql(name = "EventPage", context = Context)]
pub(crate) struct GqlEventPage {
    /// Matching events, oldest first.
    pub(crate) events: Vec<GqlEvent>,
    /// Pass as `since` to continue after the last event examined.
    pub(crate) next: String,
}

/// A change of a pet, from the event log.
#[derive(GraphQLObject, Debug, Clone)]
#[graphql(name = "PetChange", context = Context)]
pub(crate) struct GqlPetChange {
    /// The event (`pet.created`, `pet.updated`, `pet.status_changed`, `pet.deleted`).
    pub(crate) event: GqlEvent,
    /// The pet after the change (as it was, for `pet.deleted`).
    pub(crate) pet: GqlPet,
    /// The status before the change, for `pet.status_changed`.
    pub(crate) previous_status: Option<GqlPetStatus>,
}

/// A change of an order, from the event log.
#[derive(GraphQLObject, Debug, Clone)]
#[graphql(name = "OrderChange", context = Context)]
pub(crate) struct GqlOrderChange {
    /// The event (`order.created`, `order.status_changed`).
    pub(crate) event: GqlEvent,
    /// The order after the change.
    pub(crate) order: GqlOrder,
    /// The status before the change, for `order.status_changed`.
    pub(crate) previous_status: Option<GqlOrderStatus>,
}

/// The error for an event whose payload is not what its filter let through (a bug).
fn unexpected(event: &Event) -> crate::error::ApiError {
    Error::new(
        ErrorKind::Internal,
        format!("unexpected `{}` event in this feed", event.event_type()),
    )
    .into()
}

impl GqlPetChange {
    pub(crate) fn from_event(event: Arc<Event>) -> ApiResult<Self> {
        let pet = event
            .data()
            .pet()
            .cloned()
            .ok_or_else(|| unexpected(&event))?;
        let previous_status = match event.data() {
            EventData::PetStatusChanged {
                previous_status, ..
            } => Some((*previous_status).into()),
            _ => None,
        };
        Ok(Self {
            event: GqlEvent(event),
            pet: GqlPet(pet),
            previous_status,
        })
    }
}

impl GqlOrderChange {
    pub(crate) fn from_event(event: Arc<Event>) -> ApiResult<Self> {
        let order = event
            .data()
            .order()
            .cloned()
            .ok_or_else(|| unexpected(&event))?;
        let previous_status = match event.data() {
            EventData::OrderStatusChanged {
                previous_status, ..
            } => Some((*previous_status).into()),
            _ => None,
        };
        Ok(Self {
            event: GqlEvent(event),
            order: GqlOrder(order),
            previous_status,
        })
    }
}

/// A support chat message.
#[derive(GraphQLObject, Debug, Clone)]
#[graphql(name = "ChatMessage")]
pub(crate) struct GqlChatMessage {
    /// Identifier (`msg_…`).
    id: ID,
    /// The room, e.g. `support`.
    room: String,
    /// The author (token subject).
    author: String,
    /// The text.
    text: String,
    /// When it was posted.
    sent_at: DateTime<Utc>,
}

impl From<ChatMessage> for GqlChatMessage {
    fn from(m: ChatMessage) -> Self {
        Self {
            id: ID::new(m.id.as_str()),
            room: m.room,
            author: m.author,
            text: m.text,
            sent_at: m.sent_at,
        }
    }
}

impl GqlChatMessage {
    pub(crate) fn from_event(event: &Event) -> ApiResult<Self> {
        match event.data() {
            EventData::ChatMessage(m) => Ok(m.clone().into()),
            _ => Err(unexpected(event)),
        }
    }
}

/// A bearer token, shaped like an OAuth 2 token response.
#[derive(GraphQLObject, Debug, Clone)]
#[graphql(name = "AccessToken")]
pub(crate) struct GqlAccessToken {
    /// The JWT: send it as `Authorization: Bearer <token>` or in the WebSocket
    /// `connection_init` payload `{"authorization": "Bearer <token>"}`.
    access_token: String,
    /// Always `Bearer`.
    token_type: String,
    /// Lifetime in seconds.
    expires_in: i32,
    /// The granted scopes, space separated.
    scope: String,
}

impl GqlAccessToken {
    pub(crate) fn new(t: AccessToken) -> ApiResult<Self> {
        Ok(Self {
            expires_in: int(t.expires_in, "expires_in")?,
            access_token: t.access_token,
            token_type: t.token_type,
            scope: t.scope,
        })
    }
}

/// Who is calling.
#[derive(GraphQLObject, Debug, Clone)]
#[graphql(name = "Viewer")]
pub(crate) struct GqlViewer {
    /// Whether the caller presented a valid token.
    authenticated: bool,
    /// The token subject; null when anonymous.
    subject: Option<String>,
    /// The granted scopes, e.g. `pets:write`.
    scopes: Vec<String>,
}

impl From<&Principal> for GqlViewer {
    fn from(p: &Principal) -> Self {
        Self {
            authenticated: p.is_authenticated(),
            subject: p.subject().map(str::to_owned),
            scopes: p.scopes().map(|s| s.as_str().to_owned()).collect(),
        }
    }
}

/// The result of `placeOrder`.
#[derive(GraphQLObject, Debug, Clone)]
#[graphql(name = "PlaceOrderResult", context = Context)]
pub(crate) struct GqlPlaceOrderResult {
    /// The order.
    pub(crate) order: GqlOrder,
    /// True when an earlier request with the same `idempotencyKey` placed it.
    pub(crate) replayed: bool,
}

// ----- inputs -----------------------------------------------------------------------

/// An exact amount of money.
#[derive(GraphQLInputObject, Debug, Clone)]
#[graphql(name = "MoneyInput")]
pub(crate) struct GqlMoneyInput {
    /// Decimal amount as a string: digits with at most 2 fraction digits, no sign or
    /// exponent, e.g. `"249.99"`. A price is at most `"10000000.00"`.
    amount: String,
    /// ISO 4217 currency code, three upper-case letters, e.g. `"USD"`.
    currency: String,
}

impl GqlMoneyInput {
    fn to_money(&self, field: &str, errors: &mut Vec<FieldError>) -> Option<Money> {
        match Money::from_text(field, &self.amount, &self.currency) {
            Ok(money) => Some(money),
            Err(wrong) => {
                errors.extend(wrong);
                None
            }
        }
    }
}

/// A new pet.
#[derive(GraphQLInputObject, Debug, Clone)]
#[graphql(name = "NewPetInput")]
pub(crate) struct GqlNewPetInput {
    /// Name: 1 to 50 characters, one line with a visible character (trimmed).
    name: String,
    /// Species, e.g. `dog`: 1 to 30 letters, spaces and hyphens, at least one letter.
    species: String,
    /// Breed: 1 to 50 characters, one line with a visible character.
    breed: Option<String>,
    /// Age in whole years, 0 to 100.
    age: Option<i32>,
    /// Initial status (default `AVAILABLE`).
    status: Option<GqlPetStatus>,
    /// Tags: at most 20, each 1 to 30 characters, one line with a visible character.
    tags: Option<Vec<String>>,
    /// Photo URLs: at most 10, each an http(s) URL of 1 to 2048 characters without spaces.
    photo_urls: Option<Vec<String>>,
    /// Price, at most 10000000.00.
    price: GqlMoneyInput,
}

fn age(age: i32, errors: &mut Vec<FieldError>) -> Option<u32> {
    let converted = unsigned(age, "age");
    if converted.is_err() {
        errors.push(FieldError::new("age", "must not be negative"));
    }
    converted.ok()
}

fn finish<T>(value: Option<T>, errors: Vec<FieldError>) -> Result<T, Error> {
    match value {
        Some(v) if errors.is_empty() => Ok(v),
        _ if errors.is_empty() => Err(Error::new(ErrorKind::Internal, "input conversion failed")),
        _ => Err(Error::invalid(errors)),
    }
}

impl TryFrom<GqlNewPetInput> for NewPet {
    type Error = Error;

    fn try_from(input: GqlNewPetInput) -> Result<Self, Error> {
        let mut errors = Vec::new();
        let price = input.price.to_money("price", &mut errors);
        let age = match input.age {
            Some(a) => age(a, &mut errors).map(Some),
            None => Some(None),
        };
        let pet = (|| {
            Some(NewPet {
                name: input.name,
                species: input.species,
                breed: input.breed,
                age: age?,
                status: input.status.map(Into::into),
                tags: input.tags.unwrap_or_default(),
                photo_urls: input.photo_urls.unwrap_or_default(),
                price: price?,
            })
        })();
        finish(pet, errors)
    }
}

/// Changes to a pet: absent fields stay as they are; `breed` and `age` may be set to
/// null to clear them.
#[derive(GraphQLInputObject, Debug, Clone, Default)]
#[graphql(name = "PetPatchInput")]
pub(crate) struct GqlPetPatchInput {
    /// New name: 1 to 50 characters, one line with a visible character (trimmed).
    name: Option<String>,
    /// New species: 1 to 30 letters, spaces and hyphens, at least one letter.
    species: Option<String>,
    /// New breed, 1 to 50 characters, one line with a visible character; null clears it.
    breed: Nullable<String>,
    /// New age in whole years, 0 to 100; null clears it.
    age: Nullable<i32>,
    /// New status.
    status: Option<GqlPetStatus>,
    /// New tags, replacing the old ones: at most 20, each 1 to 30 characters, one line
    /// with a visible character.
    tags: Option<Vec<String>>,
    /// New photo URLs, replacing the old ones: at most 10, each an http(s) URL of 1 to
    /// 2048 characters without spaces.
    photo_urls: Option<Vec<String>>,
    /// New price, at most 10000000.00.
    price: Option<GqlMoneyInput>,
}

fn nullable<T>(v: Nullable<T>) -> Option<Option<T>> {
    match v {
        Nullable::ImplicitNull => None,
        Nullable::ExplicitNull => Some(None),
        Nullable::Some(v) => Some(Some(v)),
    }
}

impl TryFrom<GqlPetPatchInput> for PetPatch {
    type Error = Error;

    fn try_from(input: GqlPetPatchInput) -> Result<Self, Error> {
        let mut errors = Vec::new();
        let price = match &input.price {
            Some(p) => p.to_money("price", &mut errors).map(Some),
            None => Some(None),
        };
        let age = match nullable(input.age) {
            Some(Some(a)) => age(a, &mut errors).map(|a| Some(Some(a))),
            other => Some(other.map(|_| None)),
        };
        let patch = (|| {
            Some(PetPatch {
                name: input.name,
                species: input.species,
                breed: nullable(input.breed),
                age: age?,
                status: input.status.map(Into::into),
                tags: input.tags,
                photo_urls: input.photo_urls,
                price: price?,
            })
        })();
        finish(patch, errors)
    }
}
