//! Prefixed, time-ordered identifiers (`pet_…`, `ord_…`): sorting by id sorts by
//! creation, which is what cursor pagination walks.

/// Defines a prefixed, time-ordered id type like [`crate::PetId`]: a `String` newtype with
/// `PREFIX`, `generate()`, `as_str()`, `Display`, `FromStr` (the prefix and a short,
/// URL-safe body; otherwise [`crate::Error::not_found`] of `$what`), `AsRef<str>`, serde as a
/// plain string and a JSON Schema.
///
/// Adapters use it for their own ids, so that every id of the workspace has the same
/// shape and the same parse rules:
///
/// ```
/// petstore_core::prefixed_id!(
///     /// Identifies a widget.
///     WidgetId, "wid_", "widget"
/// );
/// let id = WidgetId::generate();
/// assert!(id.as_str().starts_with(WidgetId::PREFIX));
/// assert_eq!(id.as_str().parse::<WidgetId>().unwrap(), id);
/// assert!("pet_1".parse::<WidgetId>().is_err());
/// ```
///
/// The expansion names this crate `petstore_core`: depend on it under that name.
#[macro_export]
macro_rules! prefixed_id {
    ($(#[$meta:meta])* $name:ident, $prefix:literal, $what:literal) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash,
            $crate::__private::serde::Serialize,
            $crate::__private::serde::Deserialize,
            $crate::__private::schemars::JsonSchema,
        )]
        #[serde(transparent, crate = "petstore_core::__private::serde")]
        #[schemars(
            crate = "petstore_core::__private::schemars",
            description = concat!("Identifier, `", $prefix, "` followed by 32 hex digits.")
        )]
        pub struct $name(::std::string::String);

        impl $name {
            /// The id prefix.
            pub const PREFIX: &'static str = $prefix;

            /// A fresh, time-ordered id.
            pub fn generate() -> Self {
                Self(::std::format!(
                    "{}{}",
                    $prefix,
                    $crate::__private::uuid::Uuid::now_v7().simple()
                ))
            }

            /// The id as a string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::Error;

            /// Accepts any id with the right prefix and a short, URL-safe body, so that
            /// ids made by other backends stay valid.
            fn from_str(s: &str) -> ::std::result::Result<Self, $crate::Error> {
                let body = s.strip_prefix($prefix).unwrap_or("");
                let valid = !body.is_empty()
                    && body.len() <= 64
                    && body.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if valid {
                    ::std::result::Result::Ok(Self(s.to_owned()))
                } else {
                    ::std::result::Result::Err($crate::Error::not_found($what, s))
                }
            }
        }

        impl ::std::convert::AsRef<str> for $name {
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
