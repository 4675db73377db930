//! A small sample catalogue and two users, for examples and demos.

use crate::auth::{Principal, Scope};
use crate::error::{ErrorKind, Result};
use crate::money::{Currency, Money};
use crate::pet::{NewPet, PetStatus};
use crate::service::PetStore;

/// A seeded user: name, password and scopes.
#[derive(Debug, Clone, Copy)]
pub struct SeedUser {
    /// Login name.
    pub username: &'static str,
    /// Password (sample data: printed by the example server).
    pub password: &'static str,
    /// Scopes of the user's tokens.
    pub scopes: &'static [Scope],
}

/// The users [`seed`] creates.
pub const SEED_USERS: [SeedUser; 2] = [
    SeedUser {
        username: "admin",
        password: "admin-password",
        scopes: &[Scope::Admin],
    },
    SeedUser {
        username: "alice",
        password: "alice-password",
        scopes: &[
            Scope::PetsRead,
            Scope::OrdersRead,
            Scope::OrdersWrite,
            Scope::ChatWrite,
        ],
    },
];

/// The sample catalogue.
pub fn sample_pets() -> Vec<NewPet> {
    let pet = |name: &str,
               species: &str,
               breed: &str,
               age: u32,
               price: &str,
               tags: &[&str],
               status: PetStatus| NewPet {
        name: name.to_owned(),
        species: species.to_owned(),
        breed: Some(breed.to_owned()),
        age: Some(age),
        status: Some(status),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        photo_urls: vec![format!(
            "https://example.com/photos/{}.jpg",
            name.to_lowercase()
        )],
        price: Money::parse(price, Currency::USD)
            .unwrap_or(Money::new(Default::default(), Currency::USD)),
    };
    vec![
        pet(
            "Rex",
            "dog",
            "German Shepherd",
            3,
            "450.00",
            &["friendly", "trained"],
            PetStatus::Available,
        ),
        pet(
            "Bella",
            "dog",
            "Labrador Retriever",
            1,
            "600.00",
            &["puppy", "family"],
            PetStatus::Available,
        ),
        pet(
            "Milo",
            "cat",
            "Maine Coon",
            2,
            "350.00",
            &["fluffy", "calm"],
            PetStatus::Available,
        ),
        pet(
            "Luna",
            "cat",
            "Siamese",
            4,
            "300.00",
            &["vocal"],
            PetStatus::Available,
        ),
        pet(
            "Kiwi",
            "bird",
            "Budgerigar",
            1,
            "35.50",
            &["small", "singing"],
            PetStatus::Available,
        ),
        pet(
            "Nemo",
            "fish",
            "Clownfish",
            1,
            "19.99",
            &["small", "aquarium"],
            PetStatus::Available,
        ),
        pet(
            "Thumper",
            "rabbit",
            "Holland Lop",
            2,
            "80.00",
            &["small", "family"],
            PetStatus::Available,
        ),
        pet(
            "Shelly",
            "turtle",
            "Red-eared Slider",
            10,
            "45.00",
            &["calm", "aquarium"],
            PetStatus::Sold,
        ),
    ]
}

/// Adds [`SEED_USERS`] that do not exist yet and, once per store, the sample
/// catalogue: a server restarting on the same database (or a second instance) does
/// not add it again.
pub async fn seed(store: &PetStore) -> Result<()> {
    let system = Principal::system("seed");
    for user in SEED_USERS {
        match store
            .create_user(&system, user.username, user.password, user.scopes.to_vec())
            .await
        {
            Err(e) if e.kind() == ErrorKind::Conflict => {}
            other => {
                other?;
            }
        }
    }
    store
        .create_pets_once(&system, "seed:catalogue:v1", sample_pets())
        .await?;
    Ok(())
}
