//! Which topics an event goes to, and what the command topics mean.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use petstore_core::{Event, EventType};

/// One MQTT message the bridge publishes for an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outbound<'a> {
    pub(crate) topic: Cow<'a, str>,
    /// Empty with `retain` clears the retained message of the topic.
    pub(crate) payload: Bytes,
    pub(crate) retain: bool,
}

/// The bridge's topics, built once from its prefix so that publishing an event
/// formats at most one topic (a resource's own).
#[derive(Debug, Clone)]
pub(crate) struct Topics {
    prefix: String,
    /// `{prefix}pets/new`
    pets_new: String,
    /// `{prefix}orders/new`
    orders_new: String,
    /// `{prefix}pets/`, followed by the pet id and `/status`.
    pets: String,
    /// `{prefix}orders/`, followed by the order id and `/status`.
    orders: String,
    /// `{prefix}events/{type}` of every known event type.
    events: Vec<(EventType, String)>,
    inventory: String,
    status: String,
    commands_filter: String,
    /// `{prefix}replies/`, the only place command replies go.
    replies: String,
}

impl Topics {
    /// The topics under `prefix` (empty, or ending with one `/`).
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            pets_new: format!("{prefix}pets/new"),
            orders_new: format!("{prefix}orders/new"),
            pets: format!("{prefix}pets/"),
            orders: format!("{prefix}orders/"),
            events: EventType::ALL
                .iter()
                .map(|&t| (t, format!("{prefix}events/{t}")))
                .collect(),
            inventory: format!("{prefix}inventory"),
            status: format!("{prefix}status"),
            commands_filter: format!("{prefix}commands/#"),
            replies: format!("{prefix}replies/"),
        }
    }

    /// The prefix every topic starts with.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The retained inventory snapshot topic, published after inventory-affecting
    /// events.
    pub(crate) fn inventory(&self) -> &str {
        &self.inventory
    }

    /// The retained presence topic (`online` / `offline`).
    pub(crate) fn status(&self) -> &str {
        &self.status
    }

    /// The filter of inbound commands.
    pub(crate) fn commands_filter(&self) -> &str {
        &self.commands_filter
    }

    /// Whether a command's response topic may get its reply:
    /// `{prefix}replies/{client id}[/...]`, no wildcards. The bridge may publish
    /// anywhere on its broker, so a reply elsewhere would let anyone make it publish
    /// on the event topics (or, with a wildcard, be dropped by the broker).
    pub(crate) fn is_reply_topic(&self, topic: &str) -> bool {
        let Some(rest) = topic.strip_prefix(&self.replies) else {
            return false;
        };
        let client = rest.split('/').next().unwrap_or_default();
        !client.is_empty() && !topic.contains(['+', '#', '\0'])
    }

    fn events_topic(&self, event_type: EventType) -> Cow<'_, str> {
        match self.events.iter().find(|(t, _)| *t == event_type) {
            Some((_, topic)) => Cow::Borrowed(topic),
            // A type added to the core after this crate was built.
            None => Cow::Owned(format!("{}events/{event_type}", self.prefix)),
        }
    }

    /// The messages of `event` (the inventory snapshot aside, see
    /// [`Topics::inventory`]): always `{prefix}events/{type}`, plus the resource
    /// topics of the contract. Every message shares the event's cached envelope
    /// JSON (no copy per message).
    pub(crate) fn event_messages<'a>(&'a self, event: &Event) -> Vec<Outbound<'a>> {
        let json = envelope(event);
        let msg = |topic: Cow<'a, str>, retain: bool| Outbound {
            topic,
            payload: json.clone(),
            retain,
        };
        let subject = event.subject();
        let mut out = Vec::with_capacity(3);
        match event.event_type() {
            EventType::OrderCreated => out.push(msg(Cow::Borrowed(&self.orders_new), false)),
            EventType::OrderStatusChanged => {
                out.push(msg(resource_status(&self.orders, subject), false));
            }
            EventType::PetCreated => {
                out.push(msg(Cow::Borrowed(&self.pets_new), false));
                out.push(msg(resource_status(&self.pets, subject), true));
            }
            EventType::PetStatusChanged => {
                out.push(msg(resource_status(&self.pets, subject), true));
            }
            // MQTT convention: an empty retained message deletes the retained state.
            EventType::PetDeleted => out.push(Outbound {
                topic: resource_status(&self.pets, subject),
                payload: Bytes::new(),
                retain: true,
            }),
            _ => {}
        }
        out.push(Outbound {
            topic: self.events_topic(event.event_type()),
            payload: json,
            retain: false,
        });
        out
    }
}

/// `{base}{subject}/status`.
fn resource_status(base: &str, subject: &str) -> Cow<'static, str> {
    let mut topic = String::with_capacity(base.len() + subject.len() + "/status".len());
    topic.push_str(base);
    topic.push_str(subject);
    topic.push_str("/status");
    Cow::Owned(topic)
}

/// The event's cached envelope JSON as shared bytes: a reference count, no copy.
fn envelope(event: &Event) -> Bytes {
    Bytes::from_owner(SharedJson(Arc::clone(event.json())))
}

/// Lends the bytes of a shared JSON text to [`Bytes::from_owner`].
struct SharedJson(Arc<str>);

