//! The GraphQL schema: queries, mutations and subscriptions over any `PetStore`.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Stream, StreamExt as _};
use juniper::{ID, RootNode, graphql_object, graphql_subscription};
use petstore_core::{
    Channel, Credentials, Error, Event, EventFilter, NewChatMessage, NewOrder, OrderQuery,
    PaymentRequest, PetQuery, PetStore, Principal, Scope, TypePattern,
};

use crate::error::ApiResult;
use crate::types::{
    GqlAccessToken, GqlChatMessage, GqlEvent, GqlEventPage, GqlInventory, GqlNewPetInput, GqlOrder,
    GqlOrderChange, GqlOrderConnection, GqlOrderStatus, GqlPageInfo, GqlPayment, GqlPet,
    GqlPetChange, GqlPetConnection, GqlPetPatchInput, GqlPetStatus, GqlPlaceOrderResult, GqlViewer,
    order_id, payment_id, pet_id, resume_token, unsigned,
};

/// The Pet Store schema (see `schema.graphql` in this crate for its SDL).
pub type Schema = RootNode<Query, Mutation, Subscription>;

/// The schema with every feature on (introspection included). [`crate::router`] builds
/// its own from the [`crate::GraphQlConfig`].
pub fn schema() -> Schema {
    Schema::new(Query, Mutation, Subscription)
}

/// The schema in GraphQL SDL, as checked in at `petstore-graphql/schema.graphql`.
pub fn sdl() -> String {
    schema().as_sdl()
}

/// What every resolver sees: the service and the caller.
///
/// [`crate::router`] builds it per HTTP request (from the `Authorization` header) and
/// per WebSocket connection (from the `connection_init` payload). Build one yourself to
/// execute [`schema()`] outside the router.
#[derive(Debug, Clone)]
pub struct Context {
    pub(crate) service: PetStore,
    pub(crate) principal: Principal,
}

impl Context {
    /// A context for `principal` calling `store`.
    pub fn new(store: PetStore, principal: Principal) -> Self {
        Self {
            service: store,
            principal,
        }
    }

    /// The caller.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }
}

impl juniper::Context for Context {}

/// Default page size of `pets` / `orders` (the core's default).
pub(crate) const DEFAULT_PAGE: i32 = 20;
/// Default and maximum number of events per `events` query.
pub(crate) const DEFAULT_EVENTS: i32 = 100;

/// The query root.
#[derive(Debug, Clone, Copy)]
pub struct Query;

/// Reads. Open to anonymous callers unless the server requires auth for reads.
#[graphql_object(context = Context)]
impl Query {
    /// Who is calling: the token's subject and scopes.
    fn viewer(ctx: &Context) -> GqlViewer {
        (&ctx.principal).into()
    }

    /// One pet; null with a `NOT_FOUND` error when it does not exist.
    async fn pet(ctx: &Context, id: ID) -> ApiResult<Option<GqlPet>> {
        let pet = ctx.service.pet(&ctx.principal, &pet_id(&id)?).await?;
        Ok(Some(GqlPet(pet)))
    }

    /// Searches pets, oldest first, one page at a time.
    #[allow(clippy::too_many_arguments)]
    async fn pets(
        ctx: &Context,
        #[graphql(desc = "Only pets with this status.")] status: Option<GqlPetStatus>,
        #[graphql(desc = "Only pets of this species (case-insensitive).")] species: Option<String>,
        #[graphql(desc = "Only pets with this tag.")] tag: Option<String>,
        #[graphql(desc = "Free text over name, species, breed and tags.")] q: Option<String>,
        #[graphql(desc = "Page size, 1 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "`pageInfo.endCursor` of the previous page.")] after: Option<String>,
    ) -> ApiResult<GqlPetConnection> {
        let mut query = PetQuery::default();
        query.status = status.map(Into::into);
        query.species = species;
        query.tag = tag;
        query.q = q;
        query.limit = Some(unsigned(first.unwrap_or(DEFAULT_PAGE), "first")?);
        query.cursor = after;
        let page = ctx.service.pets(&ctx.principal, &query).await?;
        Ok(GqlPetConnection {
            nodes: page.data.into_iter().map(GqlPet).collect(),
            page_info: GqlPageInfo {
                has_next_page: page.next_cursor.is_some(),
                end_cursor: page.next_cursor,
            },
            position: page.position.map(|p| p.to_string()),
        })
    }

