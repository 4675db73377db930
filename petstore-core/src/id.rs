//! Prefixed, time-ordered identifiers (`pet_…`, `ord_…`): sorting by id sorts by
//! creation, which is what cursor pagination walks.

use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::rules::Pattern;

macro_rules! prefixed_id {
    ($(#[$meta:meta])* $name:ident, $prefix:literal, $what:literal, $article:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        /// Reads only what [`Self::PATTERN`] matches, as the schema says.
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                text.parse().map_err(|_| {
                    serde::de::Error::custom(format!(
                        "`{}` is not {} id (`{}…`)",
                        text.chars().take(80).collect::<String>().escape_debug(),
                        $article,
                        $prefix
                    ))
                })
            }
        }

        impl $name {
            /// The id prefix.
            pub const PREFIX: &'static str = $prefix;

            /// What every id of this kind matches (the schema's `pattern`): the prefix and
            /// up to 64 URL-safe characters, so that ids made by other backends stay valid.
            pub const PATTERN: &'static str = concat!("^", $prefix, "[A-Za-z0-9_-]{1,64}$");

            /// The `cursor` of a listing of these: the last id of the page before.
            pub const CURSOR_PATTERN: &'static str = Self::PATTERN;

            /// A fresh, time-ordered id.
            pub fn generate() -> Self {
                Self(format!("{}{}", $prefix, uuid::Uuid::now_v7().simple()))
            }

            /// The id as a string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = Error;

            /// Accepts what [`Self::PATTERN`] matches; anything else cannot name an
            /// existing resource, so it is "not found".
            fn from_str(s: &str) -> Result<Self, Error> {
                static RULE: Pattern = Pattern::new($name::PATTERN);
                if RULE.is_match(s) {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(Error::not_found($what, s.escape_debug()))
                }
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({
                    "type": "string",
                    "description": concat!("Identifier: `", $prefix, "` and an opaque, URL-safe text."),
                    "pattern": Self::PATTERN,
                })
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

prefixed_id!(
    /// Identifies a [`crate::Pet`].
    PetId, "pet_", "pet", "a pet"
);
prefixed_id!(
    /// Identifies an [`crate::Order`].
    OrderId, "ord_", "order", "an order"
);
prefixed_id!(
    /// Identifies a [`crate::Payment`].
    PaymentId, "pay_", "payment", "a payment"
);
prefixed_id!(
    /// Identifies a [`crate::ChatMessage`].
    MessageId, "msg_", "message", "a message"
);
prefixed_id!(
    /// Identifies an [`crate::Event`].
    EventId, "evt_", "event", "an event"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_and_sort_by_creation() {
        let a = PetId::generate();
        let b = PetId::generate();
        assert!(a < b);
        assert_eq!(a.as_str().parse::<PetId>().unwrap(), a);
        assert!("ord_123".parse::<PetId>().is_err());
        assert!("pet_".parse::<PetId>().is_err());
        assert!("pet_../etc".parse::<PetId>().is_err());
    }
}
