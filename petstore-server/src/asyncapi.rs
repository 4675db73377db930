//! The AsyncAPI 3.0 document of the server's push channels: Server-Sent
//! Events, WebSocket, MQTT and webhooks. Served at `/asyncapi.json` beside the REST
//! adapter's `/openapi.json`. Payload schemas come from the core types (schemars), so
//! they cannot drift from what the adapters send.

use axum::Router;
use axum::routing::get;
use serde_json::{Map, Value, json};

fn schema_of<T: schemars::JsonSchema>() -> Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(T)).unwrap_or_default();
    // Nested definitions move to components, and references follow them there.
    if let Some(obj) = schema.as_object_mut() {
        obj.remove("$schema");
        obj.remove("$defs");
    }
    rewrite_refs(&mut schema);
    schema
}

fn defs_of<T: schemars::JsonSchema>(into: &mut Map<String, Value>) {
    let schema = serde_json::to_value(schemars::schema_for!(T)).unwrap_or_default();
    if let Some(defs) = schema.get("$defs").and_then(Value::as_object) {
        for (name, def) in defs {
            let mut def = def.clone();
            rewrite_refs(&mut def);
            into.insert(name.clone(), def);
        }
    }
}

fn rewrite_refs(v: &mut Value) {
    match v {
        Value::Object(obj) => {
            if let Some(Value::String(r)) = obj.get_mut("$ref")
                && let Some(name) = r.strip_prefix("#/$defs/")
            {
                *r = format!("#/components/schemas/{name}");
            }
            obj.values_mut().for_each(rewrite_refs);
        }
        Value::Array(items) => items.iter_mut().for_each(rewrite_refs),
        _ => {}
    }
}

/// The message name of a WebSocket frame type: `chat.send` is `WsChatSend`.
fn frame_message_name(kind: &str) -> String {
    let mut name = String::from("Ws");
    for part in kind.split(['.', '_']) {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            name.extend(first.to_uppercase());
            name.push_str(chars.as_str());
        }
    }
    name
}

