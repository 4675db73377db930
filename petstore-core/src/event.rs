//! The event envelope every push pattern carries (CloudEvents 1.0 field names plus
//! `offset`), resume tokens, channels and filters.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::id::EventId;

/// The kinds of domain event.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[non_exhaustive]
pub enum EventType {
    /// A pet was added; `data` is the pet.
    #[serde(rename = "pet.created")]
    PetCreated,
    /// A pet's fields changed; `data` is the pet.
    #[serde(rename = "pet.updated")]
    PetUpdated,
    /// A pet's status changed; `data` is the pet plus `previous_status`.
    #[serde(rename = "pet.status_changed")]
    PetStatusChanged,
    /// A pet was removed; `data` is the pet as it was.
    #[serde(rename = "pet.deleted")]
    PetDeleted,
    /// An order was placed; `data` is the order.
    #[serde(rename = "order.created")]
    OrderCreated,
    /// An order's status changed; `data` is the order plus `previous_status`.
    #[serde(rename = "order.status_changed")]
    OrderStatusChanged,
    /// A payment succeeded; `data` is the payment.
    #[serde(rename = "payment.succeeded")]
    PaymentSucceeded,
    /// A payment failed; `data` is the payment.
    #[serde(rename = "payment.failed")]
    PaymentFailed,
    /// A chat message was posted; `data` is the message.
    #[serde(rename = "chat.message")]
    ChatMessage,
}

impl EventType {
    /// Every event type.
    pub const ALL: [EventType; 9] = [
        EventType::PetCreated,
        EventType::PetUpdated,
        EventType::PetStatusChanged,
        EventType::PetDeleted,
        EventType::OrderCreated,
        EventType::OrderStatusChanged,
        EventType::PaymentSucceeded,
        EventType::PaymentFailed,
        EventType::ChatMessage,
    ];

    /// The wire name, e.g. `"order.created"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventType::PetCreated => "pet.created",
            EventType::PetUpdated => "pet.updated",
            EventType::PetStatusChanged => "pet.status_changed",
            EventType::PetDeleted => "pet.deleted",
            EventType::OrderCreated => "order.created",
            EventType::OrderStatusChanged => "order.status_changed",
            EventType::PaymentSucceeded => "payment.succeeded",
            EventType::PaymentFailed => "payment.failed",
            EventType::ChatMessage => "chat.message",
        }
    }

    /// Whether this type changes the pet counts of the inventory.
    pub const fn affects_inventory(self) -> bool {
        matches!(
            self,
            EventType::PetCreated | EventType::PetStatusChanged | EventType::PetDeleted
        )
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        EventType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| Error::invalid_field("types", format!("unknown event type `{s}`")))
    }
}

/// A position in the event log: the log's generation (`epoch`) and the offset of the
/// last event seen. Its string form is the opaque resume token used by SSE ids,
/// WebSocket `since`, MQTT user properties, webhook replays, polling cursors and
/// GraphQL/gRPC subscriptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResumeToken {
    /// The log generation; a token from another epoch cannot resume.
    pub epoch: u64,
    /// The offset of the last event the holder has seen (0: none).
    pub offset: u64,
}

impl ResumeToken {
    /// A token at `offset` of `epoch`.
    pub const fn new(epoch: u64, offset: u64) -> Self {
        Self { epoch, offset }
    }
}

impl fmt::Display for ResumeToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}-{}", self.epoch, self.offset)
    }
}

impl FromStr for ResumeToken {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::invalid_field(
                "since",
                format!("`{}` is not a resume token", truncate(s, 64)),
            )
        };
        let (epoch, offset) = s.split_once('-').ok_or_else(bad)?;
        // Exactly the schema's pattern: lower-case hex, then at most 19 digits (no sign;
        // `u64` holds every such offset).
        let hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        if epoch.len() != 16
            || !epoch.bytes().all(hex)
            || !(1..=19).contains(&offset.len())
            || !offset.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        Ok(Self {
            epoch: u64::from_str_radix(epoch, 16).map_err(|_| bad())?,
            offset: offset.parse().map_err(|_| bad())?,
        })
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

impl Serialize for ResumeToken {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ResumeToken {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse()
            .map_err(|e: Error| serde::de::Error::custom(e.reason()))
    }
}

