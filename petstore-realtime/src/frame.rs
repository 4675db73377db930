//! The JSON text frames of the WebSocket protocol.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use axum::extract::ws::Utf8Bytes;
use petstore_core::{
    Channel, ChatMessage, Event, EventData, FieldError, NewChatMessage, OrderId, PetId,
    ROOM_PATTERN, ResumeToken,
};
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::WireError;
use crate::recent::Recent;

/// What a client sends. Every frame may also carry an `id` (any JSON value) that the
/// direct reply (`authenticated`, `subscribed`, `unsubscribed`, `chat.sent`, `pong`,
/// `error`) echoes.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(tag = "type")]
pub(crate) enum ClientFrame {
    /// Authenticates an anonymous connection.
    #[serde(rename = "auth")]
    Auth {
        /// A bearer token (JWT), with or without `Bearer `.
        token: String,
    },
    /// Follows a channel, optionally replaying what came after `since`.
    #[serde(rename = "subscribe")]
    Subscribe {
        /// `pets`, `orders`, `inventory`, `chat`, `pets/{id}`, `orders/{id}`, `chat/{room}`.
        #[schemars(schema_with = "channel_schema")]
        channel: String,
        /// A resume token (an event's `offset`, or a `subscribed` frame's `position`).
        #[serde(default)]
        #[schemars(with = "Option<ResumeToken>")]
        since: Option<String>,
    },
    /// Stops following a channel.
    #[serde(rename = "unsubscribe")]
    Unsubscribe {
        /// The channel.
        #[schemars(schema_with = "channel_schema")]
        channel: String,
    },
    /// Posts a chat message (needs `chat:write`).
    #[serde(rename = "chat.send")]
    ChatSend {
        /// The room, e.g. `support`.
        #[schemars(schema_with = "chat_room_schema")]
        room: String,
        /// The text (it may span lines).
        #[schemars(schema_with = "chat_text_schema")]
        text: String,
    },
    /// Asks for a `pong`.
    #[serde(rename = "ping")]
    Ping,
}

/// The `type` of the client frames that change something (they need a scope, checked
/// before the rest of the frame is read).
pub(crate) const CHAT_SEND: &str = "chat.send";

/// What [`parse`] found in a text frame.
#[derive(Debug)]
pub(crate) struct Parsed {
    /// The frame's `id`, echoed by the direct reply.
    pub(crate) id: Option<Value>,
    /// The frame's `type`, when it has one.
    pub(crate) kind: Option<String>,
    /// The frame, or why it is bad.
    pub(crate) frame: Result<ClientFrame, WireError>,
}

/// Parses a text frame into its `id` (if any) and the frame, or the reason it is bad.
pub(crate) fn parse(text: &str) -> Parsed {
    let (id, kind, frame) = parse_parts(text);
    Parsed { id, kind, frame }
}

fn parse_parts(
    text: &str,
) -> (
    Option<Value>,
    Option<String>,
    Result<ClientFrame, WireError>,
) {
    let mut value: Value = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(e) => {
            return (
                None,
                None,
                Err(WireError::bad_request(format!(
                    "the frame is not JSON: {e}"
                ))),
            );
        }
    };
    let Some(object) = value.as_object_mut() else {
        return (
            None,
            None,
            Err(WireError::bad_request(
                "a frame must be a JSON object with a `type`",
            )),
        );
    };
    let id = object.remove("id");
    let kind = object
        .get("type")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let frame = match object.get("type") {
        None => Err(WireError::bad_request("the frame has no `type`")),
        Some(Value::String(_)) => serde_json::from_value(value)
            .map_err(|e| WireError::bad_request(format!("bad frame: {e}"))),
        Some(_) => Err(WireError::bad_request("`type` must be a string")),
    };
    (id, kind, frame)
}

