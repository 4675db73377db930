//! The event envelope every push pattern carries (CloudEvents 1.0 field names plus
//! `offset`): its types, typed payloads, resume tokens, channels and filters.

mod channel;
mod data;
mod filter;
mod token;

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::context::TraceParent;
use crate::error::{Error, Result};
use crate::id::EventId;

pub use channel::Channel;
pub use data::EventData;
pub use filter::{EventFilter, TypePattern};
pub use token::{ResetReason, ResumeToken};

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

/// The envelope of a domain event: CloudEvents 1.0 JSON field names plus `offset`,
/// the resume token of this event, and the CloudEvents distributed-tracing extension
/// (`traceparent`) when the write that caused it carried a trace context.
///
/// Events come from the log, shared as `Arc<Event>`, and never change: the fields are
/// read through accessors, so [`Event::json`] can serialise each event once, however
/// many subscribers and protocols deliver it. Backends build events with
/// [`crate::backend::NewEvent::sequenced`] or [`crate::backend::EventParts`].
pub struct Event {
    id: EventId,
    source: Arc<str>,
    time: DateTime<Utc>,
    offset: ResumeToken,
    data: EventData,
    traceparent: Option<TraceParent>,
    /// The envelope's JSON text, filled by the first [`Event::json`].
    json: OnceLock<Arc<str>>,
}

impl Event {
    /// Builds an event from its parts (what a backend read back from storage).
    pub(crate) fn from_parts(parts: crate::backend::EventParts) -> Self {
        Self {
            id: parts.id,
            source: parts.source,
            time: parts.time,
            offset: parts.offset,
            data: parts.data,
            traceparent: parts.traceparent,
            json: OnceLock::new(),
        }
    }

    /// Unique id (`evt_…`), the same wherever and however often the event is delivered.
    pub fn id(&self) -> &EventId {
        &self.id
    }

    /// The event type, e.g. `order.created`.
    pub fn event_type(&self) -> EventType {
        self.data.event_type()
    }

    /// The producing service (URI reference), e.g. `/petstore`.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// When it happened.
    pub fn time(&self) -> DateTime<Utc> {
        self.time
    }

    /// The id of the resource it is about (`pet_…`, `ord_…`, `pay_…`), or the chat room.
    pub fn subject(&self) -> &str {
        self.data.subject()
    }

    /// The resume token of this event: resuming from it yields the events after it.
    pub fn offset(&self) -> ResumeToken {
        self.offset
    }

    /// The typed payload.
    pub fn data(&self) -> &EventData {
        &self.data
    }

    /// The W3C trace context of the write that caused this event, if it had one.
    pub fn traceparent(&self) -> Option<&TraceParent> {
        self.traceparent.as_ref()
    }

    /// The envelope as JSON text, serialised on the first call and shared after that
    /// (cloning the `Arc` copies no text). Every push adapter sends these bytes, so an
    /// event delivered to 5,000 subscribers is serialised once.
    pub fn json(&self) -> &Arc<str> {
        // Serialising plain data into a String cannot fail.
        self.json
            .get_or_init(|| serde_json::to_string(self).unwrap_or_default().into())
    }

    /// The envelope as a new JSON `String` (a copy of [`Event::json`]).
    pub fn to_json(&self) -> String {
        self.json().to_string()
    }
}

impl Clone for Event {
    fn clone(&self) -> Self {
        Self {
            id: self.id.clone(),
            source: self.source.clone(),
            time: self.time,
            offset: self.offset,
            data: self.data.clone(),
            traceparent: self.traceparent.clone(),
            // Nothing can change an event, so the text stays valid.
            json: self.json.clone(),
        }
    }
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
            && self.source == other.source
            && self.time == other.time
            && self.offset == other.offset
            && self.data == other.data
            && self.traceparent == other.traceparent
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("id", &self.id)
            .field("type", &self.event_type())
            .field("offset", &self.offset)
            .field("time", &self.time)
            .field("data", &self.data)
            .finish_non_exhaustive()
    }
}

/// The envelope's fields in their wire order.
#[derive(Serialize)]
struct Envelope<'a> {
    specversion: &'static str,
    id: &'a EventId,
    #[serde(rename = "type")]
    event_type: EventType,
    source: &'a str,
    time: DateTime<Utc>,
    subject: &'a str,
    offset: ResumeToken,
    datacontenttype: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    traceparent: Option<&'a TraceParent>,
    data: &'a EventData,
}

impl Serialize for Event {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        Envelope {
            specversion: "1.0",
            id: &self.id,
            event_type: self.event_type(),
            source: &self.source,
            time: self.time,
            subject: self.subject(),
            offset: self.offset,
            datacontenttype: "application/json",
            traceparent: self.traceparent.as_ref(),
            data: &self.data,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Event {
    /// Reads an envelope (as a client, a test or a backend that stored the text does).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Wire {
            id: EventId,
            #[serde(rename = "type")]
            event_type: EventType,
            source: String,
            time: DateTime<Utc>,
            offset: ResumeToken,
            #[serde(default)]
            traceparent: Option<TraceParent>,
            data: serde_json::Value,
        }
        let wire = Wire::deserialize(d)?;
        let data = serde_json::to_string(&wire.data).map_err(serde::de::Error::custom)?;
        let data =
            EventData::from_json(wire.event_type, &data).map_err(serde::de::Error::custom)?;
        Ok(Event::from_parts(crate::backend::EventParts {
            id: wire.id,
            source: wire.source.into(),
            time: wire.time,
            offset: wire.offset,
            data,
            traceparent: wire.traceparent,
        }))
    }
}

