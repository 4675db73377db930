//! The input rules of the domain types, declared once.
//!
//! Each rule is a static that two readers share: the type's JSON Schema (a
//! `#[schemars(length(..), pattern(..))]` attribute naming the static) and its
//! `validate()`. So the OpenAPI, MCP and AsyncAPI documents state exactly what the
//! service checks, and a schema-valid input is a valid one.
//!
//! Patterns are written in the subset that JSON Schema (ECMA-262), Rust's `regex` and
//! Python's `re` read alike: `\xNN` and `\uNNNN` escapes, explicit classes, no
//! look-around. Lengths count Unicode scalar values, as JSON Schema's `maxLength` does.

use std::fmt;
use std::sync::OnceLock;

use regex::Regex;

use crate::error::Validator;

/// Control characters (Unicode `Cc`, what [`char::is_control`] matches).
macro_rules! control {
    () => {
        r"\x00-\x1f\x7f-\x9f"
    };
}

/// Control characters except tab and line feed (multi-line text).
macro_rules! control_but_tab_lf {
    () => {
        r"\x00-\x08\x0b-\x1f\x7f-\x9f"
    };
}

/// White space that is not a control character (Unicode `White_Space` minus `Cc`,
/// what [`char::is_whitespace`] adds to the controls).
macro_rules! space {
    () => {
        r"\x20\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
    };
}

/// A regular expression that is both a schema's `pattern` and a validation check.
#[derive(Debug)]
pub(crate) struct Pattern {
    source: &'static str,
    compiled: OnceLock<Regex>,
}

impl Pattern {
    pub(crate) const fn new(source: &'static str) -> Self {
        Self {
            source,
            compiled: OnceLock::new(),
        }
    }

    /// Whether the whole of `text` matches (every pattern is anchored).
    pub(crate) fn is_match(&self, text: &str) -> bool {
        self.compiled
            .get_or_init(|| {
                // The sources are constants; `every_pattern_compiles` proves they parse.
                Regex::new(self.source).unwrap_or_else(|e| panic!("rule pattern: {e}"))
            })
            .is_match(text)
    }
}

/// The source, as the `pattern` keyword of a schema.
impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.source)
    }
}

/// A rule for a string: a length in characters and a pattern.
#[derive(Debug)]
pub(crate) struct Text {
    /// Fewest characters.
    pub(crate) min: usize,
    /// Most characters.
    pub(crate) max: usize,
    /// What the value must match.
    pub(crate) pattern: Pattern,
    /// What the pattern asks for, as the message of a value that does not match.
    pub(crate) requirement: &'static str,
}

impl Text {
    /// Whether `value` keeps the rule.
    pub(crate) fn accepts(&self, value: &str) -> bool {
        (self.min..=self.max).contains(&value.chars().count()) && self.pattern.is_match(value)
    }
}

/// One line of text with a visible character and no control character.
const LINE: &str = concat!(
    "^[^",
    control!(),
    "]*[^",
    control!(),
    space!(),
    "][^",
    control!(),
    "]*$"
);

const LINE_REQUIREMENT: &str =
    "must contain a visible character and no control characters (such as a line break)";

/// A pet's name.
pub(crate) static PET_NAME: Text = Text {
    min: 1,
    max: 50,
    pattern: Pattern::new(LINE),
    requirement: LINE_REQUIREMENT,
};

/// A pet's breed.
pub(crate) static BREED: Text = Text {
    min: 1,
    max: 50,
    pattern: Pattern::new(LINE),
    requirement: LINE_REQUIREMENT,
};

/// A pet's species: letters, spaces and hyphens.
pub(crate) static SPECIES: Text = Text {
    min: 1,
    max: 30,
    pattern: Pattern::new(r"^[\p{L} -]*\p{L}[\p{L} -]*$"),
    requirement: "may contain only letters, spaces and hyphens, and at least one letter",
};

/// One tag.
pub(crate) static TAG: Text = Text {
    min: 1,
    max: 30,
    pattern: Pattern::new(LINE),
    requirement: LINE_REQUIREMENT,
};

/// Most tags on a pet.
pub(crate) const TAGS_MAX: usize = 20;

/// One photo URL.
pub(crate) static PHOTO_URL: Text = Text {
    min: 1,
    max: 2048,
    pattern: Pattern::new(concat!("^https?://[^", control!(), space!(), "]+$")),
    requirement: "must be an http(s) URL without spaces",
};

/// Most photo URLs on a pet.
pub(crate) const PHOTOS_MAX: usize = 10;

/// Oldest age, in whole years.
pub(crate) const AGE_MAX: u32 = 100;

/// A chat room name.
pub(crate) static ROOM: Text = Text {
    min: 1,
    max: 64,
    pattern: Pattern::new(crate::chat::ROOM_PATTERN),
    requirement: "may contain only a-z, 0-9, `_` and `-`",
};