impl AsRef<[u8]> for SharedJson {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// An inbound command topic, relative to `{prefix}commands/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CommandTopic<'a> {
    /// `commands/pets/{id}/status`
    SetPetStatus(&'a str),
    /// `commands/orders`
    PlaceOrder,
    /// Anything else.
    Unknown,
}

/// Parses a command topic; `None` when `topic` is not under `{prefix}commands/`.
pub(crate) fn command_topic<'a>(prefix: &str, topic: &'a str) -> Option<CommandTopic<'a>> {
    let rest = topic.strip_prefix(prefix)?.strip_prefix("commands/")?;
    let parts: Vec<&str> = rest.split('/').collect();
    Some(match parts.as_slice() {
        ["pets", id, "status"] => CommandTopic::SetPetStatus(id),
        ["orders"] => CommandTopic::PlaceOrder,
        _ => CommandTopic::Unknown,
    })
}

/// An event of type `t` about `subject`, for tests.
#[cfg(test)]
pub(crate) fn sample_event(t: EventType, subject: &str) -> Event {
    let json = match t {
        EventType::ChatMessage => serde_json::json!({
            "id": "msg_1", "room": subject, "author": "a", "text": "hi",
            "sent_at": "2026-01-01T00:00:00Z"
        }),
        EventType::OrderCreated | EventType::OrderStatusChanged => serde_json::json!({
            "id": subject, "pet_id": "pet_1", "quantity": 1,
            "total": {"amount": "1.00", "currency": "USD"}, "status": "placed",
            "customer": "c", "payment_id": null, "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z", "version": 1, "previous_status": "placed"
        }),
        EventType::PaymentSucceeded | EventType::PaymentFailed => serde_json::json!({
            "id": subject, "order_id": "ord_1", "amount": {"amount": "1.00", "currency": "USD"},
            "status": "succeeded", "failure_reason": null, "reference": "r",
            "created_at": "2026-01-01T00:00:00Z", "customer": "c"
        }),
        _ => serde_json::json!({
            "id": subject, "name": "Rex", "species": "dog", "breed": null, "age": null,
            "status": "available", "tags": [], "photo_urls": [],
            "price": {"amount": "1.00", "currency": "USD"},
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
            "version": 1, "previous_status": "available"
        }),
    };
    let data = petstore_core::EventData::from_json(t, &json.to_string()).unwrap();
    petstore_core::backend::NewEvent::new(data).sequenced(
        "/petstore",
        petstore_core::chrono::Utc::now(),
        petstore_core::ResumeToken::new(1, 7),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics(t: EventType, subject: &str) -> Vec<(String, bool, bool)> {
        Topics::new("p/")
            .event_messages(&sample_event(t, subject))
            .into_iter()
            .map(|m| (m.topic.into_owned(), m.retain, m.payload.is_empty()))
            .collect()
    }

    #[test]
    fn events_map_to_contract_topics() {
        let s = |t: &str, retain: bool| (t.to_owned(), retain, false);
        assert_eq!(
            topics(EventType::OrderCreated, "ord_1"),
            [s("p/orders/new", false), s("p/events/order.created", false)]
        );
        assert_eq!(
            topics(EventType::OrderStatusChanged, "ord_1"),
            [
                s("p/orders/ord_1/status", false),
                s("p/events/order.status_changed", false)
            ]
        );
        assert_eq!(
            topics(EventType::PetCreated, "pet_1"),
            [
                s("p/pets/new", false),
                s("p/pets/pet_1/status", true),
                s("p/events/pet.created", false)
            ]
        );
        assert_eq!(
            topics(EventType::PetStatusChanged, "pet_1"),
            [
                s("p/pets/pet_1/status", true),
                s("p/events/pet.status_changed", false)
            ]
        );
        assert_eq!(
            topics(EventType::PetDeleted, "pet_1"),
            [
                ("p/pets/pet_1/status".to_owned(), true, true),
                s("p/events/pet.deleted", false)
            ]
        );
        assert_eq!(
            topics(EventType::ChatMessage, "support"),
            [s("p/events/chat.message", false)]
        );
    }

    #[test]
    fn payload_is_the_shared_envelope() {
        let e = sample_event(EventType::PetCreated, "pet_1");
        let topics = Topics::new("");
        let messages = topics.event_messages(&e);
        assert_eq!(messages.len(), 3);
        for m in &messages {
            assert_eq!(&m.payload[..], e.json().as_bytes());
            // The cached text itself, not a copy of it.
            assert_eq!(m.payload.as_ptr(), e.json().as_ptr());
        }
    }

    #[test]
    fn fixed_topics_come_from_the_prefix() {
        let t = Topics::new("shop/");
        assert_eq!(t.prefix(), "shop/");
        assert_eq!(t.inventory(), "shop/inventory");
        assert_eq!(t.status(), "shop/status");
        assert_eq!(t.commands_filter(), "shop/commands/#");
        assert!(t.is_reply_topic("shop/replies/device-1"));
        assert!(t.is_reply_topic("shop/replies/device-1/req/7"));
        for bad in [
            "shop/replies/",
            "shop/replies//x",
            "shop/replies/+/x",
            "shop/replies/d/#",
            "shop/inventory",
            "shop/pets/pet_1/status",
            "other/replies/d",
        ] {
            assert!(!t.is_reply_topic(bad), "{bad}");
        }
        for ty in EventType::ALL {
            assert_eq!(t.events_topic(ty), format!("shop/events/{ty}"));
        }
    }

    #[test]
    fn command_topics() {
        assert_eq!(
            command_topic("p/", "p/commands/pets/pet_1/status"),
            Some(CommandTopic::SetPetStatus("pet_1"))
        );
        assert_eq!(
            command_topic("p/", "p/commands/orders"),
            Some(CommandTopic::PlaceOrder)
        );
        assert_eq!(
            command_topic("p/", "p/commands/orders/x"),
            Some(CommandTopic::Unknown)
        );
        assert_eq!(command_topic("p/", "p/events/x"), None);
        assert_eq!(command_topic("p/", "q/commands/orders"), None);
    }
}
