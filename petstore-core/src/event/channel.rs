//! Channels: the named streams realtime clients subscribe to, and which events each
//! one carries.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::token::truncate;
use super::{Event, EventData};
use crate::auth::Scope;
use crate::error::{Error, Result};
use crate::id::{OrderId, PetId};

/// A named stream of events that realtime clients subscribe to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Channel {
    /// Every pet event.
    Pets,
    /// Events of one pet (`pets/{id}`).
    Pet(PetId),
    /// Every order and payment event (for a non-admin reader: of their own orders).
    Orders,
    /// Events of one order and its payments (`orders/{id}`).
    Order(OrderId),
    /// Events that change the inventory counts.
    Inventory,
    /// Every chat message.
    Chat,
    /// Messages of one room (`chat/{room}`).
    ChatRoom(String),
}

impl Channel {
    /// The scope needed to read this channel; `None` for chat, which needs only an
    /// authenticated caller (see [`crate::PetStore::authorize_channel`]).
    pub fn read_scope(&self) -> Option<Scope> {
        match self {
            Channel::Pets | Channel::Pet(_) | Channel::Inventory => Some(Scope::PetsRead),
            Channel::Orders | Channel::Order(_) => Some(Scope::OrdersRead),
            Channel::Chat | Channel::ChatRoom(_) => None,
        }
    }

    /// Whether `event` is published on this channel.
    pub fn carries(&self, event: &Event) -> bool {
        let data = event.data();
        match self {
            Channel::Pets => data.pet().is_some(),
            Channel::Inventory => event.event_type().affects_inventory(),
            Channel::Pet(id) => data.pet().is_some_and(|p| &p.id == id),
            Channel::Orders => data.order_id().is_some(),
            Channel::Order(id) => data.order_id() == Some(id),
            Channel::Chat => matches!(data, EventData::ChatMessage(_)),
            Channel::ChatRoom(room) => {
                matches!(data, EventData::ChatMessage(m) if &m.room == room)
            }
        }
    }
}

impl Event {
    /// The channels this event is published on, most specific last:
    /// `pets` (+ `inventory`) + `pets/{id}`, `orders` + `orders/{id}`, `chat` + `chat/{room}`.
    pub fn channels(&self) -> Vec<Channel> {
        let mut out = Vec::with_capacity(3);
        match self.data() {
            EventData::ChatMessage(m) => {
                out.push(Channel::Chat);
                out.push(Channel::ChatRoom(m.room.clone()));
            }
            data => {
                if let Some(pet) = data.pet() {
                    out.push(Channel::Pets);
                    if self.event_type().affects_inventory() {
                        out.push(Channel::Inventory);
                    }
                    out.push(Channel::Pet(pet.id.clone()));
                }
                if let Some(order) = data.order_id() {
                    out.push(Channel::Orders);
                    out.push(Channel::Order(order.clone()));
                }
            }
        }
        out
    }

    /// Whether this event is published on `channel`.
    pub fn is_on(&self, channel: &Channel) -> bool {
        channel.carries(self)
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
            Some(("pets", id)) => Channel::Pet(id.parse().map_err(|_| bad())?),
            Some(("orders", id)) => Channel::Order(id.parse().map_err(|_| bad())?),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_parse_and_print() {
        for s in ["pets", "orders", "inventory", "chat", "chat/support"] {
            assert_eq!(s.parse::<Channel>().unwrap().to_string(), s);
        }
        let pet = PetId::generate();
        assert_eq!(
            format!("pets/{pet}").parse::<Channel>().unwrap(),
            Channel::Pet(pet.clone())
        );
        let order = OrderId::generate();
        assert_eq!(
            format!("orders/{order}").parse::<Channel>().unwrap(),
            Channel::Order(order)
        );
        for bad in ["", "pet", "pets/", "pets/ord_1", "chat/Support", "admin"] {
            assert!(bad.parse::<Channel>().is_err(), "{bad}");
        }
    }

    /// The inventory channel carries the pet events that change the counts: a pet
    /// added, removed or changing status; not a rename.
    #[test]
    fn the_inventory_channel_carries_the_events_that_change_the_counts() {
        use crate::backend::NewEvent;
        use crate::event::EventData;
        use crate::{PetStatus, ResumeToken};
        let pet = crate::seed::sample_pets()
            .remove(0)
            .into_pet(chrono::Utc::now());
        let event = |data| {
            NewEvent::new(data).sequenced("/petstore", chrono::Utc::now(), ResumeToken::new(1, 1))
        };
        let counted = [
            EventData::PetCreated(pet.clone()),
            EventData::PetStatusChanged {
                pet: pet.clone(),
                previous_status: PetStatus::Available,
            },
            EventData::PetDeleted(pet.clone()),
        ];
        for data in counted {
            let e = event(data);
            assert!(Channel::Inventory.carries(&e), "{:?}", e.event_type());
            assert!(e.channels().contains(&Channel::Inventory));
        }
        let e = event(EventData::PetUpdated(pet.clone()));
        assert!(!Channel::Inventory.carries(&e));
        assert!(!e.channels().contains(&Channel::Inventory));
        // `is_on` is `carries` seen from the event.
        assert!(e.is_on(&Channel::Pets) && e.is_on(&Channel::Pet(pet.id)));
        assert!(!e.is_on(&Channel::Inventory) && !e.is_on(&Channel::Orders));
    }
}
