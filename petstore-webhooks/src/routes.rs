//! Endpoint management under `/v1/webhooks` (admin scope).

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use petstore_core::{
    Error, EventFilter, EventType, FieldError, Principal, ResumeToken, Scope, TypePattern,
};
use petstore_http::{Caller, Edge, Problem, require_json};
use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::endpoints::EndpointPatch;
use crate::ids::EndpointId;
use crate::target::validate_url;
use crate::webhooks::AppState;

type Reply = Result<Response, Problem>;

const MAX_DESCRIPTION: usize = 500;
const MAX_PATTERNS: usize = 50;
const MAX_URL: usize = crate::target::MAX_URL;
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1_000;

pub(crate) fn router(shared: Arc<AppState>, edge: &Edge) -> Router {
    let limit = shared.config.max_body_size;
    let store = shared.service.clone();
    Router::new()
        .route("/v1/webhooks", post(create).get(list))
        .route("/v1/webhooks/event-types", get(event_types))
        .route("/v1/webhooks/{id}", get(fetch).patch(update).delete(remove))
        .route("/v1/webhooks/{id}/secret", get(secret))
        .route("/v1/webhooks/{id}/rotate-secret", post(rotate))
        .route("/v1/webhooks/{id}/messages", get(messages))
        .route(
            "/v1/webhooks/{id}/messages/{message_id}/redeliver",
            post(redeliver),
        )
        .route("/v1/webhooks/{id}/attempts", get(attempts))
        .route("/v1/webhooks/{id}/replay", post(replay))
        .route("/v1/webhooks/{id}/test", post(test))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(shared)
        .layer(edge.layer(store))
}

// ----- shared helpers ---------------------------------------------------------------

/// Endpoint management is for admins only.
fn admin(who: &Principal) -> Result<(), Problem> {
    Ok(who.require(Scope::Admin)?)
}

/// The raw body, or 413 / 400 as a problem.
pub(crate) fn read_body(
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<Bytes, Problem> {
    body.map_err(|rejection| {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            Problem::new(
                status,
                "payload_too_large",
                format!("the body is larger than {limit} bytes"),
            )
        } else {
            Problem::new(status, "bad_request", rejection.body_text())
        }
    })
}

/// Parses a JSON body: 400 when it is not JSON, 422 (with the field) when it does not
/// fit the expected shape, which is always an object (serde would also read a struct
/// from an array of its fields in order: `[null, null]` must not be a valid patch).
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let body: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    if !body.is_object() {
        return Err(Problem::from(Error::invalid_field(
            "body",
            "must be a JSON object",
        )));
    }
    serde_json::from_value(body).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => {
                let mut field = FieldError::from_serde("", &e.to_string());
                if field.field.is_empty() {
                    field.field = "body".to_owned();
                }
                Problem::from(Error::invalid(vec![field]))
            }
            _ => Problem::new(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                format!("the body is not valid JSON: {e}"),
            ),
        }
    })
}

fn parse_patterns(raw: Vec<String>, fields: &mut Vec<FieldError>) -> Vec<TypePattern> {
    if raw.len() > MAX_PATTERNS {
        fields.push(FieldError::new(
            "events",
            format!("at most {MAX_PATTERNS} entries"),
        ));
        return Vec::new();
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (i, text) in raw.iter().enumerate() {
        match text.parse::<TypePattern>() {
            Ok(p) => {
                if seen.insert(p.as_str().to_owned()) {
                    out.push(p);
                }
            }
            Err(_) => fields.push(FieldError::new(
                format!("events[{i}]"),
                format!(
                    "unknown event type or pattern `{}` (e.g. `order.created`, `pet.*`, `*`)",
                    text.chars().take(64).collect::<String>()
                ),
            )),
        }
    }
    out
}

fn check_description(description: &str, fields: &mut Vec<FieldError>) {
    if description.chars().count() > MAX_DESCRIPTION {
        fields.push(FieldError::new(
            "description",
            format!("at most {MAX_DESCRIPTION} characters"),
        ));
    }
}

fn finish_validation(fields: Vec<FieldError>) -> Result<(), Problem> {
    if fields.is_empty() {
        Ok(())
    } else {
        Err(Problem::from(Error::invalid(fields)))
    }
}

fn core<T>(result: petstore_core::Result<T>) -> Result<T, Problem> {
    result.map_err(Problem::from)
}

/// The endpoint id of a path: 404 when it cannot be one.
fn endpoint_id(raw: &str) -> Result<EndpointId, Problem> {
    core(raw.parse())
}

fn json_ok(status: StatusCode, value: impl serde::Serialize) -> Reply {
    Ok((status, Json(value)).into_response())
}

/// The query of the message and attempt listings.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitQuery {
    /// How many entries to return, newest first (default 100).
    #[serde(default)]
    #[schemars(range(min = 1, max = MAX_LIMIT))]
    limit: Option<usize>,
    /// Only the attempts of this message (`evt_...` or `test_...`); attempts only.
    #[serde(default)]
    message_id: Option<String>,
}