/// The document.
pub fn document() -> Value {
    let mut schemas = Map::new();
    schemas.insert("Event".into(), schema_of::<petstore_core::Event>());
    defs_of::<petstore_core::Event>(&mut schemas);
    schemas.insert(
        "ChatMessage".into(),
        schema_of::<petstore_core::ChatMessage>(),
    );
    defs_of::<petstore_core::ChatMessage>(&mut schemas);
    schemas.insert("Inventory".into(), schema_of::<petstore_core::Inventory>());
    schemas.insert("NewOrder".into(), schema_of::<petstore_core::NewOrder>());
    defs_of::<petstore_core::NewOrder>(&mut schemas);
    schemas.insert(
        "ResumeToken".into(),
        schema_of::<petstore_core::ResumeToken>(),
    );
    schemas.insert(
        "ResetReason".into(),
        schema_of::<petstore_core::ResetReason>(),
    );
    let event = json!({"$ref": "#/components/schemas/Event"});
    // The WebSocket frames: schemas derived from the types the connection reads and
    // writes (petstore-realtime), one message per frame `type`.
    let frames = petstore_realtime::frame_schemas();
    for (name, def) in frames.definitions {
        let mut def = def;
        rewrite_refs(&mut def);
        schemas.entry(name).or_insert(def);
    }
    let named = |frames: Vec<(String, Value)>| -> Vec<(String, Value)> {
        frames
            .into_iter()
            .map(|(kind, mut schema)| {
                rewrite_refs(&mut schema);
                (frame_message_name(&kind), schema)
            })
            .collect()
    };
    let client_frames = named(frames.client);
    let server_frames = named(frames.server);

    let mut messages = Map::new();
    messages.insert(
        "Event".into(),
        json!({
            "name": "Event",
            "title": "Domain event (CloudEvents 1.0 envelope + offset)",
            "contentType": "application/json",
            "payload": event,
        }),
    );
    for (name, payload) in client_frames.iter().chain(server_frames.iter()) {
        messages.insert(
            name.clone(),
            json!({"name": name, "contentType": "application/json", "payload": payload}),
        );
    }
    // Server-Sent Events in the default form: no `event:` line, so that a browser's
    // `onmessage` receives every message; the data's `type` tells them apart.
    let sse_reset = json!({"type": "object", "required": ["type", "reason", "message", "resume_from"], "properties": {
        "type": {"const": "reset"},
        "reason": {"$ref": "#/components/schemas/ResetReason"},
        "message": {"type": "string"},
        "resume_from": {"$ref": "#/components/schemas/ResumeToken"},
    }});
    let sse_error = json!({"type": "object", "required": ["type", "code", "message", "resume_from"], "properties": {
        "type": {"const": "error"},
        "code": {"const": "lagged"},
        "message": {"type": "string"},
        "resume_from": {"$ref": "#/components/schemas/ResumeToken"},
    }});
    messages.insert("SseEvent".into(), json!({
        "name": "SseEvent",
        "title": "One Server-Sent Event (default form)",
        "summary": "`id:` = the resume token, `data:` = the envelope, whose `type` names the event; no `event:` line, so `EventSource.onmessage` receives every message. A resume that cannot be honoured is a message too, data `{\"type\":\"reset\",...}`; a client that fell behind gets a last message `{\"type\":\"error\",\"code\":\"lagged\",...}`.",
        "contentType": "text/event-stream",
        "payload": {"oneOf": [event, sse_reset, sse_error]},
    }));
    messages.insert("SseNamedEvent".into(), json!({
        "name": "SseNamedEvent",
        "title": "One Server-Sent Event (?named_events=true)",
        "summary": "For `addEventListener` clients: as the default form, plus `event: <type>` (`pet.created`, ...); a reset is `event: reset` and the lag error `event: error`, with the same data.",
        "contentType": "text/event-stream",
        "payload": {"oneOf": [event, sse_reset, sse_error]},
    }));
    messages.insert("Inventory".into(), json!({"name": "Inventory", "contentType": "application/json", "payload": {"$ref": "#/components/schemas/Inventory"}}));
    messages.insert("Presence".into(), json!({"name": "Presence", "contentType": "text/plain", "payload": {"type": "string", "enum": ["online", "offline"]}}));
    messages.insert("PetStatusCommand".into(), json!({"name": "PetStatusCommand", "contentType": "application/json",
        "payload": {"type": "object", "properties": {"status": {"type": "string", "enum": ["available", "pending", "sold"]}}, "required": ["status"]},
        "correlationId": {"location": "$message.header#/correlationData"}}));
    messages.insert("PlaceOrderCommand".into(), json!({"name": "PlaceOrderCommand", "contentType": "application/json",
        "payload": {"$ref": "#/components/schemas/NewOrder"}, "correlationId": {"location": "$message.header#/correlationData"}}));
    messages.insert("CommandReply".into(), json!({"name": "CommandReply", "contentType": "application/json",
        "payload": {"type": "object", "properties": {"ok": {"type": "boolean"}, "result": {}, "error": {"type": "object", "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "fields": {"type": "array"}}}}, "required": ["ok"]},
        "correlationId": {"location": "$message.header#/correlationData"}}));
    messages.insert("WebhookDelivery".into(), json!({
        "name": "WebhookDelivery",
        "title": "Signed webhook (Standard Webhooks)",
        "contentType": "application/json",
        "headers": {"type": "object", "required": ["webhook-id", "webhook-timestamp", "webhook-signature"], "properties": {
            "webhook-id": {"type": "string", "description": "Stable across retries: deduplicate on it."},
            "webhook-timestamp": {"type": "string", "description": "Unix seconds."},
            "webhook-signature": {"type": "string", "description": "`v1,<base64 HMAC-SHA256 of id.timestamp.body>`; several space-separated during secret rotation."}
        }},
        "payload": {"allOf": [event, {"type": "object", "properties": {"timestamp": {"type": "string", "format": "date-time"}}, "required": ["timestamp"]}]},
    }));
    messages.insert("PaymentNotice".into(), json!({
        "name": "PaymentNotice",
        "contentType": "application/json",
        "headers": {"$ref": "#/components/messages/WebhookDelivery/headers"},
        "payload": {"type": "object", "required": ["type", "data"], "properties": {
            "type": {"type": "string", "enum": ["payment.succeeded", "payment.failed"]},
            "data": {"type": "object", "required": ["order_id"], "properties": {"order_id": {"type": "string"}, "reference": {"type": "string"}}}
        }},
    }));

    let msg = |name: &str| json!({"$ref": format!("#/components/messages/{name}")});
    let id_param = json!({"description": "A pet or order id."});
    let mut channels = Map::new();
    let mut operations = Map::new();
    let mut add = |id: &str,
                   address: &str,
                   servers: &[&str],
                   msgs: &[&str],
                   params: Option<Value>,
                   action: &str,
                   summary: &str| {
        let mut ch = json!({
            "address": address,
            "servers": servers.iter().map(|s| json!({"$ref": format!("#/servers/{s}")})).collect::<Vec<_>>(),
            "messages": msgs.iter().map(|m| ((*m).to_owned(), msg(m))).collect::<Map<_, _>>(),
        });
        if let Some(p) = params {
            ch["parameters"] = p;
        }
        channels.insert(id.to_owned(), ch);
        operations.insert(format!("{action}_{id}"), json!({
            "action": action,
            "channel": {"$ref": format!("#/channels/{id}")},
            "summary": summary,
            "messages": msgs.iter().map(|m| json!({"$ref": format!("#/channels/{id}/messages/{m}")})).collect::<Vec<_>>(),
        }));
    };
    add(
        "sse",
        "/v1/stream/{channel}",
        &["http"],
        &["SseEvent", "SseNamedEvent"],
        Some(
            json!({"channel": {"description": "pets, orders, inventory, chat, pets/{id}, orders/{id}, chat/{room}"}}),
        ),
        "receive",
        "Follow a channel over Server-Sent Events; resume with Last-Event-ID (or ?last_event_id=). /v1/stream?channels=a,b follows several. Messages carry no `event:` line (SseEvent: `onmessage` gets them all); ?named_events=true adds one (SseNamedEvent, for `addEventListener`).",
    );
    let ws_client: Vec<&str> = client_frames.iter().map(|(n, _)| n.as_str()).collect();
    let ws_server: Vec<&str> = server_frames.iter().map(|(n, _)| n.as_str()).collect();
    add(
        "ws",
        "/v1/ws",
        &["ws"],
        &ws_client,
        None,
        "send",
        "Client frames over /v1/ws?token=JWT (or a first `auth` frame); /v1/ws/chat subscribes to `chat` on connect.",
    );
    add(
        "wsServer",
        "/v1/ws",
        &["ws"],
        &ws_server,
        None,
        "receive",
        "Server frames over /v1/ws.",
    );
    add(
        "ordersNew",
        "petstore/orders/new",
        &["mqtt"],
        &["Event"],
        None,
        "receive",
        "order.created events (QoS 1).",
    );
    add(
        "orderStatus",
        "petstore/orders/{id}/status",
        &["mqtt"],
        &["Event"],
        Some(json!({"id": id_param})),
        "receive",
        "order.status_changed events of one order.",
    );
    add(
        "petsNew",
        "petstore/pets/new",
        &["mqtt"],
        &["Event"],
        None,
        "receive",
        "pet.created events.",
    );
    add(
        "petStatus",
        "petstore/pets/{id}/status",
        &["mqtt"],
        &["Event"],
        Some(json!({"id": id_param})),
        "receive",
        "Retained: the latest status event of a pet (empty retained message once deleted).",
    );
    add(
        "inventory",
        "petstore/inventory",
        &["mqtt"],
        &["Inventory"],
        None,
        "receive",
        "Retained inventory snapshot.",
    );
    add(
        "eventsByType",
        "petstore/events/{type}",
        &["mqtt"],
        &["Event"],
        Some(json!({"type": {"description": "An event type, e.g. order.created."}})),
        "receive",
        "Every event, by type. Over MQTT 5 with user properties event-type, offset, event-id (external brokers).",
    );
    add(
        "presence",
        "petstore/status",
        &["mqtt"],
        &["Presence"],
        None,
        "receive",
        "Retained bridge presence; Last Will `offline`.",
    );
    add(
        "petStatusCommand",
        "petstore/commands/pets/{id}/status",
        &["mqtt"],
        &["PetStatusCommand"],
        Some(json!({"id": id_param})),
        "send",
        "MQTT 5 request, run as the caller: the token in the user property `authorization` (`Bearer <jwt>`) needs `pets:write`; the reply goes to the response topic (under petstore/replies/{client id}/) with the correlation data.",
    );
    add(
        "placeOrderCommand",
        "petstore/commands/orders",
        &["mqtt"],
        &["PlaceOrderCommand"],
        None,
        "send",
        "MQTT 5 request: place an order as the caller (user property `authorization`, scope `orders:write`).",
    );
    add(
        "commandReply",
        "petstore/replies/{clientId}/{rest}",
        &["mqtt"],
        &["CommandReply"],
        Some(json!({
            "clientId": {"description": "The requesting client's MQTT client id: only that client reads it."},
            "rest": {"description": "Any further levels of the request's MQTT 5 response topic."},
        })),
        "receive",
        "Replies to commands; the bridge answers nowhere else.",
    );
    add(
        "webhooks",
        "{endpointUrl}",
        &["subscriber"],
        &["WebhookDelivery"],
        Some(json!({"endpointUrl": {"description": "A URL registered with POST /v1/webhooks."}})),
        "receive",
        "Outbound webhooks: HTTP POST to each registered endpoint whose event filter matches; 2xx acknowledges, others are retried with back-off, 410 disables the endpoint.",
    );
    add(
        "paymentsWebhook",
        "/v1/payments/webhook",
        &["http"],
        &["PaymentNotice"],
        None,
        "send",
        "Inbound payment-provider webhook, Standard Webhooks signed; applied once per webhook-id.",
    );

    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "Pet Store push channels",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Every push pattern of the Pet Store carries the same event envelope (CloudEvents 1.0 names plus `offset`, the resume token). See /openapi.json for request/response APIs.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "http": {"host": "127.0.0.1:8080", "protocol": "http", "description": "Server-Sent Events and inbound webhooks"},
            "ws": {"host": "127.0.0.1:8080", "protocol": "ws", "description": "WebSocket (JSON text frames)", "security": [{"$ref": "#/components/securitySchemes/bearer"}]},
            "mqtt": {"host": "127.0.0.1:1883", "protocol": "mqtt", "protocolVersion": "5", "description": "Embedded rumqttd broker (or --mqtt-url): a JWT as the password, or anonymous (pet topics only); only the server publishes under petstore/"},
            "subscriber": {"host": "subscriber.example", "protocol": "https", "description": "Webhook receivers"},
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": schemas,
            "messages": messages,
            "securitySchemes": {"bearer": {"type": "httpBearerToken", "bearerFormat": "JWT", "description": "HS256 JWT with claims sub, scope, exp; `?token=` on WebSocket and SSE."}},
        },
    })
}

/// `GET /asyncapi.json`.
pub fn router() -> Router {
    let doc = std::sync::Arc::new(document());
    Router::new().route(
        "/asyncapi.json",
        get(move || async move { axum::Json(doc.as_ref().clone()) }),
    )
}