/// The text of a chat message: may span lines (tabs and line feeds are allowed).
pub(crate) static CHAT_TEXT: Text = Text {
    min: 1,
    max: crate::NewChatMessage::TEXT_MAX,
    pattern: Pattern::new(concat!(
        "^[^",
        control_but_tab_lf!(),
        "]*[^",
        control!(),
        space!(),
        "][^",
        control_but_tab_lf!(),
        "]*$"
    )),
    requirement: "must contain a visible character and no control characters other than tab and line feed",
};

/// A user's login name.
pub(crate) static USERNAME: Text = Text {
    min: 3,
    max: 32,
    pattern: Pattern::new("^[a-z0-9_.-]+$"),
    requirement: "may contain only a-z, 0-9, `_`, `.` and `-`",
};

/// Fewest characters of a password.
pub(crate) const PASSWORD_MIN: usize = 8;
/// Most characters of a password.
pub(crate) const PASSWORD_MAX: usize = 128;

/// A payment-method token of the built-in processor.
pub(crate) static PAYMENT_TOKEN: Text = Text {
    min: 5,
    max: 64,
    pattern: Pattern::new("^tok_[A-Za-z0-9_]+$"),
    requirement: "must be a payment token like `tok_visa` (`tok_` and letters, digits or `_`)",
};

/// A client's idempotency key: printable ASCII (what an HTTP header carries intact),
/// not starting or ending with a space (HTTP would strip it).
pub(crate) static IDEMPOTENCY_KEY: Text = Text {
    min: 1,
    max: 255,
    pattern: Pattern::new(r"^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$"),
    requirement: "must be printable ASCII, not starting or ending with a space",
};

/// An amount of money as text: no sign, no exponent, at most 2 fraction digits.
pub(crate) static AMOUNT: Pattern = Pattern::new(r"^(?:0|[1-9][0-9]{0,11})(?:\.[0-9]{1,2})?$");

/// A price: an [`AMOUNT`] of at most 10000000.00.
pub(crate) static PRICE: Pattern =
    Pattern::new(r"^(?:(?:0|[1-9][0-9]{0,6})(?:\.[0-9]{1,2})?|10000000(?:\.0{1,2})?)$");

/// An ISO 4217 currency code.
pub(crate) static CURRENCY: Pattern = Pattern::new("^[A-Z]{3}$");

/// Whole numbers as JSON Schema's `integer` has them: `1.0` is the integer 1, so a
/// schema-valid `1.0` reads as `1` (serde alone would refuse it for a `u32`).
pub(crate) mod whole {
    use std::fmt;

    use serde::de::{self, Deserialize, Deserializer, Visitor};

    /// A `u32` read from any JSON number without a fraction.
    struct Whole(u32);

    impl<'de> Deserialize<'de> for Whole {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Number;

            impl Visitor<'_> for Number {
                type Value = Whole;

                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a whole number from 0 to 4294967295")
                }

                fn visit_u64<E: de::Error>(self, n: u64) -> Result<Whole, E> {
                    u32::try_from(n)
                        .map(Whole)
                        .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(n), &self))
                }

                fn visit_i64<E: de::Error>(self, n: i64) -> Result<Whole, E> {
                    u32::try_from(n)
                        .map(Whole)
                        .map_err(|_| E::invalid_value(de::Unexpected::Signed(n), &self))
                }

                fn visit_f64<E: de::Error>(self, n: f64) -> Result<Whole, E> {
                    if n.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&n) {
                        // Whole and in range: the cast is exact.
                        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                        Ok(Whole(n as u32))
                    } else {
                        Err(E::invalid_value(de::Unexpected::Float(n), &self))
                    }
                }
            }

            d.deserialize_any(Number)
        }
    }

    /// A required whole number.
    pub(crate) fn required<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        Whole::deserialize(d).map(|w| w.0)
    }

    /// An optional whole number (`null` is `None`).
    pub(crate) fn optional<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
        Option::<Whole>::deserialize(d).map(|w| w.map(|w| w.0))
    }

    /// A merge-patch whole number: present (`Some`), `null` included (`Some(None)`).
    pub(crate) fn patch<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<u32>>, D::Error> {
        optional(d).map(Some)
    }
}

impl Validator {
    /// Checks `value` against `rule`, reporting the first thing wrong with it.
    pub(crate) fn text(&mut self, field: &str, value: &str, rule: &Text) {
        if self.length(field, value, rule.min, rule.max) && !rule.pattern.is_match(value) {
            self.push(field, rule.requirement);
        }
    }

