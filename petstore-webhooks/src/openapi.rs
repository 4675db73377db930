//! The OpenAPI 3.1 fragment of the webhook routes: the endpoint management API under
//! `/v1/webhooks`, the inbound payments webhook and, in the document's `webhooks`
//! section, the deliveries this server POSTs to the endpoints.
//!
//! Built from the same schemars types the routes parse and answer, so the schemas
//! cannot drift from the handlers.

use petstore_core::{Event, EventType, schemars};
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{Map, Value, json};

use crate::endpoints::{EndpointView, SecretView};
use crate::ids::EndpointId;
use crate::messages::{AttemptView, MessageView, TEST_EVENT_TYPE};
use crate::routes::{LimitQuery, MessagesQuery, NewEndpoint, Patch, Replay};
use crate::signing::{WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP};

/// The name of each error response in `components/responses` of the document this
/// fragment is merged into (the REST document).
fn error_response(status: u16) -> &'static str {
    match status {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        409 => "Conflict",
        410 => "Gone",
        413 => "PayloadTooLarge",
        415 => "UnsupportedMediaType",
        422 => "UnprocessableContent",
        429 => "TooManyRequests",
        _ => "Error",
    }
}

/// One management operation.
struct Op {
    id: &'static str,
    summary: &'static str,
    description: &'static str,
    /// Needs the `admin` scope (every route but the signed inbound one).
    admin: bool,
    parameters: Vec<Value>,
    body: Option<Schema>,
    status: u16,
    reply_description: &'static str,
    reply: Option<Schema>,
    reply_headers: &'static [&'static str],
    /// Operations that take the reply's `id` as their `id` (OpenAPI links).
    links: &'static [&'static str],
    errors: &'static [u16],
}

impl Op {
    fn into_json(self) -> Value {
        let mut parameters = self.parameters;
        parameters.push(json!({"$ref": "#/components/parameters/X-Request-Id"}));
        let mut headers: Map<String, Value> = Map::new();
        for name in self.reply_headers.iter().chain(&["X-Request-Id"]) {
            headers.insert(
                (*name).to_owned(),
                json!({"$ref": format!("#/components/headers/{name}")}),
            );
        }
        let mut reply = json!({"description": self.reply_description, "headers": headers});
        if let Some(schema) = self.reply {
            reply["content"] = json!({"application/json": {"schema": schema}});
        }
        if !self.links.is_empty() {
            let links: Map<String, Value> = self
                .links
                .iter()
                .map(|target| {
                    let link = json!({
                        "operationId": target,
                        "parameters": {"id": "$response.body#/id"},
                    });
                    ((*target).to_owned(), link)
                })
                .collect();
            reply["links"] = links.into();
        }
        let mut responses = Map::new();
        responses.insert(self.status.to_string(), reply);
        for status in self.errors {
            responses.insert(
                status.to_string(),
                json!({"$ref": format!("#/components/responses/{}", error_response(*status))}),
            );
        }
        responses.insert(
            "default".into(),
            json!({"$ref": "#/components/responses/Error"}),
        );
        let description = if self.admin {
            format!(
                "{}\n\nNeeds a bearer token with scope `admin`.",
                self.description
            )
        } else {
            self.description.to_owned()
        };
        let mut op = json!({
            "operationId": self.id,
            "tags": ["webhooks"],
            "summary": self.summary,
            "description": description,
            "parameters": parameters,
            "responses": responses,
        });
        op["security"] = if self.admin {
            json!([{"bearerAuth": ["admin"]}])
        } else {
            json!([])
        };
        if let Some(schema) = self.body {
            op["requestBody"] = json!({
                "required": true,
                "content": {"application/json": {"schema": schema}},
            });
        }
        op
    }
}

/// An admin operation with the defaults most management routes share.
fn admin_op(id: &'static str, summary: &'static str, description: &'static str) -> Op {
    Op {
        id,
        summary,
        description,
        admin: true,
        parameters: Vec::new(),
        body: None,
        status: 200,
        reply_description: "",
        reply: None,
        reply_headers: &[],
        links: &[],
        errors: &[401, 403, 404, 429],
    }
}