/// The query of the message listing: a limit only.
#[derive(JsonSchema)]
#[allow(dead_code)] // Only its schema is used: the listing reads `LimitQuery`.
pub(crate) struct MessagesQuery {
    /// How many messages to return, newest first (default 100).
    #[schemars(range(min = 1, max = MAX_LIMIT))]
    limit: Option<usize>,
}

fn page_limit(limit: Option<usize>) -> Result<usize, Problem> {
    match limit.unwrap_or(DEFAULT_LIMIT) {
        n @ 1..=MAX_LIMIT => Ok(n),
        _ => Err(Problem::from(Error::invalid_field(
            "limit",
            format!("must be between 1 and {MAX_LIMIT}"),
        ))),
    }
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, Problem> {
    q.map(|Query(q)| q)
        .map_err(|e| Problem::from(Error::invalid_field("query", e.body_text())))
}

// ----- handlers --------------------------------------------------------------------------

/// The body of `POST /v1/webhooks`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "NewWebhookEndpoint")]
pub(crate) struct NewEndpoint {
    /// Where deliveries are POSTed: an absolute `http` or `https` URL without a
    /// fragment. Private, link-local and (outside development) loopback addresses are
    /// refused, literally and when the name resolves to one.
    #[schemars(url, length(max = MAX_URL))]
    url: String,
    /// Event types or patterns to deliver (`order.created`, `pet.*`, `*`); empty or
    /// absent means every type.
    #[serde(default)]
    #[schemars(with = "Vec<TypePattern>", length(max = MAX_PATTERNS))]
    events: Vec<String>,
    /// Free text for the people who manage the endpoint.
    #[serde(default)]
    #[schemars(length(max = MAX_DESCRIPTION))]
    description: String,
}

async fn create(
    State(shared): State<Arc<AppState>>,
    Caller(who): Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Reply {
    admin(&who)?;
    require_json(&headers)?;
    let body = read_body(body, shared.config.max_body_size)?;
    let new: NewEndpoint = parse_json(&body)?;
    let mut fields = Vec::new();
    let url = validate_url(&new.url, &shared.policy)
        .map_err(|reason| fields.push(FieldError::new("url", reason)))
        .ok();
    let events = parse_patterns(new.events, &mut fields);
    check_description(&new.description, &mut fields);
    finish_validation(fields)?;
    let Some(url) = url else {
        return Err(Problem::from(Error::invalid_field("url", "is required")));
    };
    let head = core(shared.service.head().await)?;
    let endpoint = core(
        shared
            .endpoints()
            .create(url, new.description, events, head)
            .await,
    )?;
    let location = format!("/v1/webhooks/{}", endpoint.id());
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(endpoint),
    )
        .into_response())
}

async fn list(State(shared): State<Arc<AppState>>, Caller(who): Caller) -> Reply {
    admin(&who)?;
    json_ok(
        StatusCode::OK,
        json!({ "data": core(shared.endpoints().list().await)?, "next_cursor": null }),
    )
}

async fn fetch(
    State(shared): State<Arc<AppState>>,
    Path(id): Path<String>,
    Caller(who): Caller,
) -> Reply {
    admin(&who)?;
    let id = endpoint_id(&id)?;
    json_ok(StatusCode::OK, core(shared.endpoints().get(&id).await)?)
}

/// The body of `PATCH /v1/webhooks/{id}`: the members to change.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "WebhookEndpointPatch")]
pub(crate) struct Patch {
    /// A new target URL (the rules of `NewWebhookEndpoint.url`).
    #[serde(default)]
    #[schemars(url, length(max = MAX_URL))]
    url: Option<String>,
    /// New event types or patterns (empty: every type).
    #[serde(default)]
    #[schemars(with = "Option<Vec<TypePattern>>", length(max = MAX_PATTERNS))]
    events: Option<Vec<String>>,
    /// A new description.
    #[serde(default)]
    #[schemars(length(max = MAX_DESCRIPTION))]
    description: Option<String>,
    /// `true` re-enables a disabled endpoint (clearing its failure state); `false`
    /// disables it.
    #[serde(default)]
    enabled: Option<bool>,
}

