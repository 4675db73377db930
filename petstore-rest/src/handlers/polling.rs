//! Polling the event log: `GET /v1/events` and `GET /v1/pets/changes`.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use petstore_core::schemars::{self, JsonSchema, Schema, SchemaGenerator, json_schema};
use petstore_core::{Channel, Error, ErrorKind, EventFilter, Principal, ResumeToken, TypePattern};
use petstore_http::Problem;
use serde::{Deserialize, Deserializer};

use crate::extract::{Caller, Params};
use crate::routes::AppState;

/// Events per response when `limit` is absent.
const DEFAULT_LIMIT: u32 = 100;

/// Comma-separated event types or families.
#[derive(Debug, Clone, Default)]
pub(crate) struct TypeList(Vec<TypePattern>);

impl<'de> Deserialize<'de> for TypeList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        EventFilter::parse_types(&text)
            .map(TypeList)
            .map_err(|e| serde::de::Error::custom(e.message()))
    }
}

impl JsonSchema for TypeList {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "TypeList".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "examples": ["pet.*,order.created"],
        })
    }
}

/// Comma-separated channels.
#[derive(Debug, Clone, Default)]
pub(crate) struct ChannelList(Vec<Channel>);

impl<'de> Deserialize<'de> for ChannelList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<Channel>())
            .collect::<Result<Vec<_>, _>>()
            .map(ChannelList)
            .map_err(|e| serde::de::Error::custom(e.message()))
    }
}

impl JsonSchema for ChannelList {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ChannelList".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "examples": ["orders,pets"],
        })
    }
}

/// Query of `GET /v1/events`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(default)]
pub(crate) struct EventsQuery {
    /// Resume token: the `next` of the previous response, or the `X-Event-Position` of a
    /// read. Without it the feed starts at the oldest retained event. A malformed token
    /// is 400; one from another log epoch or older than the retained log is 410.
    since: Option<ResumeToken>,
    /// At most this many events per response, 1 to 1000 (default 100).
    limit: Option<u32>,
    /// Comma-separated event types or families, e.g. `pet.*,order.created` (default: every type).
    types: Option<TypeList>,
    /// Comma-separated channels: `pets`, `orders`, `inventory`, `chat`, `pets/{id}`,
    /// `orders/{id}`, `chat/{room}` (default: everything the caller may read).
    channels: Option<ChannelList>,
    /// Long polling: when nothing is new, wait up to this many seconds for a first event
    /// (default 0; capped by the server, 30 s unless configured otherwise).
    wait: Option<u32>,
}

/// Query of `GET /v1/pets/changes`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(default)]
pub(crate) struct PetChangesQuery {
    /// Resume token: the `next` of the previous response, or the `X-Event-Position` of
    /// `GET /v1/pets`. Without it the feed starts at the oldest retained event. A
    /// malformed token is 400; one from another log epoch or older than the retained log
    /// is 410.
    since: Option<ResumeToken>,
    /// At most this many events per response, 1 to 1000 (default 100).
    limit: Option<u32>,
    /// Comma-separated pet event types, e.g. `pet.status_changed` (default: every pet event).
    types: Option<TypeList>,
    /// Long polling: when nothing is new, wait up to this many seconds for a first event
    /// (default 0; capped by the server, 30 s unless configured otherwise).
    wait: Option<u32>,
}

pub(crate) async fn events(
    State(s): State<AppState>,
    Caller(who): Caller,
    Params(q): Params<EventsQuery>,
) -> Result<Response, Problem> {
    let filter = EventFilter::channels(q.channels.unwrap_or_default().0)
        .with_types(q.types.unwrap_or_default().0);
    feed(&s, &who, q.since, q.limit, filter, q.wait).await
}

pub(crate) async fn pet_changes(
    State(s): State<AppState>,
    Caller(who): Caller,
    Params(q): Params<PetChangesQuery>,
) -> Result<Response, Problem> {
    let filter = EventFilter::channels([Channel::Pets]).with_types(q.types.unwrap_or_default().0);
    feed(&s, &who, q.since, q.limit, filter, q.wait).await
}

async fn feed(
    s: &AppState,
    who: &Principal,
    since: Option<ResumeToken>,
    limit: Option<u32>,
    filter: EventFilter,
    wait: Option<u32>,
) -> Result<Response, Problem> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT) as usize;
    let wait = Duration::from_secs(wait.unwrap_or(0).into()).min(s.config.poll_wait_cap());
    // A long poll ends when the server shuts down (the client polls again elsewhere).
    let batch = tokio::select! {
        biased;
        batch = s.store.events(who, since, limit, filter, wait) => batch?,
        () = s.shutdown.cancelled() => {
            return Err(Error::new(ErrorKind::Unavailable, "the server is shutting down; poll again")
                .with_retry_after(Duration::from_secs(1))
                .into());
        }
    };
    let mut response = Json(&batch).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