/// What the server sends.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(tag = "type")]
pub(crate) enum ServerFrame<'a> {
    /// The `auth` frame was accepted.
    #[serde(rename = "authenticated")]
    Authenticated {
        /// The `id` of the client frame this answers, when it had one.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a Value>,
        /// The token subject.
        subject: &'a str,
        /// The granted scopes.
        scopes: Vec<&'static str>,
    },
    /// A subscription is active.
    #[serde(rename = "subscribed")]
    Subscribed {
        /// The `id` of the client frame this answers, when it had one.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a Value>,
        /// The channel.
        #[schemars(schema_with = "channel_schema")]
        channel: &'a Channel,
        /// The subscription delivers every event after this resume token.
        position: ResumeToken,
        /// True when `since` was given and honoured (the missed events follow).
        recovered: bool,
    },
    /// A subscription ended.
    #[serde(rename = "unsubscribed")]
    Unsubscribed {
        /// The `id` of the client frame this answers, when it had one.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a Value>,
        /// The channel.
        #[schemars(schema_with = "channel_schema")]
        channel: &'a Channel,
    },
    /// An event on a subscribed channel.
    #[serde(rename = "event")]
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "`delivery` writes it around the cached envelope")
    )]
    Event {
        /// The channel.
        #[schemars(schema_with = "channel_schema")]
        channel: &'a Channel,
        /// The envelope (its `offset` resumes the channel).
        event: &'a Event,
    },
    /// A chat message on a subscribed chat channel.
    #[serde(rename = "chat.message")]
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "`delivery` writes it around the cached envelope")
    )]
    ChatMessage {
        /// The channel.
        #[schemars(schema_with = "channel_schema")]
        channel: &'a Channel,
        /// The message (the event's `data`).
        message: &'a ChatMessage,
        /// The whole envelope (its `offset` resumes the channel).
        event: &'a Event,
    },
    /// The sender's `chat.send` was stored.
    #[serde(rename = "chat.sent")]
    ChatSent {
        /// The `id` of the client frame this answers, when it had one.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a Value>,
        /// The stored message.
        message: &'a ChatMessage,
    },
    /// A frame could not be honoured. The connection stays open.
    #[serde(rename = "error")]
    Error {
        /// The `id` of the client frame this answers, when it had one.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a Value>,
        /// The error code, as in problem+json `code` (`bad_request`, `invalid_input`,
        /// `unauthenticated`, `forbidden`, `not_found`, `resume_expired`, ...).
        code: &'a str,
        /// What went wrong, for people.
        message: &'a str,
        /// The channel the failed frame named.
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schemars(schema_with = "channel_schema")]
        channel: Option<&'a Channel>,
        /// The invalid fields of an `invalid_input` error.
        #[serde(skip_serializing_if = "<[FieldError]>::is_empty")]
        errors: &'a [FieldError],
        /// For `resume_expired`: why (`expired`, `epoch_mismatch`).
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schemars(with = "Option<petstore_core::ResetReason>")]
        reason: Option<&'a str>,
        /// For `resume_expired`: the live subscription starts after this token.
        #[serde(skip_serializing_if = "Option::is_none")]
        resume_from: Option<ResumeToken>,
    },
    /// The reply to `ping`.
    #[serde(rename = "pong")]
    Pong {
        /// The `id` of the client frame this answers, when it had one.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a Value>,
    },
}

