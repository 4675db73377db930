//! The tools: one per core command or query, each with an input schema, an output
//! schema and structured results. Core errors come back as tool errors.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use petstore_core::{
    Error, ErrorKind, EventBatch, EventFilter, Inventory, MAX_EVENT_READ, NewOrder, NewPet, Order,
    OrderId, Page, PaymentRequest, Pet, PetId, PetPatch, PetQuery, PetStatus, PetStore, Principal,
    ResumeToken, Scope, TypePattern,
};
use rmcp::handler::server::common::{FromContextPart, schema_for_input};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Extensions, JsonObject,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, Json, RoleServer, tool, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{Input, bad_arguments, tool_error};

/// The store, and the principal of requests that do not come over HTTP (stdio): what
/// a tool call runs against. A private type, so that the `pub fn <tool>_tool_attr()`
/// items rmcp's `#[tool]` generates stay out of the public API.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    pub(crate) service: PetStore,
    pub(crate) principal: Principal,
}

impl AppState {
    /// The caller of a request: over HTTP the principal the auth middleware put in
    /// the request's parts (anonymous when it sent no token), otherwise the
    /// principal this server was built with.
    pub(crate) fn caller(&self, extensions: &Extensions) -> Principal {
        match extensions.get::<http::request::Parts>() {
            Some(parts) => parts
                .extensions
                .get::<Principal>()
                .cloned()
                .unwrap_or_else(Principal::anonymous),
            None => self.principal.clone(),
        }
    }
}

/// The tool set, built once: every server instance (one per HTTP session or
/// stateless request) dispatches through it.
pub(crate) fn router() -> &'static ToolRouter<AppState> {
    static ROUTER: LazyLock<ToolRouter<AppState>> = LazyLock::new(AppState::tool_router);
    &ROUTER
}

/// Runs a tool call. A command's scope is checked first, before its arguments are read:
/// a caller without it learns nothing about the input rules. Arguments outside the
/// tool's input schema are refused next (as a tool error, like every argument error):
/// some inputs are core types that ignore unknown fields (`PetQuery`), and an assistant
/// that guessed a filter must learn that it was not applied rather than get
/// unfiltered results.
pub(crate) async fn call(
    tools: &AppState,
    request: CallToolRequestParams,
    context: RequestContext<RoleServer>,
) -> Result<CallToolResponse, ErrorData> {
    if let Some(scope) = command_scope(&request.name)
        && let Err(e) = tools.caller(&context.extensions).require(scope)
    {
        return Ok(tool_error(&e).into());
    }
    let router = router();
    if let (Some(tool), Some(arguments)) = (router.get(&request.name), &request.arguments)
        && let Some(refusal) = unknown_argument(&tool.input_schema, arguments)
    {
        return Ok(refusal.into());
    }
    router
        .call(ToolCallContext::new(tools, request, context))
        .await
}

/// The scope of the tools that change something (the core checks it again when the
/// command runs); `None` for the read-only tools.
fn command_scope(tool: &str) -> Option<Scope> {
    match tool {
        "create_pet" | "update_pet" | "set_pet_status" | "delete_pet" => Some(Scope::PetsWrite),
        "place_order" | "cancel_order" | "pay_order" => Some(Scope::OrdersWrite),
        _ => None,
    }
}

/// A tool error naming the first argument that `schema` does not define.
fn unknown_argument(schema: &JsonObject, arguments: &JsonObject) -> Option<CallToolResult> {
    let known = schema.get("properties")?.as_object()?;
    let unknown = arguments.keys().find(|name| !known.contains_key(*name))?;
    let expected = match known.keys().map(|k| format!("`{k}`")).collect::<Vec<_>>() {
        names if names.is_empty() => "there are no fields".to_owned(),
        names => format!("expected one of {}", names.join(", ")),
    };
    Some(CallToolResult::error(vec![ContentBlock::text(
        bad_arguments(format_args!(
            "`{unknown}`: is not a field here ({expected})"
        )),
    )]))
}

/// The caller of a tool call (see [`AppState::caller`]).
struct Caller(Principal);

