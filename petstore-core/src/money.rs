//! Exact money: a decimal amount and an ISO 4217 currency. Never a float.

use std::fmt;

use rust_decimal::Decimal;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::Validator;

/// An amount of money. The amount travels as a decimal string (`"19.99"`) so that no
/// protocol rounds it through a float.
///
/// It reads only from an object (`{"amount": "19.99", "currency": "USD"}`): serde would
/// also fill the struct from a positional array (`["19.99", "USD"]`), which no client
/// means to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Money {
    /// The amount, as a decimal string with at most 2 fraction digits.
    #[schemars(with = "String", regex(pattern = r"^-?[0-9]{1,12}(\.[0-9]{1,2})?$"))]
    pub amount: Decimal,
    /// ISO 4217 currency code, three upper-case letters.
    #[schemars(with = "String", regex(pattern = r"^[A-Z]{3}$"))]
    pub currency: Currency,
}

/// An ISO 4217 currency code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

impl Currency {
    /// US dollars.
    pub const USD: Currency = Currency(*b"USD");
    /// Euros.
    pub const EUR: Currency = Currency(*b"EUR");

    /// The code as a string.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl TryFrom<String> for Currency {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        match s.as_bytes() {
            [a, b, c] if [a, b, c].iter().all(|x| x.is_ascii_uppercase()) => {
                Ok(Currency([*a, *b, *c]))
            }
            _ => Err(format!(
                "`{s}` is not an ISO 4217 currency code (three upper-case letters)"
            )),
        }
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.as_str().to_owned()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Money {
    /// Largest amount accepted (a pet store, not a bank).
    pub const MAX: Decimal = Decimal::from_parts(1_000_000_000, 0, 0, false, 2); // 10,000,000.00

    /// `amount` in `currency`.
    pub fn new(amount: Decimal, currency: Currency) -> Self {
        Self { amount, currency }
    }

    /// Parses a decimal string amount, e.g. `Money::parse("19.99", Currency::USD)`.
    pub fn parse(amount: &str, currency: Currency) -> Option<Self> {
        amount.parse().ok().map(|amount| Self { amount, currency })
    }

    /// `self * n`, exactly.
    pub fn times(self, n: u32) -> Self {
        Self {
            amount: self.amount * Decimal::from(n),
            currency: self.currency,
        }
    }

    pub(crate) fn validate(&self, field: &str, v: &mut Validator) {
        v.check(
            !self.amount.is_sign_negative(),
            &format!("{field}.amount"),
            "must not be negative",
        );
        v.check(
            self.amount.scale() <= 2 || self.amount.normalize().scale() <= 2,
            &format!("{field}.amount"),
            "must have at most 2 fraction digits",
        );
        v.check(
            self.amount <= Self::MAX,
            &format!("{field}.amount"),
            "must not exceed 10000000.00",
        );
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount, self.currency)
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Fields {
            amount: Decimal,
            currency: Currency,
        }

        struct ObjectOnly;

        impl<'de> serde::de::Visitor<'de> for ObjectOnly {
            type Value = Fields;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object with `amount` and `currency`")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Fields, A::Error> {
                Fields::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }

        let Fields { amount, currency } = d.deserialize_map(ObjectOnly)?;
        Ok(Money { amount, currency })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_exact_and_serialises_as_string() {
        let m = Money::parse("0.10", Currency::USD).unwrap().times(3);
        assert_eq!(m.amount.to_string(), "0.30");
        let json = serde_json::to_value(m).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"amount": "0.30", "currency": "USD"})
        );
        let back: Money = serde_json::from_value(json).unwrap();
        assert_eq!(back, m);
        assert!(serde_json::from_str::<Money>(r#"{"amount":"1","currency":"usd"}"#).is_err());
        let positional = serde_json::from_str::<Money>(r#"["1.00","USD"]"#).unwrap_err();
        assert!(
            positional
                .to_string()
                .contains("expected an object with `amount` and `currency`"),
            "{positional}"
        );
        assert!(serde_json::from_str::<Money>(r#"{"amount":"1"}"#).is_err());
    }
}
