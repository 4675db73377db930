//! Filters: which events a reader wants (type patterns and channels), narrowed by the
//! service to what the reader may see.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::token::truncate;
use super::{Channel, Event, EventType};
use crate::error::{Error, Result};

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
        // Every pattern the parser accepts: `*`, each family and each type.
        let mut values = vec!["*".to_owned()];
        for t in EventType::ALL {
            if let Some((family, _)) = t.as_str().split_once('.') {
                let family = format!("{family}.*");
                if !values.contains(&family) {
                    values.push(family);
                }
            }
        }
        values.extend(EventType::ALL.iter().map(|t| t.as_str().to_owned()));
        schemars::json_schema!({
            "type": "string",
            "enum": values,
            "description": "An event type (`order.created`), a family (`pet.*`) or `*`."
        })
    }
}

/// Which events a reader wants: any of `types` (empty: all) on any of `channels`
/// (empty: all).
///
/// The service narrows a filter to what its reader may see before it reads the log
/// ([`crate::PetStore::events`], [`crate::PetStore::subscribe`]): a reader who is not
/// an admin gets only the order and payment events of their own orders.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventFilter {
    /// Type patterns; empty matches every type.
    pub types: Vec<TypePattern>,
    /// Channels; empty matches every channel.
    pub channels: Vec<Channel>,
    /// When set, order and payment events pass only when they belong to this customer.
    customer: Option<String>,
}

impl EventFilter {
    /// Every event.
    pub fn all() -> Self {
        Self::default()
    }

    /// Events on `channels`.
    pub fn channels(channels: impl IntoIterator<Item = Channel>) -> Self {
        Self {
            channels: channels.into_iter().collect(),
            ..Self::default()
        }
    }

    /// Events of `types`.
    pub fn types(types: impl IntoIterator<Item = TypePattern>) -> Self {
        Self {
            types: types.into_iter().collect(),
            ..Self::default()
        }
    }

    /// Also requires one of `types` (keeps the channels).
    pub fn with_types(mut self, types: impl IntoIterator<Item = TypePattern>) -> Self {
        self.types = types.into_iter().collect();
        self
    }

    /// Parses comma-separated type patterns (`"pet.*,order.created"`).
    pub fn parse_types(list: &str) -> Result<Vec<TypePattern>> {
        list.split(',')
            .filter(|s| !s.trim().is_empty())
            .map(str::parse)
            .collect()
    }

    /// Keeps only the order and payment events of `customer`'s orders.
    pub(crate) fn only_customer(mut self, customer: &str) -> Self {
        self.customer = Some(customer.to_owned());
        self
    }

    /// The customer this filter is narrowed to, if any.
    pub fn customer(&self) -> Option<&str> {
        self.customer.as_deref()
    }

    /// Whether `event` passes.
    pub fn matches(&self, event: &Event) -> bool {
        (self.types.is_empty() || self.types.iter().any(|p| p.matches(event.event_type())))
            && (self.channels.is_empty() || self.channels.iter().any(|c| c.carries(event)))
            && self
                .customer
                .as_deref()
                .is_none_or(|c| event.data().customer().is_none_or(|owner| owner == c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_patterns() {
        let p: TypePattern = "pet.*".parse().unwrap();
        assert!(p.matches(EventType::PetCreated) && !p.matches(EventType::OrderCreated));
        assert!(
            "*".parse::<TypePattern>()
                .unwrap()
                .matches(EventType::ChatMessage)
        );
        let exact: TypePattern = " order.created ".parse().unwrap();
        assert_eq!(exact.as_str(), "order.created");
        assert_eq!(p.as_str(), "pet.*");
        assert_eq!(p.to_string(), "pet.*");
        let matched: Vec<EventType> = EventType::ALL
            .into_iter()
            .filter(|t| exact.matches(*t))
            .collect();
        assert_eq!(matched, [EventType::OrderCreated]);
        assert!("pets.*".parse::<TypePattern>().is_err());
        assert!("order.shipped".parse::<TypePattern>().is_err());
    }

    /// The schema lists exactly what the parser accepts: `*`, every family, every type.
    #[test]
    fn the_type_pattern_schema_lists_every_accepted_pattern() {
        let schema = schemars::schema_for!(TypePattern);
        let listed: Vec<&str> = schema
            .get("enum")
            .and_then(|v| v.as_array())
            .expect("an enum")
            .iter()
            .map(|v| v.as_str().expect("a string"))
            .collect();
        for value in &listed {
            assert!(value.parse::<TypePattern>().is_ok(), "{value}");
        }
        for t in EventType::ALL {
            assert!(listed.contains(&t.as_str()), "{t}");
        }
        for family in ["*", "pet.*", "order.*", "payment.*", "chat.*"] {
            assert!(listed.contains(&family), "{family}");
        }
        assert_eq!(listed.len(), 5 + EventType::ALL.len());
    }

    /// A list of patterns is split at commas; empty items are skipped, a bad one fails.
    #[test]
    fn type_lists_parse_every_item() {
        let parsed = EventFilter::parse_types("pet.*, order.created,,").unwrap();
        let texts: Vec<&str> = parsed.iter().map(TypePattern::as_str).collect();
        assert_eq!(texts, ["pet.*", "order.created"]);
        assert_eq!(EventFilter::parse_types("").unwrap(), []);
        assert!(EventFilter::parse_types("pet.*,nope").is_err());
    }

    /// Adding types to a channel filter keeps the channels and requires a type.
    #[test]
    fn with_types_keeps_the_channels() {
        let pattern: TypePattern = "pet.created".parse().unwrap();
        let filter = EventFilter::channels([Channel::Pets]).with_types([pattern.clone()]);
        assert_eq!(filter.channels, [Channel::Pets]);
        assert_eq!(filter.types, [pattern]);
    }

    /// A filter narrowed to a customer says so (the SQL backends push it into their
    /// query); an open one does not.
    #[test]
    fn a_narrowed_filter_names_its_customer() {
        assert_eq!(EventFilter::all().customer(), None);
        assert_eq!(
            EventFilter::all().only_customer("alice").customer(),
            Some("alice")
        );
    }
}
