//! Which topics an event goes to, and what the command topics mean.

use petstore_core::{Event, EventType};

/// One MQTT message the bridge publishes for an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outbound {
    pub(crate) topic: String,
    /// Empty with `retain` clears the retained message of the topic.
    pub(crate) payload: String,
    pub(crate) retain: bool,
}

/// The messages of `event` (the inventory snapshot aside, see [`inventory_topic`]):
/// always `{prefix}events/{type}`, plus the resource topics of the contract.
pub(crate) fn event_messages(prefix: &str, event: &Event) -> Vec<Outbound> {
    let json = event.to_json();
    let msg = |topic: String, retain: bool| Outbound {
        topic,
        payload: json.clone(),
        retain,
    };
    let subject = &event.subject;
    let mut out = Vec::with_capacity(3);
    match event.event_type {
        EventType::OrderCreated => out.push(msg(format!("{prefix}orders/new"), false)),
        EventType::OrderStatusChanged => {
            out.push(msg(format!("{prefix}orders/{subject}/status"), false));
        }
        EventType::PetCreated => {
            out.push(msg(format!("{prefix}pets/new"), false));
            out.push(msg(format!("{prefix}pets/{subject}/status"), true));
        }
        EventType::PetStatusChanged => {
            out.push(msg(format!("{prefix}pets/{subject}/status"), true));
        }
        // MQTT convention: an empty retained message deletes the retained state.
        EventType::PetDeleted => out.push(Outbound {
            topic: format!("{prefix}pets/{subject}/status"),
            payload: String::new(),
            retain: true,
        }),
        _ => {}
    }
    out.push(msg(format!("{prefix}events/{}", event.event_type), false));
    out
}

/// The retained inventory snapshot topic, published after inventory-affecting events.
pub(crate) fn inventory_topic(prefix: &str) -> String {
    format!("{prefix}inventory")
}

/// The retained presence topic (`online` / `offline`).
pub(crate) fn status_topic(prefix: &str) -> String {
    format!("{prefix}status")
}

/// The filter of inbound commands.
pub(crate) fn commands_filter(prefix: &str) -> String {
    format!("{prefix}commands/#")
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

#[cfg(test)]
mod tests {
    use super::*;
    use petstore_core::{EventId, ResumeToken};

    fn event(t: EventType, subject: &str) -> Event {
        Event {
            specversion: "1.0".into(),
            id: EventId::generate(),
            event_type: t,
            source: "/petstore".into(),
            time: petstore_core::chrono::Utc::now(),
            subject: subject.into(),
            offset: ResumeToken::new(1, 7),
            datacontenttype: "application/json".into(),
            data: serde_json::json!({"id": subject}),
        }
    }

    fn topics(t: EventType, subject: &str) -> Vec<(String, bool, bool)> {
        event_messages("p/", &event(t, subject))
            .into_iter()
            .map(|m| (m.topic, m.retain, m.payload.is_empty()))
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
    fn payload_is_the_envelope() {
        let e = event(EventType::PetCreated, "pet_1");
        for m in event_messages("", &e) {
            assert_eq!(m.payload, e.to_json());
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