impl JsonSchema for ResumeToken {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ResumeToken".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "Opaque resume token: a position in the event log.",
            "pattern": "^[0-9a-f]{16}-[0-9]{1,19}$"
        })
    }
}

/// The envelope of a domain event: CloudEvents 1.0 JSON field names plus `offset`,
/// the resume token just after this event.
///
/// Build one with [`crate::envelope`]. Events in the log are shared as `Arc<Event>` and
/// never change, so [`Event::json`] serialises each of them once, however many
/// subscribers and protocols deliver it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[non_exhaustive]
pub struct Event {
    /// CloudEvents spec version, always `"1.0"`.
    pub specversion: String,
    /// Unique id (`evt_…`), stable wherever the event is delivered.
    pub id: EventId,
    /// The event type, e.g. `order.created`.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// The producing service (URI reference), e.g. `/petstore`.
    pub source: String,
    /// When it happened.
    pub time: DateTime<Utc>,
    /// The id of the resource it is about (`pet_…`, `ord_…`, or the chat room).
    pub subject: String,
    /// The resume token of this event: resuming from it yields the events after it.
    pub offset: ResumeToken,
    /// Always `application/json`.
    pub datacontenttype: String,
    /// The payload (the resource after the change).
    pub data: serde_json::Value,
    /// The envelope's JSON text, filled by the first [`Event::json`].
    #[serde(skip)]
    #[schemars(skip)]
    json: JsonCache,
}

/// The cached JSON text of an [`Event`]. It is not part of the event's value: it
/// compares equal, prints as `..`, and a clone starts empty (a clone may be changed).
#[derive(Default)]
struct JsonCache(OnceLock<Arc<str>>);

impl Clone for JsonCache {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl PartialEq for JsonCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl fmt::Debug for JsonCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("..")
    }
}

impl Event {
    /// The channels this event is published on, most specific last:
    /// `pets` + `pets/{id}` (+ `inventory`), `orders` + `orders/{id}`, `chat` + `chat/{room}`.
    pub fn channels(&self) -> Vec<Channel> {
        let mut out = Vec::with_capacity(3);
        match self.event_type {
            EventType::PetCreated
            | EventType::PetUpdated
            | EventType::PetStatusChanged
            | EventType::PetDeleted => {
                out.push(Channel::Pets);
                if self.event_type.affects_inventory() {
                    out.push(Channel::Inventory);
                }
                out.push(Channel::Pet(self.subject.clone()));
            }
            EventType::OrderCreated | EventType::OrderStatusChanged => {
                out.push(Channel::Orders);
                out.push(Channel::Order(self.subject.clone()));
            }
            EventType::PaymentSucceeded | EventType::PaymentFailed => {
                out.push(Channel::Orders);
                if let Some(order) = self.data.get("order_id").and_then(|v| v.as_str()) {
                    out.push(Channel::Order(order.to_owned()));
                }
            }
            EventType::ChatMessage => {
                out.push(Channel::Chat);
                out.push(Channel::ChatRoom(self.subject.clone()));
            }
        }
        out
    }

    /// Whether this event is published on `channel`.
    pub fn is_on(&self, channel: &Channel) -> bool {
        match (channel, self.event_type) {
            (Channel::Pets, t) => t.as_str().starts_with("pet."),
            (Channel::Inventory, t) => t.affects_inventory(),
            (Channel::Pet(id), t) => t.as_str().starts_with("pet.") && &self.subject == id,
            (Channel::Orders, t) => {
                t.as_str().starts_with("order.") || t.as_str().starts_with("payment.")
            }
            (Channel::Order(id), EventType::OrderCreated | EventType::OrderStatusChanged) => {
                &self.subject == id
            }
            (Channel::Order(id), EventType::PaymentSucceeded | EventType::PaymentFailed) => {
                self.data.get("order_id").and_then(|v| v.as_str()) == Some(id.as_str())
            }
            (Channel::Chat, t) => t == EventType::ChatMessage,
            (Channel::ChatRoom(room), EventType::ChatMessage) => &self.subject == room,
            _ => false,
        }
    }