impl FromContextPart<ToolCallContext<'_, AppState>> for Caller {
    fn from_context_part(context: &mut ToolCallContext<'_, AppState>) -> Result<Self, ErrorData> {
        Ok(Caller(
            context.service.caller(&context.request_context.extensions),
        ))
    }
}

/// The input schema of `T` (an object, as MCP requires; checked when the router is
/// built, which the tests do).
fn input<T: JsonSchema + 'static>() -> Arc<JsonObject> {
    schema_for_input::<T>()
        .unwrap_or_else(|e| panic!("input schema of {}: {e}", std::any::type_name::<T>()))
}

/// A core result as a tool result: structured content, or a tool error.
fn reply<T>(result: petstore_core::Result<T>) -> Result<Json<T>, CallToolResult> {
    result.map(Json).map_err(|e| tool_error(&e))
}

/// Arguments naming one pet.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct PetRef {
    /// The pet's id (`pet_…`).
    id: PetId,
}

/// Arguments of `update_pet`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct UpdatePet {
    /// The pet's id (`pet_…`).
    id: PetId,
    /// The fields to change; absent fields stay as they are, `null` clears `breed` or `age`.
    changes: PetPatch,
    /// Apply only if the pet still has this `version` (optimistic concurrency).
    #[serde(default)]
    expected_version: Option<u64>,
}

/// Arguments of `set_pet_status`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SetPetStatus {
    /// The pet's id (`pet_…`).
    id: PetId,
    /// The new status. A pet held by an order cannot be set `available` or `sold`:
    /// cancel or deliver the order instead.
    status: PetStatus,
}

/// Arguments of `delete_pet`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct DeletePet {
    /// The pet's id (`pet_…`).
    id: PetId,
    /// Delete only if the pet still has this `version`.
    #[serde(default)]
    expected_version: Option<u64>,
}

/// The result of `delete_pet`.
#[derive(Debug, Serialize, JsonSchema)]
struct Deleted {
    /// The id of the removed pet.
    id: PetId,
}

/// Arguments of `place_order`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct PlaceOrder {
    /// The pet to order (`pet_…`); it must be `available`.
    pet_id: PetId,
    /// How many (1 to 10).
    #[serde(default = "one")]
    quantity: u32,
    /// Any unique string: retrying with the same key returns the first order instead
    /// of placing a second one.
    #[serde(default)]
    idempotency_key: Option<String>,
}

fn one() -> u32 {
    1
}

/// The result of `place_order`.
#[derive(Debug, Serialize, JsonSchema)]
struct PlacedOrder {
    /// The order.
    order: Order,
    /// True when an earlier call with the same idempotency key placed it.
    replayed: bool,
}

/// Arguments naming one order.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct OrderRef {
    /// The order's id (`ord_…`).
    id: OrderId,
}

/// Arguments of `pay_order`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct PayOrder {
    /// The order's id (`ord_…`); it must be `placed`.
    id: OrderId,
    /// Payment-method token of the built-in test processor: `tok_visa` (the default)
    /// succeeds, `tok_declined` is declined.
    #[serde(default)]
    token: Option<String>,
}

/// Arguments of `recent_events`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RecentEvents {
    /// Return only events after this position: the `next` of a previous call (or an
    /// event's `offset`). Omit it to get the latest matching events (among the last
    /// 1000 of the log).
    #[serde(default)]
    since: Option<ResumeToken>,
    /// At most this many events, 1 to 1000 (default 50).
    #[serde(default)]
    limit: Option<u32>,
    /// Only these event types or families, e.g. `["order.*", "pet.created"]`.
    #[serde(default)]
    types: Vec<TypePattern>,
    /// Only events on these channels: `pets`, `orders`, `inventory`, `pets/{id}`,
    /// `orders/{id}`.
    #[serde(default)]
    channels: Vec<String>,
}

const DEFAULT_EVENTS: usize = 50;

