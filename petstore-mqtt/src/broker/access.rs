//! Who may read and write which topics: the policy the embedded broker's front applies
//! to every SUBSCRIBE and PUBLISH of a client, and that the Mosquitto ACL shipped in
//! `petstore-mqtt/mosquitto/` renders for an external broker (a test holds the two
//! together).
//!
//! Readers get what the same principal may read over HTTP: pet topics, the inventory
//! and presence while reads are open; chat with any token; an order's status topic for
//! its customer (or `admin`); the aggregate order feeds (`orders/new`, order and
//! payment events) for `admin` only, since a topic cannot be filtered per customer.
//! A wildcard filter needs the rights of every topic it can match. Outsiders publish
//! only commands; everything else under the prefix is the bridge's.

use petstore_core::{Channel, EventType, OrderId, PetStore, Principal, Scope};

/// What a reader must be to receive a topic's messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Need {
    /// Allowed to read pets (anyone while reads are open).
    Pets,
    /// Authenticated (chat).
    Token,
    /// `admin`.
    Admin,
    /// The customer of this order, or `admin`.
    Order(String),
    /// The connection with this client id (command replies).
    Client(String),
    /// Nobody but the bridge.
    Bridge,
}

/// What the level that names a resource holds in a filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Capture<'a> {
    Literal(&'a str),
    Any,
}

/// One kind of topic under the prefix: its levels (`+` names the resource) and who
/// may read it.
struct Shape {
    levels: Vec<&'static str>,
    need: fn(Capture<'_>) -> Need,
}

/// Who may read the events of a type, each on `events/{type}`.
fn event_need(t: EventType) -> Need {
    match t {
        EventType::PetCreated
        | EventType::PetUpdated
        | EventType::PetStatusChanged
        | EventType::PetDeleted => Need::Pets,
        EventType::ChatMessage => Need::Token,
        // Orders, payments and types added later: every customer's, so admin only.
        _ => Need::Admin,
    }
}

/// Every topic the bridge publishes or reads, relative to the prefix.
fn shapes() -> Vec<Shape> {
    vec![
        Shape {
            levels: vec!["pets", "new"],
            need: |_| Need::Pets,
        },
        Shape {
            levels: vec!["pets", "+", "status"],
            need: |_| Need::Pets,
        },
        Shape {
            levels: vec!["inventory"],
            need: |_| Need::Pets,
        },
        Shape {
            levels: vec!["status"],
            need: |_| Need::Pets,
        },
        Shape {
            levels: vec!["orders", "new"],
            need: |_| Need::Admin,
        },
        Shape {
            levels: vec!["orders", "+", "status"],
            need: |id| match id {
                Capture::Literal(id) => Need::Order(id.to_owned()),
                Capture::Any => Need::Admin,
            },
        },
        // Commands carry their callers' tokens: the bridge alone reads them.
        Shape {
            levels: vec!["commands", "#"],
            need: |_| Need::Bridge,
        },
        Shape {
            levels: vec!["replies", "+", "#"],
            need: |client| match client {
                Capture::Literal(client) => Need::Client(client.to_owned()),
                Capture::Any => Need::Bridge,
            },
        },
        // `events/{type}`; a type this build does not know is admin's, safe by default.
        Shape {
            levels: vec!["events", "+"],
            need: |t| match t {
                Capture::Literal(t) => EventType::ALL
                    .into_iter()
                    .find(|known| known.as_str() == t)
                    .map_or(Need::Admin, event_need),
                Capture::Any => Need::Admin,
            },
        },
    ]
}

/// The topic levels of a prefix (`petstore/` -> `["petstore"]`, empty -> none).
fn prefix_levels(prefix: &str) -> Vec<&str> {
    match prefix.strip_suffix('/') {
        Some(p) if !p.is_empty() => p.split('/').collect(),
        _ => Vec::new(),
    }
}

/// Whether a filter and a topic shape (both may hold wildcards) have a topic in common.
fn intersects(filter: &[&str], shape: &[&str]) -> bool {
    match (filter.split_first(), shape.split_first()) {
        (Some((&"#", _)), _) | (_, Some((&"#", _))) => true,
        (None, None) => true,
        (None, Some(_)) | (Some(_), None) => false,
        (Some((f, f_rest)), Some((s, s_rest))) => {
            (*f == "+" || *s == "+" || f == s) && intersects(f_rest, s_rest)
        }
    }
}

/// The filter's value at `level`: a literal, or anything (`+`, or a `#` before it).
fn capture<'a>(filter: &[&'a str], level: usize) -> Capture<'a> {
    for (i, f) in filter.iter().enumerate() {
        if *f == "#" {
            return Capture::Any;
        }
        if i == level {
            return if *f == "+" {
                Capture::Any
            } else {
                Capture::Literal(f)
            };
        }
    }
    Capture::Any
}