impl JsonSchema for Event {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Event".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        /// The envelope of a domain event: CloudEvents 1.0 JSON field names plus `offset`.
        #[derive(JsonSchema)]
        #[allow(dead_code)] // Only its schema is used.
        struct EventDoc {
            /// CloudEvents spec version, always `"1.0"`.
            specversion: String,
            /// Unique id (`evt_…`), stable wherever the event is delivered.
            id: EventId,
            /// The event type, e.g. `order.created`.
            #[serde(rename = "type")]
            event_type: EventType,
            /// The producing service (URI reference), e.g. `/petstore`.
            source: String,
            /// When it happened.
            time: DateTime<Utc>,
            /// The id of the resource it is about (`pet_…`, `ord_…`, `pay_…`), or the chat room.
            subject: String,
            /// The resume token of this event: resuming from it yields the events after it.
            offset: ResumeToken,
            /// Always `application/json`.
            datacontenttype: String,
            /// W3C trace context of the write that caused the event (CloudEvents
            /// distributed-tracing extension), when it had one.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            traceparent: Option<TraceParent>,
            /// The payload: the resource after the change (`previous_status` added to
            /// status changes, the order's `customer` to payment events).
            data: data::EventDataSchema,
        }
        EventDoc::json_schema(generator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::NewEvent;
    use crate::{Currency, Money, NewPet};

    #[test]
    fn event_types_print_as_their_wire_names() {
        for t in EventType::ALL {
            assert_eq!(t.to_string(), t.as_str());
        }
        assert_eq!(EventType::OrderCreated.to_string(), "order.created");
    }

    #[test]
    fn the_envelope_round_trips_with_its_typed_payload() {
        let mut pet = NewPet {
            name: "Rex".into(),
            species: "dog".into(),
            breed: None,
            age: None,
            status: None,
            tags: vec![],
            photo_urls: vec![],
            price: Money::parse("1.00", Currency::USD).unwrap(),
        }
        .into_pet(Utc::now());
        pet.status = crate::PetStatus::Sold;
        let event = NewEvent::new(EventData::PetStatusChanged {
            pet: pet.clone(),
            previous_status: crate::PetStatus::Available,
        })
        .sequenced("/petstore", Utc::now(), ResumeToken::new(7, 3));
        let json: serde_json::Value = serde_json::from_str(event.json()).unwrap();
        assert_eq!(json["type"], "pet.status_changed");
        assert_eq!(json["subject"], pet.id.as_str());
        assert_eq!(json["offset"], "0000000000000007-3");
        assert_eq!(json["data"]["previous_status"], "available");
        assert_eq!(json["data"]["status"], "sold");
        assert!(json.get("traceparent").is_none());
        let back: Event = serde_json::from_str(event.json()).unwrap();
        assert_eq!(back, event);
        let debug = format!("{event:?}");
        for part in [event.id().as_str(), "PetStatusChanged", "previous_status"] {
            assert!(debug.contains(part), "{part} in {debug}");
        }
        // An event that differs in one part only is another event.
        for (from, to) in [
            ("0000000000000007-3", "0000000000000007-4"),
            ("\"source\":\"/petstore\"", "\"source\":\"/elsewhere\""),
            (
                "\"previous_status\":\"available\"",
                "\"previous_status\":\"pending\"",
            ),
        ] {
            assert!(event.json().contains(from), "{from}");
            let other: Event = serde_json::from_str(&event.json().replace(from, to)).unwrap();
            assert_ne!(other, event, "{from} -> {to}");
        }
        assert!(
            event
                .json()
                .starts_with(r#"{"specversion":"1.0","id":"evt_"#)
        );
        assert!(
            event
                .json()
                .contains(r#""datacontenttype":"application/json","data":{"#)
        );
    }

    fn chat_event(traceparent: Option<TraceParent>) -> Event {
        let message = crate::chat::ChatMessage {
            id: crate::id::MessageId::generate(),
            room: "lobby".into(),
            author: "alice".into(),
            text: "hi".into(),
            sent_at: Utc::now(),
        };
        NewEvent {
            traceparent,
            ..NewEvent::new(EventData::ChatMessage(message))
        }
        .sequenced("/petstore", Utc::now(), ResumeToken::new(7, 1))
    }

    /// An event keeps the trace context of its write; `to_json` is the envelope text.
    #[test]
    fn an_event_carries_its_traceparent_and_copies_its_json() {
        let trace: TraceParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
            .parse()
            .unwrap();
        let event = chat_event(Some(trace.clone()));
        assert_eq!(event.traceparent(), Some(&trace));
        assert_eq!(chat_event(None).traceparent(), None);
        assert_eq!(event.to_json(), event.json().as_ref());
        let json: serde_json::Value = serde_json::from_str(&event.to_json()).unwrap();
        assert_eq!(json["traceparent"], trace.as_str());
        assert_eq!(json["data"]["text"], "hi");
        // The payload alone, as a backend stores it, reads back as itself.
        let data = event.data().to_json();
        assert_eq!(
            &EventData::from_json(EventType::ChatMessage, &data).unwrap(),
            event.data()
        );
    }

    /// The schema of the envelope names exactly the fields an event serialises.
    #[test]
    fn the_event_schema_lists_the_envelope_fields() {
        use std::collections::BTreeSet;
        let trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".parse();
        let event = chat_event(Some(trace.unwrap()));
        let json: serde_json::Value = serde_json::from_str(event.json()).unwrap();
        let sent: BTreeSet<&String> = json.as_object().unwrap().keys().collect();
        let schema = schemars::schema_for!(Event);
        let listed: BTreeSet<&String> = schema
            .get("properties")
            .and_then(|p| p.as_object())
            .expect("properties")
            .keys()
            .collect();
        assert_eq!(listed, sent);
        assert_eq!(schema.get("type").unwrap(), "object");
    }
}
