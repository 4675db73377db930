//! The opaque strings clients send back: resume tokens (`ResumeToken::from_str`),
//! channels (`Channel::from_str`), event type patterns (`TypePattern::from_str`, and
//! comma-separated lists), event types, scopes, pet statuses and ids.
//!
//! Invariants: nothing panics; whatever parses satisfies `parse(display(x)) == x`
//! (and the same through serde JSON for tokens and channels); `*` matches every type.
#![no_main]

use std::fmt::{Debug, Display};
use std::str::FromStr;

use libfuzzer_sys::fuzz_target;
use petstore_core::{
    Channel, EventFilter, EventType, OrderId, PetId, PetStatus, ResumeToken, Scope, TypePattern,
};

fn round_trip<T>(text: &str) -> Option<T>
where
    T: FromStr + Display + PartialEq + Debug,
    T::Err: Debug,
{
    let parsed = text.parse::<T>().ok()?;
    let shown = parsed.to_string();
    let again = shown
        .parse::<T>()
        .unwrap_or_else(|e| panic!("{text:?} -> {shown:?} does not parse: {e:?}"));
    assert_eq!(again, parsed, "{text:?} -> {shown:?}");
    Some(parsed)
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(token) = round_trip::<ResumeToken>(text) {
        let json = serde_json::to_string(&token).expect("serialises");
        assert_eq!(
            serde_json::from_str::<ResumeToken>(&json).expect("parses"),
            token
        );
    }
    if let Some(channel) = round_trip::<Channel>(text) {
        let json = serde_json::to_string(&channel).expect("serialises");
        assert_eq!(
            serde_json::from_str::<Channel>(&json).expect("parses"),
            channel
        );
    }
    if let Some(pattern) = round_trip::<TypePattern>(text)
        && pattern.as_str() == "*"
    {
        assert!(EventType::ALL.iter().all(|t| pattern.matches(*t)));
    }
    if let Ok(patterns) = EventFilter::parse_types(text) {
        assert!(patterns.len() <= text.split(',').count());
    }
    let _ = round_trip::<EventType>(text);
    let _ = round_trip::<Scope>(text);
    let _ = round_trip::<PetStatus>(text);
    let _ = round_trip::<PetId>(text);
    let _ = round_trip::<OrderId>(text);
});