    /// Builds an envelope. The log sets `offset` when it appends the event; most code
    /// gets events from the log rather than building them.
    pub fn new(
        event_type: EventType,
        subject: impl Into<String>,
        data: serde_json::Value,
        source: impl Into<String>,
        time: DateTime<Utc>,
    ) -> Self {
        Self {
            specversion: "1.0".to_owned(),
            id: EventId::generate(),
            event_type,
            source: source.into(),
            time,
            subject: subject.into(),
            offset: ResumeToken::new(0, 0),
            datacontenttype: "application/json".to_owned(),
            data,
            json: JsonCache::default(),
        }
    }

    /// The envelope as JSON text, serialised on the first call and shared after that
    /// (cloning the `Arc` copies no text). Every push adapter sends these bytes, so an
    /// event delivered to 5,000 subscribers is serialised once.
    ///
    /// The text is fixed at the first call: an event you build and then change must be
    /// serialised after the last change (events from the log never change).
    pub fn json(&self) -> &Arc<str> {
        // Serialising plain data into a String cannot fail.
        self.json
            .0
            .get_or_init(|| serde_json::to_string(self).unwrap_or_default().into())
    }

    /// The envelope as a new JSON `String` (a copy of [`Event::json`]).
    pub fn to_json(&self) -> String {
        self.json().to_string()
    }
}

/// A named stream of events that realtime clients subscribe to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Channel {
    /// Every pet event.
    Pets,
    /// Events of one pet (`pets/{id}`).
    Pet(String),
    /// Every order and payment event.
    Orders,
    /// Events of one order (`orders/{id}`).
    Order(String),
    /// Events that change the inventory counts.
    Inventory,
    /// Every chat message.
    Chat,
    /// Messages of one room (`chat/{room}`).
    ChatRoom(String),
}

impl Channel {
    /// The scope needed to read this channel (chat needs only a valid token, see
    /// [`crate::PetStore::authorize_channel`]).
    pub fn read_scope(&self) -> Option<crate::Scope> {
        match self {
            Channel::Pets | Channel::Pet(_) | Channel::Inventory => Some(crate::Scope::PetsRead),
            Channel::Orders | Channel::Order(_) => Some(crate::Scope::OrdersRead),
            Channel::Chat | Channel::ChatRoom(_) => None,
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Channel::Pets => f.write_str("pets"),
            Channel::Pet(id) => write!(f, "pets/{id}"),
            Channel::Orders => f.write_str("orders"),
            Channel::Order(id) => write!(f, "orders/{id}"),
            Channel::Inventory => f.write_str("inventory"),
            Channel::Chat => f.write_str("chat"),
            Channel::ChatRoom(room) => write!(f, "chat/{room}"),
        }
    }
}

impl FromStr for Channel {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::invalid_field(
                "channel",
                format!(
                    "unknown channel `{}` (pets, orders, inventory, chat, pets/{{id}}, orders/{{id}}, chat/{{room}})",
                    truncate(s, 64)
                ),
            )
        };
        Ok(match s.split_once('/') {
            None => match s {
                "pets" => Channel::Pets,
                "orders" => Channel::Orders,
                "inventory" => Channel::Inventory,
                "chat" => Channel::Chat,
                _ => return Err(bad()),
            },
            Some(("pets", id)) => {
                Channel::Pet(id.parse::<crate::PetId>().map_err(|_| bad())?.to_string())
            }
            Some(("orders", id)) => {
                Channel::Order(id.parse::<crate::OrderId>().map_err(|_| bad())?.to_string())
            }
            Some(("chat", room)) if crate::chat::is_room_name(room) => {
                Channel::ChatRoom(room.to_owned())
            }
            _ => return Err(bad()),
        })
    }
}

impl Serialize for Channel {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Channel {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse()
            .map_err(|e: Error| serde::de::Error::custom(e.reason()))
    }
}

/// A type pattern: an exact type (`order.created`), a family (`pet.*`) or `*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TypePattern(String);

impl TypePattern {
    /// Whether `t` matches.
    pub fn matches(&self, t: EventType) -> bool {
        match self.0.strip_suffix('*') {
            Some(prefix) => t.as_str().starts_with(prefix),
            None => t.as_str() == self.0,
        }
    }

    /// The pattern text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for TypePattern {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        let ok = match s.strip_suffix(".*") {
            _ if s == "*" => true,
            Some(family) => EventType::ALL
                .iter()
                .any(|t| t.as_str().starts_with(&format!("{family}."))),
            None => s.parse::<EventType>().is_ok(),
        };
        if ok {
            Ok(TypePattern(s.to_owned()))
        } else {
            Err(Error::invalid_field(
                "types",
                format!("unknown event type or pattern `{}`", truncate(s, 64)),
            ))
        }
    }
}