/// `{"data": [T], "next_cursor": null}`: the listings answer one page.
fn list_of(item: Schema) -> Schema {
    schemars::json_schema!({
        "type": "object",
        "required": ["data", "next_cursor"],
        "properties": {
            "data": {"type": "array", "items": item},
            "next_cursor": {
                "type": "null",
                "description": "Always `null`: a listing answers its newest entries, up to `limit`.",
            },
        },
    })
}

/// The query parameters of `T`, one per property.
fn query_params<T: JsonSchema>(g: &mut SchemaGenerator) -> Vec<Value> {
    let schema = T::json_schema(g);
    let properties = schema
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    properties
        .into_iter()
        .map(|(name, mut schema)| {
            let description = schema
                .as_object_mut()
                .and_then(|s| s.remove("description"))
                .unwrap_or(Value::Null);
            json!({
                "name": name,
                "in": "query",
                "required": false,
                "description": description,
                "schema": schema,
            })
        })
        .collect()
}

fn endpoint_id_param(g: &mut SchemaGenerator) -> Value {
    json!({
        "name": "id",
        "in": "path",
        "required": true,
        "description": "The endpoint's id (`ep_…`).",
        "schema": g.subschema_for::<EndpointId>(),
    })
}

/// The Standard Webhooks headers of a delivery (and of an inbound notice).
fn signature_headers() -> Vec<Value> {
    vec![
        json!({
            "name": WEBHOOK_ID,
            "in": "header",
            "required": true,
            "description": "The message id: the event id (`evt_…`, `test_…` for test \
                            events), the same on every attempt and redelivery. Receivers \
                            deduplicate on it.",
            "schema": {"type": "string", "minLength": 1},
        }),
        json!({
            "name": WEBHOOK_TIMESTAMP,
            "in": "header",
            "required": true,
            "description": "Unix seconds when this attempt was signed; refuse old ones \
                            (replay protection).",
            "schema": {"type": "string", "pattern": "^[0-9]{1,19}$"},
        }),
        json!({
            "name": WEBHOOK_SIGNATURE,
            "in": "header",
            "required": true,
            "description": "Space-separated `v1,<base64 HMAC-SHA256>` signatures of \
                            `{webhook-id}.{webhook-timestamp}.{body}` with the endpoint's \
                            secret (base64 after `whsec_`); two during a secret rotation's \
                            grace period.",
            "schema": {"type": "string", "minLength": 1},
        }),
    ]
}

