//! Exact money: a decimal amount and an ISO 4217 currency. Never a float.

use std::fmt;

use rust_decimal::Decimal;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{FieldError, Validator};
use crate::rules::{AMOUNT, CURRENCY, PRICE};

/// An amount of money. The amount travels as a decimal string (`"19.99"`) so that no
/// protocol rounds it through a float.
///
/// It reads only from an object (`{"amount": "19.99", "currency": "USD"}`): serde would
/// also fill the struct from a positional array (`["19.99", "USD"]`), which no client
/// means to send. The amount text must match the schema's pattern (no sign, exponent or
/// digit separator), so that what the schema allows is exactly what is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Money {
    /// The amount, as a decimal string with at most 2 fraction digits.
    #[schemars(with = "String", pattern(AMOUNT))]
    pub amount: Decimal,
    /// ISO 4217 currency code, three upper-case letters.
    #[schemars(with = "String", pattern(CURRENCY))]
    pub currency: Currency,
}

/// A price: an amount of money of at most 10000000.00.
///
/// Only the schema of a price: the value is a [`Money`], checked by `Money::validate`.
#[derive(JsonSchema)]
#[schemars(
    deny_unknown_fields,
    description = "A price: an amount of money of at most 10000000.00."
)]
#[allow(dead_code, reason = "only its schema is used")]
pub(crate) struct Price {
    /// The amount, as a decimal string with at most 2 fraction digits, at most `10000000.00`.
    #[schemars(with = "String", pattern(PRICE))]
    amount: Decimal,
    /// ISO 4217 currency code, three upper-case letters.
    #[schemars(with = "String", pattern(CURRENCY))]
    currency: Currency,
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
            &[a, b, c] if CURRENCY.is_match(&s) => Ok(Currency([a, b, c])),
            _ => Err(format!(
                "`{}` is not an ISO 4217 currency code (three upper-case letters)",
                s.escape_debug()
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

    /// Parses a decimal string amount, e.g. `Money::parse("19.99", Currency::USD)`: digits
    /// with at most 2 fraction digits, no sign, exponent or separator.
    pub fn parse(amount: &str, currency: Currency) -> Option<Self> {
        parse_amount(amount).map(|amount| Self { amount, currency })
    }

    /// Reads an amount and a currency code given as text by a client (a GraphQL or gRPC
    /// input), naming what is wrong with them as `{field}.amount` / `{field}.currency`.
    pub fn from_text(
        field: &str,
        amount: &str,
        currency: &str,
    ) -> std::result::Result<Self, Vec<FieldError>> {
        let amount = parse_amount(amount).ok_or_else(|| {
            FieldError::new(format!("{field}.amount"), AMOUNT_REQUIREMENT.to_owned())
        });
        let currency = Currency::try_from(currency.to_owned())
            .map_err(|e| FieldError::new(format!("{field}.currency"), e));
        match (amount, currency) {
            (Ok(amount), Ok(currency)) => Ok(Self { amount, currency }),
            (amount, currency) => Err(amount.err().into_iter().chain(currency.err()).collect()),
        }
    }

    /// `self * n`, exactly.
    pub fn times(self, n: u32) -> Self {
        Self {
            amount: self.amount * Decimal::from(n),
            currency: self.currency,
        }
    }

    /// Checks `self` as a price (the [`Price`] schema).
    pub(crate) fn validate(&self, field: &str, v: &mut Validator) {
        v.check(
            PRICE.is_match(&self.amount.to_string()),
            &format!("{field}.amount"),
            "must be at least 0 and at most 10000000.00, with at most 2 fraction digits",
        );
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount, self.currency)
    }
}

/// What the text of an amount must be.
const AMOUNT_REQUIREMENT: &str =
    "must be a decimal string such as \"12.50\" (no sign, at most 2 fraction digits)";

fn parse_amount(text: &str) -> Option<Decimal> {
    AMOUNT.is_match(text).then(|| text.parse().ok()).flatten()
}

/// The amount of a [`Money`] as the schema has it: a string matching [`AMOUNT`].
struct AmountText(Decimal);

impl<'de> Deserialize<'de> for AmountText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        parse_amount(&text)
            .map(AmountText)
            .ok_or_else(|| serde::de::Error::custom(AMOUNT_REQUIREMENT))
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Fields {
            amount: AmountText,
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

        let Fields {
            amount: AmountText(amount),
            currency,
        } = d.deserialize_map(ObjectOnly)?;
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
        for bad in ["1e3", "1_000", "-1", "+1", "1.999", " 1", "01"] {
            let json = format!(r#"{{"amount":"{bad}","currency":"USD"}}"#);
            assert!(serde_json::from_str::<Money>(&json).is_err(), "{bad}");
            assert_eq!(Money::parse(bad, Currency::USD), None, "{bad}");
        }
        assert!(serde_json::from_str::<Money>(r#"{"amount":1,"currency":"USD"}"#).is_err());
    }

    #[test]
    fn money_prints_as_amount_then_currency() {
        let price = Money::parse("12.50", Currency::EUR).unwrap();
        assert_eq!(price.to_string(), "12.50 EUR");
        assert_eq!(Currency::USD.to_string(), "USD");
    }

    #[test]
    fn text_inputs_name_each_bad_part() {
        assert_eq!(
            Money::from_text("price", "12.50", "EUR").unwrap(),
            Money::parse("12.50", Currency::EUR).unwrap()
        );
        let errors = Money::from_text("price", "12,50", "eur").unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["price.amount", "price.currency"]);
    }
}
