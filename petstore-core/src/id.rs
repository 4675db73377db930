//! Prefixed, time-ordered identifiers (`pet_…`, `ord_…`): sorting by id sorts by
//! creation, which is what cursor pagination walks.

/// Defines a prefixed, time-ordered id type like [`crate::PetId`]: a `String` newtype with
/// `PREFIX`, `PATTERN`, `generate()`, `as_str()`, `Display`, `FromStr` (what `PATTERN`
/// matches: the prefix and a short, URL-safe body; otherwise [`crate::Error::not_found`]
/// of `$what`), `AsRef<str>`, serde as a plain string (reading only what `PATTERN`
/// matches) and a JSON Schema carrying `PATTERN`.
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
        )]
        #[serde(transparent, crate = "petstore_core::__private::serde")]
        pub struct $name(::std::string::String);

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

            /// Accepts exactly what [`Self::PATTERN`] matches; anything else cannot name
            /// an existing resource, so it is "not found".
            fn from_str(s: &str) -> ::std::result::Result<Self, $crate::Error> {
                let body = s.strip_prefix($prefix).unwrap_or("");
                let valid = !body.is_empty()
                    && body.len() <= 64
                    && body.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if valid {
                    ::std::result::Result::Ok(Self(s.to_owned()))
                } else {
                    ::std::result::Result::Err($crate::Error::not_found($what, s.escape_debug()))
                }
            }
        }

        /// Reads only what [`Self::PATTERN`] matches, as the schema says.
        impl<'de> $crate::__private::serde::Deserialize<'de> for $name {
            fn deserialize<D: $crate::__private::serde::Deserializer<'de>>(
                d: D,
            ) -> ::std::result::Result<Self, D::Error> {
                let text = <::std::borrow::Cow<'de, str> as $crate::__private::serde::Deserialize>::deserialize(d)?;
                text.parse().map_err(|_| {
                    <D::Error as $crate::__private::serde::de::Error>::custom(::std::format!(
                        "`{}` is not a valid {} id (`{}…`)",
                        text.chars().take(80).collect::<::std::string::String>().escape_debug(),
                        $what,
                        $prefix
                    ))
                })
            }
        }

        impl $crate::__private::schemars::JsonSchema for $name {
            fn schema_name() -> ::std::borrow::Cow<'static, str> {
                ::std::borrow::Cow::Borrowed(stringify!($name))
            }

            fn json_schema(
                _: &mut $crate::__private::schemars::SchemaGenerator,
            ) -> $crate::__private::schemars::Schema {
                $crate::__private::schemars::json_schema!({
                    "type": "string",
                    "description": concat!("Identifier: `", $prefix, "` and an opaque, URL-safe text."),
                    "pattern": Self::PATTERN,
                })
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

    /// `FromStr` (written out, so that adapters' ids need no regex) accepts exactly what
    /// the schema's `PATTERN` matches.
    #[test]
    fn parsing_is_the_pattern() {
        let rule = crate::rules::Pattern::new(PetId::PATTERN);
        let body = "a_-Z9".repeat(13);
        for s in [
            "pet_1".to_owned(),
            "pet_".to_owned(),
            "pet_a b".to_owned(),
            "pet_é".to_owned(),
            "xpet_1".to_owned(),
            "pet_1\n".to_owned(),
            format!("pet_{}", &body[..64]),
            format!("pet_{}", &body[..65]),
        ] {
            assert_eq!(s.parse::<PetId>().is_ok(), rule.is_match(&s), "{s:?}");
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(
                serde_json::from_str::<PetId>(&json).is_ok(),
                rule.is_match(&s),
                "{s:?}"
            );
        }
    }
}