impl fmt::Display for TypePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for TypePattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TypePattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse()
            .map_err(|e: Error| serde::de::Error::custom(e.reason()))
    }
}

impl JsonSchema for TypePattern {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "TypePattern".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "An event type (`order.created`), a family (`pet.*`) or `*`."
        })
    }
}

/// Which events a reader wants: any of `types` (empty: all) on any of `channels`
/// (empty: all).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Type patterns; empty matches every type.
    pub types: Vec<TypePattern>,
    /// Channels; empty matches every channel.
    pub channels: Vec<Channel>,
}

impl EventFilter {
    /// Every event.
    pub fn all() -> Self {
        Self::default()
    }

    /// Events on `channels`.
    pub fn channels(channels: impl IntoIterator<Item = Channel>) -> Self {
        Self {
            types: Vec::new(),
            channels: channels.into_iter().collect(),
        }
    }

    /// Events of `types`.
    pub fn types(types: impl IntoIterator<Item = TypePattern>) -> Self {
        Self {
            types: types.into_iter().collect(),
            channels: Vec::new(),
        }
    }

    /// Parses comma-separated type patterns (`"pet.*,order.created"`).
    pub fn parse_types(list: &str) -> Result<Vec<TypePattern>> {
        list.split(',')
            .filter(|s| !s.trim().is_empty())
            .map(str::parse)
            .collect()
    }

    /// Whether `event` passes.
    pub fn matches(&self, event: &Event) -> bool {
        (self.types.is_empty() || self.types.iter().any(|p| p.matches(event.event_type)))
            && (self.channels.is_empty() || self.channels.iter().any(|c| event.is_on(c)))
    }
}

/// Why a resume token cannot be honoured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResetReason {
    /// The token is from another log generation (e.g. the server restarted).
    EpochMismatch,
    /// The events after the token are no longer retained.
    Expired,
}

impl ResetReason {
    /// The error a reader gets.
    pub fn into_error(self, token: ResumeToken) -> Error {
        let msg = match self {
            ResetReason::EpochMismatch => {
                format!(
                    "resume token `{token}` is from another log epoch: reload, then resume from the new position"
                )
            }
            ResetReason::Expired => {
                format!(
                    "resume token `{token}` is older than the retained log: reload, then resume from the new position"
                )
            }
        };
        Error::new(ErrorKind::ResumeExpired, msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_garbage() {
        let t = ResumeToken::new(0xdead_beef, 42);
        assert_eq!(t.to_string(), "00000000deadbeef-42");
        assert_eq!(t.to_string().parse::<ResumeToken>().unwrap(), t);
        for bad in [
            "",
            "42",
            "xyz-1",
            "00000000deadbeef-",
            "00000000deadbeef--1",
            "00000000deadbeef-1a",
            "+0000000deadbeef-1",
            "00000000DEADBEEF-1",
            "00000000deadbeef-+1",
            "00000000deadbeef-10000000000000000000",
        ] {
            assert!(bad.parse::<ResumeToken>().is_err(), "{bad}");
        }
    }

    #[test]
    fn channels_parse_and_print() {
        for s in ["pets", "orders", "inventory", "chat", "chat/support"] {
            assert_eq!(s.parse::<Channel>().unwrap().to_string(), s);
        }
        let pet = crate::PetId::generate();
        assert_eq!(
            format!("pets/{pet}").parse::<Channel>().unwrap(),
            Channel::Pet(pet.to_string())
        );
        for bad in ["", "pet", "pets/", "pets/ord_1", "chat/Support", "admin"] {
            assert!(bad.parse::<Channel>().is_err(), "{bad}");
        }
    }

    #[test]
    fn type_patterns() {
        let p: TypePattern = "pet.*".parse().unwrap();
        assert!(p.matches(EventType::PetCreated) && !p.matches(EventType::OrderCreated));
        assert!(
            "*".parse::<TypePattern>()
                .unwrap()
                .matches(EventType::ChatMessage)
        );
        assert!("pets.*".parse::<TypePattern>().is_err());
        assert!("order.shipped".parse::<TypePattern>().is_err());
    }
}