/// What a reader must be to subscribe to `filter`: the needs of every topic under
/// `prefix` the filter can match, or `None` when nobody outside the bridge may (an
/// invalid filter, a `$` filter other than a shared subscription). Topics outside the
/// prefix need nothing: only the bridge publishes, and only under the prefix.
pub(crate) fn read_needs(prefix: &str, filter: &str) -> Option<Vec<Need>> {
    let filter = match filter.strip_prefix("$share/") {
        // `$share/{group}/{filter}`: the broker delivers `filter`.
        Some(shared) => {
            let (group, inner) = shared.split_once('/')?;
            if group.is_empty() || group.contains(['+', '#']) {
                return None;
            }
            inner
        }
        None => filter,
    };
    if filter.starts_with('$') || !rumqttc::valid_filter(filter) || filter.contains('\0') {
        return None;
    }
    let filter: Vec<&str> = filter.split('/').collect();
    let base = prefix_levels(prefix);
    let mut needs = Vec::new();
    for shape in shapes() {
        let full: Vec<&str> = base.iter().copied().chain(shape.levels).collect();
        if intersects(&filter, &full) {
            let need = (shape.need)(capture(&filter, base.len() + 1));
            if need == Need::Bridge {
                return None;
            }
            if !needs.contains(&need) {
                needs.push(need);
            }
        }
    }
    Some(needs)
}

/// Whether a client other than the bridge may publish on `topic`: commands only.
pub(crate) fn may_publish(prefix: &str, topic: &str) -> bool {
    let valid = !topic.is_empty() && !topic.contains(['+', '#', '\0']);
    valid
        && topic
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix("commands/"))
            .is_some_and(|command| !command.is_empty())
}

/// A connected client, as the policy sees it.
pub(crate) struct Reader<'a> {
    pub(crate) store: &'a PetStore,
    pub(crate) who: &'a Principal,
    pub(crate) client_id: &'a str,
}

