//! Prefixed, time-ordered identifiers (`pet_…`, `ord_…`): sorting by id sorts by
//! creation, which is what cursor pagination walks.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::Error;

macro_rules! prefixed_id {
    ($(#[$meta:meta])* $name:ident, $prefix:literal, $what:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
        #[serde(transparent)]
        #[schemars(description = concat!("Identifier, `", $prefix, "` followed by 32 hex digits."))]
        pub struct $name(String);

        impl $name {
            /// The id prefix.
            pub const PREFIX: &'static str = $prefix;

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

            /// Accepts any id with the right prefix and a short, URL-safe body, so that
            /// ids made by other backends stay valid.
            fn from_str(s: &str) -> Result<Self, Error> {
                let body = s.strip_prefix($prefix).unwrap_or("");
                let valid = !body.is_empty()
                    && body.len() <= 64
                    && body.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if valid {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(Error::not_found($what, s))
                }
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
    PetId, "pet_", "pet"
);
prefixed_id!(
    /// Identifies an [`crate::Order`].
    OrderId, "ord_", "order"
);
prefixed_id!(
    /// Identifies a [`crate::Payment`].
    PaymentId, "pay_", "payment"
);
prefixed_id!(
    /// Identifies a [`crate::ChatMessage`].
    MessageId, "msg_", "message"
);
prefixed_id!(
    /// Identifies an [`crate::Event`].
    EventId, "evt_", "event"
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