    /// One order; null with a `NOT_FOUND` error when it does not exist.
    async fn order(ctx: &Context, id: ID) -> ApiResult<Option<GqlOrder>> {
        let order = ctx.service.order(&ctx.principal, &order_id(&id)?).await?;
        Ok(Some(GqlOrder(order)))
    }

    /// Lists orders, oldest first, one page at a time.
    async fn orders(
        ctx: &Context,
        #[graphql(desc = "Only orders with this status.")] status: Option<GqlOrderStatus>,
        #[graphql(desc = "Only orders for this pet.")] pet_id: Option<ID>,
        #[graphql(desc = "Page size, 1 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "`pageInfo.endCursor` of the previous page.")] after: Option<String>,
    ) -> ApiResult<GqlOrderConnection> {
        let mut query = OrderQuery::default();
        query.status = status.map(Into::into);
        query.pet_id = pet_id.as_deref().map(crate::types::pet_id).transpose()?;
        query.limit = Some(unsigned(first.unwrap_or(DEFAULT_PAGE), "first")?);
        query.cursor = after;
        let page = ctx.service.orders(&ctx.principal, &query).await?;
        Ok(GqlOrderConnection {
            nodes: page.data.into_iter().map(GqlOrder).collect(),
            page_info: GqlPageInfo {
                has_next_page: page.next_cursor.is_some(),
                end_cursor: page.next_cursor,
            },
            position: page.position.map(|p| p.to_string()),
        })
    }

    /// One payment; null with a `NOT_FOUND` error when it does not exist.
    async fn payment(ctx: &Context, id: ID) -> ApiResult<Option<GqlPayment>> {
        let payment = ctx
            .service
            .payment(&ctx.principal, &payment_id(&id)?)
            .await?;
        Ok(Some(GqlPayment(payment)))
    }

    /// Pet counts per status.
    async fn inventory(ctx: &Context) -> ApiResult<GqlInventory> {
        let snapshot = ctx.service.inventory(&ctx.principal).await?;
        GqlInventory::new(snapshot.items, snapshot.position)
    }

    /// Reads the event log after `since` (polling); follow `next` for the next page.
    async fn events(
        ctx: &Context,
        #[graphql(desc = "Event types or families, e.g. `order.created`, `pet.*`.")] types: Option<
            Vec<String>,
        >,
        #[graphql(desc = "Channels, e.g. `pets`, `orders/{id}`, `chat/support`.")] channels: Option<
            Vec<String>,
        >,
        #[graphql(desc = "Resume token: an event's `offset` or a previous `next`.")] since: Option<
            String,
        >,
        #[graphql(desc = "How many events to examine, 1 to 1000 (default 100).")] first: Option<
            i32,
        >,
    ) -> ApiResult<GqlEventPage> {
        let filter = filter(types, channels)?;
        let since = resume_token(since.as_deref())?;
        let limit = unsigned(first.unwrap_or(DEFAULT_EVENTS), "first")? as usize;
        let batch = ctx
            .service
            .events(&ctx.principal, since, limit, filter, Duration::ZERO)
            .await?;
        Ok(GqlEventPage {
            events: batch.events.into_iter().map(GqlEvent).collect(),
            next: batch.next.to_string(),
        })
    }
}

/// The mutation root.
#[derive(Debug, Clone, Copy)]
pub struct Mutation;

/// Commands. Each needs a token with the right scope (`pets:write`, `orders:write`,
/// `chat:write`, `admin`), checked before the arguments are read: a caller without it
/// gets `UNAUTHENTICATED` / `FORBIDDEN`, whatever the arguments.
#[graphql_object(context = Context)]
impl Mutation {
    /// Exchanges a user's name and password for a bearer token.
    async fn issue_token(
        ctx: &Context,
        username: String,
        password: String,
    ) -> ApiResult<GqlAccessToken> {
        let token = ctx
            .service
            .issue_token(&Credentials { username, password })
            .await?;
        GqlAccessToken::new(token)
    }

    /// Adds a pet (`pets:write`).
    async fn create_pet(ctx: &Context, input: GqlNewPetInput) -> ApiResult<GqlPet> {
        ctx.principal.require(Scope::PetsWrite)?;
        let pet = ctx
            .service
            .create_pet(&ctx.principal, input.try_into()?)
            .await?;
        Ok(GqlPet(pet))
    }