impl Reader<'_> {
    /// Whether this reader meets `need`; order ownership is checked through the
    /// service.
    pub(crate) async fn meets(&self, need: &Need) -> bool {
        match need {
            Need::Pets => self
                .store
                .authorize_channel(self.who, &Channel::Pets)
                .await
                .is_ok(),
            Need::Token => self
                .store
                .authorize_channel(self.who, &Channel::Chat)
                .await
                .is_ok(),
            Need::Admin => self.who.has(Scope::Admin),
            // The core answers someone else's order as unknown.
            Need::Order(id) => match id.parse::<OrderId>() {
                Ok(id) => self.store.order(self.who, &id).await.is_ok(),
                Err(_) => false,
            },
            Need::Client(id) => !id.is_empty() && id == self.client_id,
            Need::Bridge => false,
        }
    }

    /// Whether this reader may subscribe to `filter`.
    pub(crate) async fn may_subscribe(&self, prefix: &str, filter: &str) -> bool {
        let Some(needs) = read_needs(prefix, filter) else {
            return false;
        };
        for need in &needs {
            if !self.meets(need).await {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topics::Topics;

    fn needs(filter: &str) -> Option<Vec<Need>> {
        read_needs("petstore/", filter)
    }

    #[test]
    fn pet_topics_need_what_pets_need() {
        for filter in [
            "petstore/pets/new",
            "petstore/pets/pet_1/status",
            "petstore/pets/+/status",
            "petstore/pets/#",
            "petstore/inventory",
            "petstore/status",
            "petstore/events/pet.created",
            "petstore/events/pet.deleted",
            "+/pets/#",
            "$share/g/petstore/pets/+/status",
        ] {
            assert_eq!(needs(filter), Some(vec![Need::Pets]), "{filter}");
        }
    }

    #[test]
    fn order_feeds_are_admin_and_order_topics_the_owners() {
        for filter in [
            "petstore/orders/new",
            "petstore/orders/+/status",
            "petstore/orders/#",
            "petstore/events/order.created",
            "petstore/events/payment.failed",
            "petstore/events/not.a.type",
        ] {
            assert_eq!(needs(filter), Some(vec![Need::Admin]), "{filter}");
        }
        assert_eq!(
            needs("petstore/orders/ord_1/status"),
            Some(vec![Need::Order("ord_1".into())])
        );
        assert_eq!(
            needs("+/orders/ord_1/+"),
            Some(vec![Need::Order("ord_1".into())])
        );
        // It could match `petstore/commands/ord_1/...` too.
        assert_eq!(needs("+/+/ord_1/#"), None);
        assert_eq!(
            needs("petstore/events/chat.message"),
            Some(vec![Need::Token])
        );
        // Every type: admin (who reads chat and pets too).
        assert_eq!(needs("petstore/events/+"), Some(vec![Need::Admin]));
    }

    #[test]
    fn commands_and_foreign_replies_are_the_bridges() {
        for filter in [
            "petstore/commands/#",
            "petstore/commands/orders",
            "petstore/#",
            "#",
            "+/+",
            "petstore/+",
            "petstore/replies/+/x",
            "petstore/replies/#",
            "$SYS/#",
            "$share//petstore/pets/new",
            "petstore/pets/#/x",
            "petstore/pe+ts",
            "",
        ] {
            assert_eq!(needs(filter), None, "{filter}");
        }
        assert_eq!(
            needs("petstore/replies/dev-1/#"),
            Some(vec![Need::Client("dev-1".into())])
        );
    }

    #[test]
    fn topics_outside_the_prefix_need_nothing() {
        assert_eq!(needs("other/#"), Some(vec![]));
        assert_eq!(needs("petstorex/orders/new"), Some(vec![]));
        assert_eq!(read_needs("", "orders/new"), Some(vec![Need::Admin]));
        assert_eq!(read_needs("a/b/", "a/b/inventory"), Some(vec![Need::Pets]));
        assert_eq!(read_needs("a/b/", "a/inventory"), Some(vec![]));
    }

    #[test]
    fn only_commands_may_be_published() {
        assert!(may_publish("petstore/", "petstore/commands/orders"));
        assert!(may_publish("petstore/", "petstore/commands/pets/p/status"));
        for topic in [
            "petstore/inventory",
            "petstore/pets/pet_1/status",
            "petstore/events/pet.created",
            "petstore/replies/x",
            "petstore/commands/",
            "petstore/commands/+",
            "other/topic",
            "",
        ] {
            assert!(!may_publish("petstore/", topic), "{topic}");
        }
    }

    /// Every topic the bridge publishes has a shape: a new topic cannot slip out from
    /// under the policy.
    #[test]
    fn every_published_topic_has_a_shape() {
        let topics = Topics::new("petstore/");
        for t in EventType::ALL {
            // A subject of the event's kind (ids read only what their pattern says).
            let subject = match t {
                EventType::OrderCreated | EventType::OrderStatusChanged => "ord_1",
                EventType::PaymentSucceeded | EventType::PaymentFailed => "pay_1",
                EventType::ChatMessage => "lobby",
                _ => "pet_1",
            };
            let event = crate::topics::sample_event(t, subject);
            for m in topics.event_messages(&event) {
                let got = needs(&m.topic).unwrap_or_else(|| panic!("{}", m.topic));
                let expected = match (t, m.topic.contains("/events/")) {
                    (EventType::OrderStatusChanged, false) => Need::Order(subject.into()),
                    (_, true) => event_need(t),
                    (EventType::OrderCreated, false) => Need::Admin,
                    _ => Need::Pets,
                };
                assert_eq!(got, vec![expected], "{}", m.topic);
            }
        }
        for fixed in [topics.inventory(), topics.status()] {
            assert_eq!(needs(fixed), Some(vec![Need::Pets]));
        }
        assert_eq!(needs(topics.commands_filter()), None);
    }

    /// The Mosquitto ACL that grants what this policy grants: anonymous clients read
    /// the topics that need only pet access and publish commands, each client reads its
    /// own replies, the bridge's account does everything under the prefix.
    fn mosquitto_acl(prefix: &str, bridge_user: &str) -> String {
        let mut anonymous = Vec::new();
        for shape in shapes() {
            if shape.levels[0] == "events" {
                continue;
            }
            if (shape.need)(Capture::Literal("x")) == Need::Pets {
                anonymous.push(format!("topic read {prefix}{}", shape.levels.join("/")));
            }
        }
        for t in EventType::ALL {
            if event_need(t) == Need::Pets {
                anonymous.push(format!("topic read {prefix}events/{t}"));
            }
        }
        format!(
            "{}\ntopic write {prefix}commands/#\npattern read {prefix}replies/%c/#\nuser {bridge_user}\ntopic readwrite {prefix}#\n",
            anonymous.join("\n")
        )
    }

    #[test]
    fn the_shipped_mosquitto_acl_renders_this_policy() {
        let shipped: String = include_str!("../../mosquitto/petstore.acl")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(shipped, mosquitto_acl("petstore/", "petstore-bridge"));
    }
}