#[tool_router(router = tool_router)]
impl AppState {
    #[tool(
        description = "Search the pet catalogue. Filters (all optional): status (available, pending, sold), species, tag, and q (text in name, species, breed or tags). Results come in pages of `limit` (1 to 100, default 20); pass `next_cursor` back as `cursor` for the next page.",
        input_schema = input::<PetQuery>(),
        annotations(title = "Search pets", read_only_hint = true, open_world_hint = false)
    )]
    async fn search_pets(
        &self,
        Caller(who): Caller,
        Input(query): Input<PetQuery>,
    ) -> Result<Json<Page<Pet>>, CallToolResult> {
        reply(self.service.pets(&who, &query).await)
    }

    #[tool(
        description = "Get one pet by id, with its status, price and current version.",
        input_schema = input::<PetRef>(),
        annotations(title = "Get a pet", read_only_hint = true, open_world_hint = false)
    )]
    async fn get_pet(
        &self,
        Caller(who): Caller,
        Input(args): Input<PetRef>,
    ) -> Result<Json<Pet>, CallToolResult> {
        reply(self.service.pet(&who, &args.id).await)
    }

    #[tool(
        description = "Add a pet to the catalogue (needs a token with scope pets:write). The price is a decimal string with a currency, e.g. {\"amount\": \"450.00\", \"currency\": \"USD\"}.",
        input_schema = input::<NewPet>(),
        annotations(
            title = "Create a pet",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn create_pet(
        &self,
        Caller(who): Caller,
        Input(new): Input<NewPet>,
    ) -> Result<Json<Pet>, CallToolResult> {
        reply(self.service.create_pet(&who, new).await)
    }

    #[tool(
        description = "Change some fields of a pet (needs scope pets:write). Only the fields given in `changes` change; with `expected_version` the change applies only if nobody changed the pet since you read it.",
        input_schema = input::<UpdatePet>(),
        annotations(
            title = "Update a pet",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn update_pet(
        &self,
        Caller(who): Caller,
        Input(args): Input<UpdatePet>,
    ) -> Result<Json<Pet>, CallToolResult> {
        reply(
            self.service
                .update_pet(&who, &args.id, args.changes, args.expected_version)
                .await,
        )
    }

    #[tool(
        description = "Set a pet's status to available, pending or sold (needs scope pets:write). Orders move their pet's status themselves.",
        input_schema = input::<SetPetStatus>(),
        annotations(
            title = "Set a pet's status",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn set_pet_status(
        &self,
        Caller(who): Caller,
        Input(args): Input<SetPetStatus>,
    ) -> Result<Json<Pet>, CallToolResult> {
        reply(
            self.service
                .set_pet_status(&who, &args.id, args.status)
                .await,
        )
    }

    #[tool(
        description = "Remove a pet from the catalogue for good (needs scope pets:write). A pet held by an active order cannot be removed.",
        input_schema = input::<DeletePet>(),
        annotations(
            title = "Delete a pet",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn delete_pet(
        &self,
        Caller(who): Caller,
        Input(args): Input<DeletePet>,
    ) -> Result<Json<Deleted>, CallToolResult> {
        let deleted = self
            .service
            .delete_pet(&who, &args.id, args.expected_version)
            .await;
        reply(deleted.map(|()| Deleted { id: args.id }))
    }

    #[tool(
        description = "Order an available pet (needs scope orders:write). The pet becomes pending until the order is paid and delivered, or cancelled. Pass an `idempotency_key` to make retries safe.",
        input_schema = input::<PlaceOrder>(),
        annotations(
            title = "Place an order",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn place_order(
        &self,
        Caller(who): Caller,
        Input(args): Input<PlaceOrder>,
    ) -> Result<Json<PlacedOrder>, CallToolResult> {
        let new = NewOrder {
            pet_id: args.pet_id,
            quantity: args.quantity,
        };
        let placed = self
            .service
            .place_order(&who, new, args.idempotency_key.as_deref())
            .await;
        reply(placed.map(|p| PlacedOrder {
            order: p.order,
            replayed: p.replayed,
        }))
    }

    #[tool(
        description = "Get one order by id: its pet, quantity, total and status (placed, approved, delivered, cancelled).",
        input_schema = input::<OrderRef>(),
        annotations(title = "Get an order", read_only_hint = true, open_world_hint = false)
    )]
    async fn get_order(
        &self,
        Caller(who): Caller,
        Input(args): Input<OrderRef>,
    ) -> Result<Json<Order>, CallToolResult> {
        reply(self.service.order(&who, &args.id).await)
    }

    #[tool(
        description = "Cancel a placed or approved order (needs scope orders:write); its pet becomes available again. A cancelled order cannot be restored.",
        input_schema = input::<OrderRef>(),
        annotations(
            title = "Cancel an order",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn cancel_order(
        &self,
        Caller(who): Caller,
        Input(args): Input<OrderRef>,
    ) -> Result<Json<Order>, CallToolResult> {
        reply(self.service.cancel_order(&who, &args.id).await)
    }

    #[tool(
        description = "Pay a placed order with the built-in test processor (needs scope orders:write). A successful payment approves the order; a declined one (token `tok_declined`) is recorded with status `failed` and the order stays placed.",
        input_schema = input::<PayOrder>(),
        annotations(
            title = "Pay an order",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn pay_order(
        &self,
        Caller(who): Caller,
        Input(args): Input<PayOrder>,
    ) -> Result<Json<petstore_core::Payment>, CallToolResult> {
        let request = match args.token {
            Some(token) => PaymentRequest { token },
            None => PaymentRequest::default(),
        };
        reply(self.service.pay_order(&who, &args.id, request).await)
    }

    #[tool(
        description = "Count the pets per status (available, pending, sold).",
        annotations(title = "Inventory", read_only_hint = true, open_world_hint = false)
    )]
    async fn get_inventory(&self, Caller(who): Caller) -> Result<Json<Inventory>, CallToolResult> {
        reply(
            self.service
                .inventory(&who)
                .await
                .map(|snapshot| snapshot.items),
        )
    }

    #[tool(
        description = "Read the store's event log: what happened to pets and orders (pet.created, pet.status_changed, order.created, payment.succeeded, ...). Without `since` it returns the latest events; pass the returned `next` as `since` to get only what happened after.",
        input_schema = input::<RecentEvents>(),
        annotations(title = "Recent events", read_only_hint = true, open_world_hint = false)
    )]
    async fn recent_events(
        &self,
        Caller(who): Caller,
        Input(args): Input<RecentEvents>,
    ) -> Result<Json<EventBatch>, CallToolResult> {
        reply(self.events(&who, args).await)
    }
}