/// The management operations, as (path, method, operation).
fn operations(g: &mut SchemaGenerator) -> Vec<(&'static str, &'static str, Op)> {
    let endpoint = g.subschema_for::<EndpointView>();
    let secret = g.subschema_for::<SecretView>();
    let message = g.subschema_for::<MessageView>();
    let attempt = g.subschema_for::<AttemptView>();
    let id = endpoint_id_param(g);
    let event_type = g.subschema_for::<EventType>();
    let event_types = schemars::json_schema!({
        "type": "object",
        "required": ["data"],
        "properties": {
            "data": {"type": "array", "items": {
                "type": "object",
                "required": ["name", "data_schema"],
                "properties": {
                    "name": event_type,
                    "data_schema": {
                        "type": "object",
                        "description": "The JSON Schema of the event's `data`.",
                    },
                },
            }},
        },
    });
    vec![
        (
            "/v1/webhooks",
            "post",
            Op {
                body: Some(g.subschema_for::<NewEndpoint>()),
                status: 201,
                reply_description: "The new endpoint, with its signing `secret` (shown here \
                                    and by the secret routes only). Deliveries start with the \
                                    events after this moment.",
                reply: Some(endpoint.clone()),
                reply_headers: &["Location"],
                links: &[
                    "getWebhook",
                    "updateWebhook",
                    "deleteWebhook",
                    "getWebhookSecret",
                    "rotateWebhookSecret",
                    "listWebhookMessages",
                    "listWebhookAttempts",
                    "replayWebhook",
                    "testWebhook",
                ],
                errors: &[400, 401, 403, 409, 413, 415, 422, 429],
                ..admin_op(
                    "createWebhook",
                    "Register a webhook endpoint",
                    "A URL that receives the chosen events, signed per Standard Webhooks. \
                     409 when the endpoint limit is reached; 422 for a URL the target \
                     policy refuses.",
                )
            },
        ),
        (
            "/v1/webhooks",
            "get",
            Op {
                reply_description: "Every endpoint (without secrets).",
                reply: Some(list_of(endpoint.clone())),
                errors: &[401, 403, 429],
                ..admin_op("listWebhooks", "List webhook endpoints", "")
            },
        ),
        (
            "/v1/webhooks/event-types",
            "get",
            Op {
                reply_description: "Each event type with the JSON Schema of its `data`.",
                reply: Some(event_types),
                errors: &[401, 403, 429],
                ..admin_op(
                    "listWebhookEventTypes",
                    "List the event types an endpoint can subscribe to",
                    "",
                )
            },
        ),
        (
            "/v1/webhooks/{id}",
            "get",
            Op {
                parameters: vec![id.clone()],
                reply_description: "The endpoint (without its secret), with its delivery \
                                    cursor and failure state.",
                reply: Some(endpoint.clone()),
                ..admin_op("getWebhook", "Get a webhook endpoint", "")
            },
        ),
        (
            "/v1/webhooks/{id}",
            "patch",
            Op {
                parameters: vec![id.clone()],
                body: Some(g.subschema_for::<Patch>()),
                reply_description: "The changed endpoint.",
                reply: Some(endpoint.clone()),
                errors: &[400, 401, 403, 404, 413, 415, 422, 429],
                ..admin_op(
                    "updateWebhook",
                    "Change a webhook endpoint",
                    "Changes the given members. Enabling a disabled endpoint clears its \
                     failure state; deliveries go on from its cursor.",
                )
            },
        ),
        (
            "/v1/webhooks/{id}",
            "delete",
            Op {
                parameters: vec![id.clone()],
                status: 204,
                reply_description: "Deleted: pending deliveries are dropped.",
                ..admin_op("deleteWebhook", "Delete a webhook endpoint", "")
            },
        ),
        (
            "/v1/webhooks/{id}/secret",
            "get",
            Op {
                parameters: vec![id.clone()],
                reply_description: "The signing secret, and until when the previous one \
                                    still signs (after a rotation).",
                reply: Some(secret.clone()),
                ..admin_op("getWebhookSecret", "Get an endpoint's signing secret", "")
            },
        ),
        (
            "/v1/webhooks/{id}/rotate-secret",
            "post",
            Op {
                parameters: vec![id.clone()],
                reply_description: "The new secret. During the grace period deliveries \
                                    carry signatures with both secrets.",
                reply: Some(secret),
                ..admin_op(
                    "rotateWebhookSecret",
                    "Rotate an endpoint's signing secret",
                    "",
                )
            },
        ),
        (
            "/v1/webhooks/{id}/messages",
            "get",
            Op {
                parameters: {
                    let mut p = vec![id.clone()];
                    p.extend(query_params::<MessagesQuery>(g));
                    p
                },
                reply_description: "The newest messages owed to the endpoint, with where \
                                    each delivery stands.",
                reply: Some(list_of(message.clone())),
                errors: &[401, 403, 404, 422, 429],
                ..admin_op(
                    "listWebhookMessages",
                    "List an endpoint's messages",
                    "An unknown query parameter or a `limit` outside 1 to 1000 is 422.",
                )
            },
        ),
        (
            "/v1/webhooks/{id}/attempts",
            "get",
            Op {
                parameters: {
                    let mut p = vec![id.clone()];
                    p.extend(query_params::<LimitQuery>(g));
                    p
                },
                reply_description: "The newest delivery attempts, each with the receiver's \
                                    status code, latency and the start of its answer.",
                reply: Some(list_of(attempt)),
                errors: &[401, 403, 404, 422, 429],
                ..admin_op(
                    "listWebhookAttempts",
                    "List an endpoint's delivery attempts",
                    "An unknown query parameter or a `limit` outside 1 to 1000 is 422.",
                )
            },
        ),
        (
            "/v1/webhooks/{id}/messages/{message_id}/redeliver",
            "post",
            Op {
                parameters: vec![
                    id.clone(),
                    json!({
                        "name": "message_id",
                        "in": "path",
                        "required": true,
                        "description": "The message's id (its `webhook-id`).",
                        "schema": {"type": "string"},
                    }),
                ],
                status: 202,
                reply_description: "The message, queued again from the start of the retry \
                                    schedule with the same `webhook-id`.",
                reply: Some(message.clone()),
                errors: &[401, 403, 404, 409, 429],
                ..admin_op(
                    "redeliverWebhookMessage",
                    "Deliver a finished message again",
                    "409 while the message is still pending, when the endpoint is disabled \
                     or its backlog is full.",
                )
            },
        ),
        (
            "/v1/webhooks/{id}/replay",
            "post",
            Op {
                parameters: vec![id.clone()],
                body: Some(g.subschema_for::<Replay>()),
                status: 202,
                reply_description: "The endpoint with its cursor moved back: every retained \
                                    event after `since` is delivered again.",
                reply: Some(endpoint),
                errors: &[400, 401, 403, 404, 410, 413, 415, 422, 429],
                ..admin_op(
                    "replayWebhook",
                    "Deliver the events after a position again",
                    "410 when `since` is older than the retained log or from another log \
                     epoch; 422 when it is ahead of the log.",
                )
            },
        ),
        (
            "/v1/webhooks/{id}/test",
            "post",
            Op {
                parameters: vec![id],
                status: 202,
                reply_description: "A `webhook.test` message, queued for delivery.",
                reply: Some(message),
                errors: &[401, 403, 404, 409, 429],
                ..admin_op(
                    "testWebhook",
                    "Send a test event",
                    "409 when the endpoint is disabled or its backlog is full.",
                )
            },
        ),
        (
            "/v1/payments/webhook",
            "post",
            Op {
                id: "receivePaymentNotice",
                summary: "Receive a payment provider's notice",
                description: "Standard Webhooks, signed with the secret the server was \
                              given (`--payments-webhook-secret`); 503 when it has none. \
                              The signature is checked before the body is read (401). \
                              `payment.succeeded` approves the order, `payment.failed` \
                              records a failed payment; once per `webhook-id` (a repeat \
                              answers `duplicate: true`). Other types are acknowledged \
                              and ignored.",
                admin: false,
                parameters: signature_headers(),
                body: Some(schemars::json_schema!({
                    "type": "object",
                    "required": ["type"],
                    "properties": {
                        "type": {
                            "type": "string",
                            "description": "`payment.succeeded` or `payment.failed`; other \
                                            types are ignored.",
                        },
                        "data": {
                            "type": "object",
                            "required": ["order_id"],
                            "properties": {
                                "order_id": {"type": "string", "description": "`ord_…`"},
                                "reference": {"type": "string", "minLength": 1, "maxLength": 255},
                                "failure_reason": {"type": "string"},
                            },
                        },
                    },
                })),
                status: 200,
                reply_description: "Received: `{received, duplicate, order_id, \
                                    order_status}`, or `{received, ignored, detail}` for a \
                                    type this server does not handle.",
                reply: Some(schemars::json_schema!({
                    "type": "object",
                    "required": ["received"],
                    "properties": {
                        "received": {"type": "boolean"},
                        "duplicate": {"type": "boolean"},
                        "ignored": {"type": "boolean"},
                        "detail": {"type": "string"},
                        "order_id": {"type": "string"},
                        "order_status": {"type": "string"},
                    },
                })),
                reply_headers: &[],
                links: &[],
                errors: &[400, 401, 404, 409, 413, 422, 429],
            },
        ),
    ]
}

