//! The JSON bodies of the REST API, parsed as the REST adapter parses them (serde_json
//! into the core types) and validated as the core validates them.
//!
//! The first byte picks the type (`NewPet`, `PetPatch`, `NewOrder`, `Credentials`);
//! the rest is the body. Invariants: nothing panics; whatever parses serialises and
//! parses back to the same value; the total of an order for a valid pet is exact.
#![no_main]

use libfuzzer_sys::fuzz_target;
use petstore_core::{Credentials, NewOrder, NewPet, PetPatch};
use serde::Serialize;
use serde::de::DeserializeOwned;

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(value: &T) {
    let json = serde_json::to_vec(value).expect("a parsed body serialises");
    let back: T = serde_json::from_slice(&json).unwrap_or_else(|e| {
        panic!(
            "{value:?} serialised as {} does not parse: {e}",
            String::from_utf8_lossy(&json)
        )
    });
    assert_eq!(&back, value, "parse(serialise(x)) != x");
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 4 {
        0 => {
            if let Ok(pet) = serde_json::from_slice::<NewPet>(body) {
                round_trip(&pet);
                if pet.validate().is_ok() {
                    // What `place_order` computes for a valid pet.
                    let total = pet.price.times(NewOrder::MAX_QUANTITY);
                    assert!(total.amount >= pet.price.amount);
                }
            }
        }
        1 => {
            if let Ok(patch) = serde_json::from_slice::<PetPatch>(body) {
                round_trip(&patch);
                let _ = patch.validate();
                let _ = patch.is_empty();
            }
        }
        2 => {
            if let Ok(order) = serde_json::from_slice::<NewOrder>(body) {
                round_trip(&order);
                let valid = order.validate().is_ok();
                assert_eq!(
                    valid,
                    (1..=NewOrder::MAX_QUANTITY).contains(&order.quantity)
                );
            }
        }
        _ => {
            if let Ok(credentials) = serde_json::from_slice::<Credentials>(body) {
                round_trip(&credentials);
                // `Debug` never shows the password.
                let password = format!("{:?}", credentials.password);
                let shown = format!("{credentials:?}");
                let elsewhere = format!("{:?}", credentials.username).contains(&password)
                    || "\"<redacted>\"".contains(&password);
                assert!(elsewhere || !shown.contains(&password), "{shown}");
            }
        }
    }
});