impl ServerFrame<'_> {
    /// The frame as JSON text.
    pub(crate) fn to_text(&self) -> String {
        // Plain data: serialising into a String cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The frame that carries `event` to a subscriber of `channel`: `chat.message` for
/// chat messages, `event` for everything else.
///
/// Built around the event's cached JSON ([`Event::json`]), so that an event going to
/// thousands of subscribers is serialised once, not once per subscriber. The text is
/// the same as serialising [`ServerFrame::Event`] / [`ServerFrame::ChatMessage`] (a
/// test holds them together).
pub(crate) fn delivery(channel: &Channel, event: &Event) -> String {
    let envelope = event.json();
    // A channel name or a chat message cannot fail to serialise.
    let channel = serde_json::to_string(channel).unwrap_or_default();
    let message = match event.data() {
        EventData::ChatMessage(m) => Some(serde_json::to_string(m).unwrap_or_default()),
        _ => None,
    };
    let mut out = String::with_capacity(
        envelope.len() + channel.len() + message.as_ref().map_or(0, String::len) + 48,
    );
    match &message {
        Some(message) => {
            out.push_str(r#"{"type":"chat.message","channel":"#);
            out.push_str(&channel);
            out.push_str(r#","message":"#);
            out.push_str(message);
        }
        None => {
            out.push_str(r#"{"type":"event","channel":"#);
            out.push_str(&channel);
        }
    }
    out.push_str(r#","event":"#);
    out.push_str(envelope);
    out.push('}');
    out
}

/// The `event` frames built most recently, per channel. Every subscriber of a channel
/// gets the same text for the same event, so during a fan-out a frame is built by the
/// first connection that delivers it and shared (a reference count, no copy) by the
/// others. Subscribers are a few events apart at any moment, so each channel keeps
/// its last [`FrameCache::PER_CHANNEL`] frames.
#[derive(Debug, Default)]
pub(crate) struct FrameCache(Mutex<Frames>);

#[derive(Debug, Default)]
struct Frames {
    by_channel: HashMap<Channel, Recent<Utf8Bytes>>,
    total: usize,
}

impl FrameCache {
    /// Frames kept per channel: more than the events one connection may have queued.
    const PER_CHANNEL: usize = 128;
    /// Frames kept in all (about 1 MB of typical frames); past it the cache starts over.
    const TOTAL: usize = 2048;

    /// The frame of [`delivery`], shared.
    pub(crate) fn delivery(&self, channel: &Channel, event: &Event) -> Utf8Bytes {
        let lock = || self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let at = event.offset();
        if let Some(text) = lock().by_channel.get(channel).and_then(|r| r.get(at)) {
            return text;
        }
        // Built outside the lock; two connections may both build it, which is harmless.
        let text = Utf8Bytes::from(delivery(channel, event));
        let mut frames = lock();
        if frames.total >= Self::TOTAL {
            *frames = Frames::default();
        }
        let Frames { by_channel, total } = &mut *frames;
        let recent = by_channel.entry(channel.clone()).or_default();
        if recent.keep(at, text.clone(), Self::PER_CHANNEL) {
            *total += 1;
        }
        text
    }
}

/// The `error` frame for `error`.
pub(crate) fn error(id: Option<&Value>, channel: Option<&Channel>, error: &WireError) -> String {
    ServerFrame::Error {
        id,
        code: error.code,
        message: &error.message,
        channel,
        errors: &error.fields,
        reason: None,
        resume_from: None,
    }
    .to_text()
}

/// `pets`, `orders`, `inventory`, `chat`, `pets/{id}`, `orders/{id}`, `chat/{room}`.
fn channel_schema(_: &mut SchemaGenerator) -> Schema {
    let unanchored = |p: &'static str| p.trim_start_matches('^').trim_end_matches('$');
    json_schema!({
        "type": "string",
        "description": "`pets`, `orders`, `inventory`, `chat`, `pets/{id}`, `orders/{id}` or `chat/{room}`.",
        "pattern": format!(
            "^(?:pets|orders|inventory|chat|pets/{}|orders/{}|chat/{})$",
            unanchored(PetId::PATTERN),
            unanchored(OrderId::PATTERN),
            unanchored(ROOM_PATTERN),
        ),
        "examples": ["pets", "orders", "chat/support"],
    })
}

/// The schema of a property of [`NewChatMessage`]: `chat.send` states the rules the
/// core checks, from the one place they are declared.
fn new_chat_message_property(g: &mut SchemaGenerator, name: &str) -> Schema {
    let schema = NewChatMessage::json_schema(g);
    schema
        .get("properties")
        .and_then(|p| p.get(name))
        .cloned()
        .and_then(|v| Schema::try_from(v).ok())
        .unwrap_or_else(|| panic!("NewChatMessage has no property {name}"))
}

fn chat_room_schema(g: &mut SchemaGenerator) -> Schema {
    new_chat_message_property(g, "room")
}

fn chat_text_schema(g: &mut SchemaGenerator) -> Schema {
    new_chat_message_property(g, "text")
}

/// The JSON Schemas of the WebSocket frames, one per frame `type`, for API documents
/// (the server's AsyncAPI document uses them). Derived from the types the connection
/// handler reads and writes, so they cannot drift from the wire.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FrameSchemas {
    /// What a client may send, by `type` (`auth`, `subscribe`, ...), in that order.
    pub client: Vec<(String, Value)>,
    /// What the server sends, by `type` (`authenticated`, `event`, ...).
    pub server: Vec<(String, Value)>,
    /// The schemas they refer to as `#/$defs/<name>`.
    pub definitions: Map<String, Value>,
}

/// The schemas of [`FrameSchemas`].
pub fn frame_schemas() -> FrameSchemas {
    let mut definitions = Map::new();
    let mut client = variants::<ClientFrame>(
        SchemaSettings::draft2020_12().for_deserialize(),
        &mut definitions,
    );
    // The connection reads `id` before the frame itself (any JSON value, echoed).
    for (_, schema) in &mut client {
        if let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) {
            properties.insert(
                "id".into(),
                serde_json::json!({
                    "description": "Any JSON value; the direct reply (`authenticated`, `subscribed`, `unsubscribed`, `chat.sent`, `pong`, `error`) echoes it."
                }),
            );
        }
    }
    let server = variants::<ServerFrame<'static>>(
        SchemaSettings::draft2020_12().for_serialize(),
        &mut definitions,
    );
    FrameSchemas {
        client,
        server,
        definitions,
    }
}

/// The `oneOf` alternatives of a tagged enum's schema, by their `type` constant.
fn variants<T: JsonSchema>(
    settings: SchemaSettings,
    definitions: &mut Map<String, Value>,
) -> Vec<(String, Value)> {
    let mut schema = SchemaGenerator::new(settings)
        .into_root_schema_for::<T>()
        .to_value();
    if let Some(Value::Object(defs)) = schema.as_object_mut().and_then(|s| s.remove("$defs")) {
        definitions.extend(defs);
    }
    let alternatives = schema
        .get("oneOf")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    alternatives
        .into_iter()
        .map(|v| {
            let kind = v
                .pointer("/properties/type/const")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            (kind, v)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_are_the_serialised_frames() {
        use petstore_core::backend::NewEvent;
        use petstore_core::chrono::Utc;
        use petstore_core::{Currency, MessageId, Money, NewPet, ResumeToken};
        let at = ResumeToken::new(1, 1);
        let rex = NewPet {
            name: "Rex \"the\" dog".into(),
            species: "dog".into(),
            breed: None,
            age: None,
            status: None,
            tags: vec![],
            photo_urls: vec![],
            price: Money::parse("1.00", Currency::USD).unwrap(),
        }
        .into_pet(Utc::now());
        let pet = NewEvent::new(EventData::PetCreated(rex)).sequenced("/petstore", Utc::now(), at);
        let message = ChatMessage {
            id: MessageId::generate(),
            room: "lobby".into(),
            author: "alice".into(),
            text: "hi\n".into(),
            sent_at: Utc::now(),
        };
        let chat = NewEvent::new(EventData::ChatMessage(message.clone())).sequenced(
            "/petstore",
            Utc::now(),
            at,
        );
        let pets = Channel::Pets;
        let room = Channel::ChatRoom("lobby".into());
        assert_eq!(
            delivery(&pets, &pet),
            ServerFrame::Event {
                channel: &pets,
                event: &pet
            }
            .to_text()
        );
        assert_eq!(
            delivery(&room, &chat),
            ServerFrame::ChatMessage {
                channel: &room,
                message: &message,
                event: &chat
            }
            .to_text()
        );
        let parsed: Value = serde_json::from_str(&delivery(&pets, &pet)).unwrap();
        // The cache hands out the same text, built once per channel and event.
        let cache = FrameCache::default();
        let first = cache.delivery(&pets, &pet);
        assert_eq!(first.as_str(), delivery(&pets, &pet));
        assert_eq!(cache.delivery(&pets, &pet).as_ptr(), first.as_ptr());
        assert_eq!(
            cache.delivery(&room, &chat).as_str(),
            delivery(&room, &chat)
        );
        assert_eq!(parsed["event"]["data"]["name"], "Rex \"the\" dog");
    }

    #[test]
    fn frames_parse_with_ids_and_bad_ones_say_why() {
        let parsed = parse(r#"{"type":"subscribe","channel":"orders","id":7}"#);
        assert_eq!(parsed.id, Some(Value::from(7)));
        assert_eq!(parsed.kind.as_deref(), Some("subscribe"));
        assert_eq!(
            parsed.frame.unwrap(),
            ClientFrame::Subscribe {
                channel: "orders".into(),
                since: None
            }
        );
        assert_eq!(
            parse(r#"{"type":"ping"}"#).frame.unwrap(),
            ClientFrame::Ping
        );
        // Unknown fields are ignored, so that clients may add their own.
        assert_eq!(
            parse(r#"{"type":"ping","trace":"abc"}"#).frame.unwrap(),
            ClientFrame::Ping
        );
        assert_eq!(
            parse(r#"{"type":"subscribe","channel":"pets","since":null}"#)
                .frame
                .unwrap(),
            ClientFrame::Subscribe {
                channel: "pets".into(),
                since: None
            }
        );
        for (bad, needle) in [
            ("nope", "not JSON"),
            ("[1]", "JSON object"),
            (r#"{"channel":"pets"}"#, "no `type`"),
            (r#"{"type":1}"#, "must be a string"),
            (r#"{"type":"dance"}"#, "unknown variant"),
            (r#"{"type":"subscribe"}"#, "missing field `channel`"),
        ] {
            let err = parse(bad).frame.unwrap_err();
            assert_eq!(err.code, "bad_request");
            assert!(err.message.contains(needle), "{bad}: {}", err.message);
        }
    }
}