    /// Changes some of a pet's fields (`pets:write`). With `ifVersion`, fails with
    /// `PRECONDITION_FAILED` unless the pet is at that version.
    async fn update_pet(
        ctx: &Context,
        id: ID,
        input: GqlPetPatchInput,
        if_version: Option<i32>,
    ) -> ApiResult<GqlPet> {
        ctx.principal.require(Scope::PetsWrite)?;
        let if_match = if_version.map(|v| unsigned(v, "ifVersion")).transpose()?;
        let pet = ctx
            .service
            .update_pet(
                &ctx.principal,
                &pet_id(&id)?,
                input.try_into()?,
                if_match.map(u64::from),
            )
            .await?;
        Ok(GqlPet(pet))
    }

    /// Replaces all of a pet's fields (`pets:write`).
    async fn replace_pet(
        ctx: &Context,
        id: ID,
        input: GqlNewPetInput,
        if_version: Option<i32>,
    ) -> ApiResult<GqlPet> {
        ctx.principal.require(Scope::PetsWrite)?;
        let if_match = if_version.map(|v| unsigned(v, "ifVersion")).transpose()?;
        let pet = ctx
            .service
            .replace_pet(
                &ctx.principal,
                &pet_id(&id)?,
                input.try_into()?,
                if_match.map(u64::from),
            )
            .await?;
        Ok(GqlPet(pet))
    }

    /// Removes a pet (`pets:write`) and returns its id. A pet held by an active order
    /// cannot be removed (`CONFLICT`).
    async fn delete_pet(ctx: &Context, id: ID, if_version: Option<i32>) -> ApiResult<ID> {
        ctx.principal.require(Scope::PetsWrite)?;
        let if_match = if_version.map(|v| unsigned(v, "ifVersion")).transpose()?;
        ctx.service
            .delete_pet(&ctx.principal, &pet_id(&id)?, if_match.map(u64::from))
            .await?;
        Ok(id)
    }

    /// Places an order (`orders:write`); the pet must be `AVAILABLE` (else `CONFLICT`)
    /// and becomes `PENDING`. A retry with the same `idempotencyKey` returns the first
    /// order.
    async fn place_order(
        ctx: &Context,
        pet_id: ID,
        #[graphql(default = 1, desc = "1 to 10.")] quantity: i32,
        idempotency_key: Option<String>,
    ) -> ApiResult<GqlPlaceOrderResult> {
        ctx.principal.require(Scope::OrdersWrite)?;
        let new = NewOrder {
            pet_id: crate::types::pet_id(&pet_id)?,
            quantity: unsigned(quantity, "quantity")?,
        };
        let placed = ctx
            .service
            .place_order(&ctx.principal, new, idempotency_key.as_deref())
            .await?;
        Ok(GqlPlaceOrderResult {
            order: GqlOrder(placed.order),
            replayed: placed.replayed,
        })
    }

    /// Pays a placed order with the built-in fake processor (`orders:write`).
    /// `tok_declined` gives a `FAILED` payment and leaves the order placed.
    async fn pay_order(
        ctx: &Context,
        id: ID,
        #[graphql(default = "tok_visa".to_owned(), desc = "A payment token such as `tok_visa`.")]
        token: String,
    ) -> ApiResult<GqlPayment> {
        ctx.principal.require(Scope::OrdersWrite)?;
        let payment = ctx
            .service
            .pay_order(&ctx.principal, &order_id(&id)?, PaymentRequest { token })
            .await?;
        Ok(GqlPayment(payment))
    }

    /// Cancels a placed or approved order (`orders:write`); the pet is available again.
    async fn cancel_order(ctx: &Context, id: ID) -> ApiResult<GqlOrder> {
        ctx.principal.require(Scope::OrdersWrite)?;
        let order = ctx
            .service
            .cancel_order(&ctx.principal, &order_id(&id)?)
            .await?;
        Ok(GqlOrder(order))
    }

    /// Delivers an approved order (`admin`); the pet is sold.
    async fn deliver_order(ctx: &Context, id: ID) -> ApiResult<GqlOrder> {
        ctx.principal.require(Scope::Admin)?;
        let order = ctx
            .service
            .deliver_order(&ctx.principal, &order_id(&id)?)
            .await?;
        Ok(GqlOrder(order))
    }

    /// Posts a support chat message (`chat:write`).
    async fn post_chat_message(
        ctx: &Context,
        #[graphql(desc = "1 to 64 characters of a-z, 0-9, `_`, `-`.")] room: String,
        #[graphql(desc = "1 to 2000 characters.")] text: String,
    ) -> ApiResult<GqlChatMessage> {
        ctx.principal.require(Scope::ChatWrite)?;
        let msg = ctx
            .service
            .post_chat(&ctx.principal, NewChatMessage { room, text })
            .await?;
        Ok(msg.into())
    }
}