    /// Checks that `value` has `min` to `max` characters; whether it does.
    pub(crate) fn length(&mut self, field: &str, value: &str, min: usize, max: usize) -> bool {
        let len = value.chars().count();
        if len < min {
            self.push(
                field,
                if min == 1 {
                    "must not be empty".to_owned()
                } else {
                    format!("must have at least {min} characters")
                },
            );
            false
        } else if len > max {
            self.push(field, format!("must have at most {max} characters"));
            false
        } else {
            true
        }
    }

    /// Checks that a list has at most `max` items.
    pub(crate) fn items(&mut self, field: &str, len: usize, max: usize) {
        self.check(len <= max, field, format!("must have at most {max} items"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts() -> [(&'static str, &'static Text); 9] {
        [
            ("name", &PET_NAME),
            ("breed", &BREED),
            ("species", &SPECIES),
            ("tag", &TAG),
            ("photo", &PHOTO_URL),
            ("room", &ROOM),
            ("chat", &CHAT_TEXT),
            ("username", &USERNAME),
            ("token", &PAYMENT_TOKEN),
        ]
    }

    #[test]
    fn every_pattern_compiles() {
        for (what, rule) in texts() {
            assert!(Regex::new(rule.pattern.source).is_ok(), "{what}");
        }
        for p in [&AMOUNT, &PRICE, &CURRENCY] {
            assert!(Regex::new(p.source).is_ok(), "{}", p.source);
        }
    }

    #[test]
    fn a_line_has_a_visible_character_and_no_control_character() {
        let line = &PET_NAME.pattern;
        for ok in ["Rex", " Rex ", "é", "Mr. 🐶", "a\u{a0}b"] {
            assert!(line.is_match(ok), "{ok:?}");
        }
        for bad in [
            "",
            " ",
            "\u{3000}",
            "a\nb",
            "a\u{0}",
            "\u{85}x",
            "tab\there",
        ] {
            assert!(!line.is_match(bad), "{bad:?}");
        }
        // Whitespace in the pattern is exactly what Rust calls whitespace.
        for c in (0..=0x10ffff).filter_map(char::from_u32) {
            let alone = c.to_string();
            let visible = !c.is_whitespace() && !c.is_control();
            assert_eq!(line.is_match(&alone), visible, "U+{:04X}", c as u32);
        }
    }

    #[test]
    fn chat_text_may_span_lines() {
        assert!(CHAT_TEXT.pattern.is_match("hi\n\tthere"));
        assert!(!CHAT_TEXT.pattern.is_match("\n\t "));
        assert!(!CHAT_TEXT.pattern.is_match("bell\u{7}"));
        assert!(!CHAT_TEXT.pattern.is_match("cr\r\n"));
    }

    #[test]
    fn prices_stop_at_ten_million() {
        for ok in ["0", "0.5", "19.99", "9999999.99", "10000000", "10000000.00"] {
            assert!(PRICE.is_match(ok) && AMOUNT.is_match(ok), "{ok}");
        }
        for bad in [
            "10000000.01",
            "10000001",
            "-1",
            "1.999",
            "01",
            "1e3",
            "1_000",
            "+1",
            ".5",
            "1.",
        ] {
            assert!(!PRICE.is_match(bad), "{bad}");
        }
        assert!(AMOUNT.is_match("100000000.00"));
        assert_eq!(
            crate::Money::MAX.to_string(),
            "10000000.00",
            "Money::MAX is the largest price"
        );
        assert!(PRICE.is_match(&crate::Money::MAX.to_string()));
    }

    #[test]
    fn whole_numbers_may_be_written_as_floats() {
        #[derive(serde::Deserialize)]
        struct N {
            #[serde(deserialize_with = "whole::required")]
            n: u32,
        }
        let read = |json: &str| serde_json::from_str::<N>(json).map(|v| v.n);
        assert_eq!(read(r#"{"n": 3}"#).unwrap(), 3);
        assert_eq!(read(r#"{"n": 3.0}"#).unwrap(), 3);
        assert_eq!(read(r#"{"n": 4294967295}"#).unwrap(), u32::MAX);
        for bad in ["3.5", "-1", "4294967296", "1e10", "\"3\"", "null"] {
            assert!(read(&format!(r#"{{"n": {bad}}}"#)).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_first_problem_of_a_value_is_reported() {
        let mut v = Validator::default();
        v.text("name", "", &PET_NAME);
        v.text("name", &"x".repeat(51), &PET_NAME);
        v.text("name", "a\nb", &PET_NAME);
        v.text("name", "ok", &PET_NAME);
        let messages: Vec<String> = v
            .finish()
            .unwrap_err()
            .field_errors()
            .iter()
            .map(|f| f.message.clone())
            .collect();
        assert_eq!(
            messages,
            [
                "must not be empty",
                "must have at most 50 characters",
                LINE_REQUIREMENT
            ]
        );
    }
}