async fn update(
    State(shared): State<Arc<AppState>>,
    Path(id): Path<String>,
    Caller(who): Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Reply {
    admin(&who)?;
    require_json(&headers)?;
    let body = read_body(body, shared.config.max_body_size)?;
    let patch: Patch = parse_json(&body)?;
    let id = endpoint_id(&id)?;
    core(shared.endpoints().get(&id).await)?;
    let mut fields = Vec::new();
    let url = patch.url.and_then(|raw| {
        validate_url(&raw, &shared.policy)
            .map_err(|reason| fields.push(FieldError::new("url", reason)))
            .ok()
    });
    let events = patch.events.map(|raw| parse_patterns(raw, &mut fields));
    if let Some(d) = &patch.description {
        check_description(d, &mut fields);
    }
    finish_validation(fields)?;
    let head = core(shared.service.head().await)?;
    let patch = EndpointPatch {
        url,
        description: patch.description,
        events,
        enabled: patch.enabled,
    };
    let view = core(shared.endpoints().update(&id, patch, head).await)?;
    json_ok(StatusCode::OK, view)
}

async fn remove(
    State(shared): State<Arc<AppState>>,
    Path(id): Path<String>,
    Caller(who): Caller,
) -> Reply {
    admin(&who)?;
    let id = endpoint_id(&id)?;
    core(shared.endpoints().delete(&id).await)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn secret(
    State(shared): State<Arc<AppState>>,
    Path(id): Path<String>,
    Caller(who): Caller,
) -> Reply {
    admin(&who)?;
    let id = endpoint_id(&id)?;
    json_ok(StatusCode::OK, core(shared.endpoints().secret(&id).await)?)
}

async fn rotate(
    State(shared): State<Arc<AppState>>,
    Path(id): Path<String>,
    Caller(who): Caller,
) -> Reply {
    admin(&who)?;
    let id = endpoint_id(&id)?;
    json_ok(StatusCode::OK, core(shared.endpoints().rotate(&id).await)?)
}

async fn messages(
    State(shared): State<Arc<AppState>>,
    Path(id): Path<String>,
    Caller(who): Caller,
    q: Result<Query<LimitQuery>, QueryRejection>,
) -> Reply {
    admin(&who)?;
    let q = query(q)?;
    if q.message_id.is_some() {
        return Err(Problem::from(Error::invalid_field(
            "message_id",
            "not a filter of this listing (see /attempts)",
        )));
    }
    let limit = page_limit(q.limit)?;
    let id = endpoint_id(&id)?;
    json_ok(
        StatusCode::OK,
        json!({ "data": core(shared.log().messages(&id, limit).await)?, "next_cursor": null }),
    )
}

async fn attempts(
    State(shared): State<Arc<AppState>>,
    Path(id): Path<String>,
    Caller(who): Caller,
    q: Result<Query<LimitQuery>, QueryRejection>,
) -> Reply {
    admin(&who)?;
    let q = query(q)?;
    let limit = page_limit(q.limit)?;
    let id = endpoint_id(&id)?;
    let data = core(
        shared
            .log()
            .attempts(&id, q.message_id.as_deref(), limit)
            .await,
    )?;
    json_ok(StatusCode::OK, json!({ "data": data, "next_cursor": null }))
}

async fn redeliver(
    State(shared): State<Arc<AppState>>,
    Path((id, message_id)): Path<(String, String)>,
    Caller(who): Caller,
) -> Reply {
    admin(&who)?;
    let id = endpoint_id(&id)?;
    let message = core(shared.deliveries().redeliver(&id, &message_id).await)?;
    json_ok(StatusCode::ACCEPTED, message)
}

/// The body of `POST /v1/webhooks/{id}/replay`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "WebhookReplay")]
pub(crate) struct Replay {
    /// Deliver again every retained event after this position (an event's `offset`,
    /// or an endpoint's `cursor`).
    #[schemars(with = "ResumeToken")]
    since: String,
}

async fn replay(
    State(shared): State<Arc<AppState>>,
    Path(id): Path<String>,
    Caller(who): Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Reply {
    admin(&who)?;
    require_json(&headers)?;
    let body = read_body(body, shared.config.max_body_size)?;
    let request: Replay = parse_json(&body)?;
    let id = endpoint_id(&id)?;
    core(shared.endpoints().get(&id).await)?;
    let since: ResumeToken = core(request.since.parse())?;
    // Reading one event checks the token now: 410 when too old or from another
    // epoch, 422 when ahead of the log.
    core(
        shared
            .service
            .events(
                &shared.follower,
                Some(since),
                1,
                EventFilter::all(),
                std::time::Duration::ZERO,
            )
            .await,
    )?;
    let view = core(shared.endpoints().replay(&id, since).await)?;
    json_ok(StatusCode::ACCEPTED, view)
}

async fn test(
    State(shared): State<Arc<AppState>>,
    Path(id): Path<String>,
    Caller(who): Caller,
) -> Reply {
    admin(&who)?;
    let id = endpoint_id(&id)?;
    let source = &shared.service.config().source;
    let message = core(shared.deliveries().test(&id, source).await)?;
    json_ok(StatusCode::ACCEPTED, message)
}

/// The event types an endpoint can subscribe to, with the JSON Schema of their `data`.
async fn event_types(Caller(who): Caller) -> Reply {
    admin(&who)?;
    let schema_of = |t: EventType| {
        let name = t.as_str();
        if name.starts_with("pet.") {
            serde_json::to_value(schemars::schema_for!(petstore_core::Pet))
        } else if name.starts_with("order.") {
            serde_json::to_value(schemars::schema_for!(petstore_core::Order))
        } else if name.starts_with("payment.") {
            serde_json::to_value(schemars::schema_for!(petstore_core::Payment))
        } else {
            serde_json::to_value(schemars::schema_for!(petstore_core::ChatMessage))
        }
        .unwrap_or_default()
    };
    let data: Vec<_> = EventType::ALL
        .into_iter()
        .map(|t| json!({ "name": t.as_str(), "data_schema": schema_of(t) }))
        .collect();
    json_ok(StatusCode::OK, json!({ "data": data }))
}