impl AppState {
    async fn events(
        &self,
        who: &Principal,
        args: RecentEvents,
    ) -> petstore_core::Result<EventBatch> {
        let channels = args
            .channels
            .iter()
            .map(|c| c.parse())
            .collect::<petstore_core::Result<Vec<_>>>()?;
        let filter = EventFilter::channels(channels).with_types(args.types);
        let limit = args.limit.map_or(DEFAULT_EVENTS, |n| n as usize);
        if !(1..=MAX_EVENT_READ).contains(&limit) {
            return Err(Error::invalid_field(
                "limit",
                format!("must be between 1 and {MAX_EVENT_READ}"),
            ));
        }
        let read = |since, limit| {
            self.service
                .events(who, since, limit, filter.clone(), Duration::ZERO)
        };
        if let Some(since) = args.since {
            return read(Some(since), limit).await;
        }
        // The latest matching events: read the newest window of the log (all of it
        // when it holds fewer events, or when the window reaches past what it retains)
        // and keep the last `limit` matches.
        let head = self.service.head().await?;
        let window = ResumeToken::new(
            head.epoch,
            head.offset.saturating_sub(MAX_EVENT_READ as u64),
        );
        let mut batch = match read(Some(window), MAX_EVENT_READ).await {
            Err(e) if e.kind() == ErrorKind::ResumeExpired => read(None, MAX_EVENT_READ).await,
            other => other,
        }?;
        let older = batch.events.len().saturating_sub(limit);
        batch.events.drain(..older);
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every tool that is not read-only has its scope checked before its arguments.
    #[test]
    fn every_command_tool_has_a_scope() {
        let tools = router().list_all();
        assert!(tools.len() > 10);
        for tool in tools {
            let read_only = tool
                .annotations
                .as_ref()
                .and_then(|a| a.read_only_hint)
                .unwrap_or(false);
            assert_eq!(
                command_scope(&tool.name).is_none(),
                read_only,
                "{}",
                tool.name
            );
        }
    }
}