/// The `webhooks` section: one entry per event type (and the test event), the POST
/// this server sends to every endpoint subscribed to it.
fn deliveries(g: &mut SchemaGenerator) -> Map<String, Value> {
    let event = g.subschema_for::<Event>();
    let mut parameters = signature_headers();
    parameters.push(json!({
        "name": "traceparent",
        "in": "header",
        "required": false,
        "description": "W3C trace context of the write that caused the event, when it had one.",
        "schema": {"type": "string"},
    }));
    let responses = json!({
        "2XX": {"description": "Delivered: the message succeeds and is not sent again."},
        "410": {"description": "Gone: the endpoint is disabled and its pending messages \
                                cancelled."},
        "default": {"description": "Any other answer, a timeout or a refused connection: \
                                    retried with back-off (`Retry-After` is honoured up to a \
                                    cap); an endpoint failing for days is disabled."},
    });
    let mut out = Map::new();
    for t in EventType::ALL {
        let body = schemars::json_schema!({
            "allOf": [
                event.clone(),
                {
                    "type": "object",
                    "required": ["type", "timestamp"],
                    "properties": {
                        "type": {"const": t.as_str()},
                        "timestamp": {
                            "type": "string",
                            "format": "date-time",
                            "description": "The event time (the same as `time`).",
                        },
                    },
                },
            ],
        });
        out.insert(
            t.as_str().to_owned(),
            json!({"post": {
                "summary": format!("`{}` delivered to an endpoint", t.as_str()),
                "description": "The event's CloudEvents envelope plus `timestamp`, POSTed \
                                as `application/json` to every enabled endpoint whose \
                                `events` match its type, in log order per endpoint. The \
                                same message keeps its `webhook-id` on every retry.",
                "tags": ["webhooks"],
                "parameters": parameters,
                "requestBody": {"required": true, "content": {"application/json": {"schema": body}}},
                "responses": responses,
            }}),
        );
    }
    let test = schemars::json_schema!({
        "type": "object",
        "required": ["type", "timestamp", "id", "source", "time", "subject", "data"],
        "properties": {
            "type": {"const": TEST_EVENT_TYPE},
            "timestamp": {"type": "string", "format": "date-time"},
            "id": {"type": "string", "description": "`test_…`"},
            "source": {"type": "string"},
            "time": {"type": "string", "format": "date-time"},
            "subject": {"type": "string", "description": "The endpoint's id."},
            "data": {
                "type": "object",
                "required": ["endpoint_id", "message"],
                "properties": {
                    "endpoint_id": {"type": "string"},
                    "message": {"type": "string"},
                },
            },
        },
        "description": "Not an event of the log: it has no `offset`, so it cannot be replayed.",
    });
    out.insert(
        TEST_EVENT_TYPE.to_owned(),
        json!({"post": {
            "summary": "A test event, sent by `POST /v1/webhooks/{id}/test`",
            "tags": ["webhooks"],
            "parameters": parameters,
            "requestBody": {"required": true, "content": {"application/json": {"schema": test}}},
            "responses": responses,
        }}),
    );
    out
}

/// The OpenAPI 3.1 fragment of [`crate::Webhooks::router`]: its paths, the outbound
/// deliveries as the document's `webhooks` section, a `webhooks` tag and the schemas
/// they use.
///
/// Meant to be merged into the REST document (`petstore_rest::RestConfig::openapi_fragment`):
/// it refers to that document's shared components (the error responses, the
/// `X-Request-Id` parameter and headers, the `bearerAuth` scheme).
pub fn openapi_fragment() -> Value {
    let mut g: SchemaGenerator = SchemaSettings::draft2020_12()
        .with(|s| {
            s.definitions_path = "/components/schemas".into();
            s.meta_schema = None;
        })
        .into_generator();
    let mut paths = Map::new();
    for (path, method, op) in operations(&mut g) {
        let item = paths.entry(path).or_insert_with(|| json!({}));
        item[method] = op.into_json();
    }
    let webhooks = deliveries(&mut g);
    json!({
        "tags": [{
            "name": "webhooks",
            "description": "Outbound webhooks (Standard Webhooks signatures, retries, an \
                            attempt log, replay) and the inbound payments webhook.",
        }],
        "paths": paths,
        "webhooks": webhooks,
        "components": {"schemas": g.take_definitions(true)},
    })
}