/// A live feed of `T`s; an error item (e.g. `LAGGED`) ends it.
type Feed<T> = Pin<Box<dyn Stream<Item = ApiResult<T>> + Send>>;

/// The subscription root.
#[derive(Debug, Clone, Copy)]
pub struct Subscription;

/// Live feeds from the event log. Each takes `since`, a resume token (an event's
/// `offset`, a page's `position`): the feed first replays every matching event after it,
/// then follows live, with no gap and no duplicate. A token that is too old or from
/// another log epoch fails with `RESUME_EXPIRED` (reload, then resume from the new
/// `position`); without `since` the feed is live only.
#[graphql_subscription(context = Context)]
impl Subscription {
    /// Every event the caller may read, optionally narrowed by type and channel.
    async fn events(
        ctx: &Context,
        #[graphql(desc = "Event types or families, e.g. `order.created`, `pet.*`.")] types: Option<
            Vec<String>,
        >,
        #[graphql(desc = "Channels, e.g. `pets`, `orders/{id}`, `chat/support`.")] channels: Option<
            Vec<String>,
        >,
        #[graphql(desc = "Resume token: replay the events after it first.")] since: Option<String>,
    ) -> ApiResult<Feed<GqlEvent>> {
        let filter = filter(types, channels)?;
        follow(ctx, since, filter, |e| Ok(GqlEvent(e))).await
    }

    /// Changes of one pet (`id`) or of every pet.
    async fn pet_changed(
        ctx: &Context,
        id: Option<ID>,
        since: Option<String>,
    ) -> ApiResult<Feed<GqlPetChange>> {
        let channel = match id {
            Some(id) => Channel::Pet(pet_id(&id)?),
            None => Channel::Pets,
        };
        let filter = EventFilter::channels([channel]).with_types(["pet.*".parse()?]);
        follow(ctx, since, filter, GqlPetChange::from_event).await
    }

    /// Changes of one order (`id`) or of every order: `order.created` and
    /// `order.status_changed` (payments show as status changes; the `events`
    /// subscription also carries `payment.*`).
    async fn order_changed(
        ctx: &Context,
        id: Option<ID>,
        since: Option<String>,
    ) -> ApiResult<Feed<GqlOrderChange>> {
        let channel = match id {
            Some(id) => Channel::Order(order_id(&id)?),
            None => Channel::Orders,
        };
        let filter = EventFilter::channels([channel]).with_types(["order.*".parse()?]);
        follow(ctx, since, filter, GqlOrderChange::from_event).await
    }

    /// Support chat messages of one room or of every room (needs a token).
    async fn chat_messages(
        ctx: &Context,
        room: Option<String>,
        since: Option<String>,
    ) -> ApiResult<Feed<GqlChatMessage>> {
        let channel = match room {
            Some(room) if petstore_core::is_room_name(&room) => Channel::ChatRoom(room),
            Some(_) => {
                return Err(Error::invalid_field(
                    "room",
                    "must be 1 to 64 characters of a-z, 0-9, `_`, `-`",
                )
                .into());
            }
            None => Channel::Chat,
        };
        let filter = EventFilter::channels([channel]);
        follow(ctx, since, filter, |e| GqlChatMessage::from_event(&e)).await
    }
}

/// Builds an event filter from GraphQL arguments.
fn filter(types: Option<Vec<String>>, channels: Option<Vec<String>>) -> Result<EventFilter, Error> {
    let channels = channels
        .unwrap_or_default()
        .iter()
        .map(|c| c.parse::<Channel>())
        .collect::<Result<Vec<_>, _>>()?;
    let types = types
        .unwrap_or_default()
        .iter()
        .map(|t| t.parse::<TypePattern>())
        .collect::<Result<Vec<_>, _>>()?;
    Ok(EventFilter::channels(channels).with_types(types))
}

/// Subscribes to the log (scope checks and resume rules are the core's) and maps each
/// event with `view`.
async fn follow<T: Send + 'static>(
    ctx: &Context,
    since: Option<String>,
    filter: EventFilter,
    view: impl Fn(Arc<Event>) -> ApiResult<T> + Send + 'static,
) -> ApiResult<Feed<T>> {
    let since = resume_token(since.as_deref())?;
    let subscription = ctx.service.subscribe(&ctx.principal, since, filter).await?;
    Ok(Box::pin(subscription.map(move |item| match item {
        Ok(event) => view(event),
        Err(e) => Err(e.into()),
    })))
}
