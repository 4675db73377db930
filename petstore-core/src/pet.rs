//! Pets: the catalogue.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, Validator};
use crate::id::PetId;
use crate::money::{Money, Price};
use crate::rules::{
    AGE_MAX, BREED, PET_NAME, PHOTO_URL, PHOTOS_MAX, SPECIES, TAG, TAGS_MAX, whole,
};
use crate::service::MAX_LIMIT;

/// Where a pet stands in the sale cycle.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum PetStatus {
    /// On sale.
    Available,
    /// An order holds it.
    Pending,
    /// Delivered to its new home.
    Sold,
}

impl PetStatus {
    /// Every status.
    pub const ALL: [PetStatus; 3] = [PetStatus::Available, PetStatus::Pending, PetStatus::Sold];

    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            PetStatus::Available => "available",
            PetStatus::Pending => "pending",
            PetStatus::Sold => "sold",
        }
    }
}

impl fmt::Display for PetStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PetStatus {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        PetStatus::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| {
                Error::invalid_field(
                    "status",
                    format!("unknown pet status `{s}` (available, pending, sold)"),
                )
            })
    }
}

/// A pet in the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Pet {
    /// Identifier (`pet_…`).
    pub id: PetId,
    /// Name.
    pub name: String,
    /// Species, e.g. `dog`, `cat` (lower case).
    pub species: String,
    /// Breed, if known.
    pub breed: Option<String>,
    /// Age in whole years, if known.
    pub age: Option<u32>,
    /// Sale status.
    pub status: PetStatus,
    /// Free-form tags (lower case).
    pub tags: Vec<String>,
    /// Photo URLs (http or https).
    pub photo_urls: Vec<String>,
    /// Price.
    pub price: Money,
    /// When the pet was added.
    pub created_at: DateTime<Utc>,
    /// When the pet last changed.
    pub updated_at: DateTime<Utc>,
    /// Incremented by every change; the ETag of the pet.
    pub version: u64,
}

/// The fields of a new pet (`POST /v1/pets`), also the body of a full replace (`PUT`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPet {
    /// Name: one line of text (leading and trailing spaces are trimmed).
    #[schemars(length(min = PET_NAME.min, max = PET_NAME.max), pattern(PET_NAME.pattern))]
    pub name: String,
    /// Species, e.g. `dog`: letters, spaces and hyphens (stored in lower case).
    #[schemars(length(min = SPECIES.min, max = SPECIES.max), pattern(SPECIES.pattern))]
    pub species: String,
    /// Breed.
    #[serde(default)]
    #[schemars(length(min = BREED.min, max = BREED.max), pattern(BREED.pattern))]
    pub breed: Option<String>,
    /// Age in whole years.
    #[serde(default, deserialize_with = "whole::optional")]
    #[schemars(range(max = AGE_MAX))]
    pub age: Option<u32>,
    /// Initial status (default `available`).
    #[serde(default)]
    pub status: Option<PetStatus>,
    /// Tags (stored trimmed, in lower case, without duplicates).
    #[serde(default)]
    #[schemars(length(max = TAGS_MAX), inner(length(min = TAG.min, max = TAG.max), pattern(TAG.pattern)))]
    pub tags: Vec<String>,
    /// Photo URLs (http or https).
    #[serde(default)]
    #[schemars(length(max = PHOTOS_MAX), inner(length(min = PHOTO_URL.min, max = PHOTO_URL.max), pattern(PHOTO_URL.pattern)))]
    pub photo_urls: Vec<String>,
    /// Price.
    #[schemars(with = "Price")]
    pub price: Money,
}

/// A partial change (JSON merge patch semantics: absent fields stay as they are;
/// `breed`/`age` may be set to `null` to clear them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PetPatch {
    /// New name.
    #[serde(default)]
    #[schemars(length(min = PET_NAME.min, max = PET_NAME.max), pattern(PET_NAME.pattern))]
    pub name: Option<String>,
    /// New species.
    #[serde(default)]
    #[schemars(length(min = SPECIES.min, max = SPECIES.max), pattern(SPECIES.pattern))]
    pub species: Option<String>,
    /// New breed; `null` clears it.
    #[serde(
        default,
        with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>", length(min = BREED.min, max = BREED.max), pattern(BREED.pattern))]
    pub breed: Option<Option<String>>,
    /// New age in years; `null` clears it.
    #[serde(
        default,
        serialize_with = "double_option::serialize",
        deserialize_with = "whole::patch",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<u32>", range(max = AGE_MAX))]
    pub age: Option<Option<u32>>,
    /// New status.
    #[serde(default)]
    pub status: Option<PetStatus>,
    /// New tags (replaces the list).
    #[serde(default)]
    #[schemars(length(max = TAGS_MAX), inner(length(min = TAG.min, max = TAG.max), pattern(TAG.pattern)))]
    pub tags: Option<Vec<String>>,
    /// New photo URLs (replaces the list).
    #[serde(default)]
    #[schemars(length(max = PHOTOS_MAX), inner(length(min = PHOTO_URL.min, max = PHOTO_URL.max), pattern(PHOTO_URL.pattern)))]
    pub photo_urls: Option<Vec<String>>,
    /// New price.
    #[serde(default)]
    #[schemars(with = "Option<Price>")]
    pub price: Option<Money>,
}

/// Distinguishes "absent" (`None`) from "null" (`Some(None)`) for merge patches.
mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<T: Serialize, S: Serializer>(
        v: &Option<Option<T>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(inner) => inner.serialize(s),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}

/// Search filters and page position for listing pets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[non_exhaustive]
pub struct PetQuery {
    /// Only pets with this status.
    pub status: Option<PetStatus>,
    /// Only pets of this species.
    pub species: Option<String>,
    /// Only pets carrying this tag.
    pub tag: Option<String>,
    /// Case-insensitive text search in name, species, breed and tags.
    pub q: Option<String>,
    /// Page size (default 20).
    #[schemars(range(min = 1, max = MAX_LIMIT))]
    pub limit: Option<u32>,
    /// Opaque cursor from a previous page's `next_cursor`.
    #[schemars(pattern(PetId::CURSOR_PATTERN))]
    pub cursor: Option<String>,
}

impl PetQuery {
    /// Filters by status.
    pub fn status(mut self, status: PetStatus) -> Self {
        self.status = Some(status);
        self
    }
    /// Filters by species.
    pub fn species(mut self, species: impl Into<String>) -> Self {
        self.species = Some(species.into());
        self
    }
    /// Filters by tag.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tag = Some(tag.into());
        self
    }
    /// Text search.
    pub fn q(mut self, q: impl Into<String>) -> Self {
        self.q = Some(q.into());
        self
    }
    /// Page size.
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = Some(limit);
        self
    }
    /// Continues after a previous page.
    pub fn cursor(mut self, cursor: impl Into<String>) -> Self {
        self.cursor = Some(cursor.into());
        self
    }

    /// Whether `pet` passes the filters (not the cursor).
    pub fn matches(&self, pet: &Pet) -> bool {
        self.status.is_none_or(|s| pet.status == s)
            && self
                .species
                .as_deref()
                .is_none_or(|s| pet.species.eq_ignore_ascii_case(s))
            && self
                .tag
                .as_deref()
                .is_none_or(|t| pet.tags.iter().any(|x| x.eq_ignore_ascii_case(t)))
            && self.q.as_deref().is_none_or(|q| {
                let q = q.to_lowercase();
                pet.name.to_lowercase().contains(&q)
                    || pet.species.contains(&q)
                    || pet
                        .breed
                        .as_deref()
                        .is_some_and(|b| b.to_lowercase().contains(&q))
                    || pet.tags.iter().any(|t| t.contains(&q))
            })
    }
}

/// Counts of pets per status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Inventory {
    /// Pets on sale.
    pub available: u64,
    /// Pets held by an order.
    pub pending: u64,
    /// Pets sold.
    pub sold: u64,
}

impl Inventory {
    /// Counts `pets`.
    pub fn count<'a>(pets: impl IntoIterator<Item = &'a Pet>) -> Self {
        let mut inv = Inventory::default();
        for pet in pets {
            inv.add(pet.status, 1);
        }
        inv
    }

    pub(crate) fn add(&mut self, status: PetStatus, n: i64) {
        let slot = match status {
            PetStatus::Available => &mut self.available,
            PetStatus::Pending => &mut self.pending,
            PetStatus::Sold => &mut self.sold,
        };
        *slot = slot.saturating_add_signed(n);
    }
}

fn normalise_tags(tags: &[String]) -> Vec<String> {
    let mut out: Vec<String> = tags.iter().map(|t| t.trim().to_lowercase()).collect();
    out.sort();
    out.dedup();
    out
}

fn validate_age(v: &mut Validator, age: u32) {
    v.check(age <= AGE_MAX, "age", format!("must be at most {AGE_MAX}"));
}

fn validate_lists(v: &mut Validator, tags: &[String], photos: &[String]) {
    v.items("tags", tags.len(), TAGS_MAX);
    for (i, tag) in tags.iter().enumerate() {
        v.text(&format!("tags[{i}]"), tag, &TAG);
    }
    v.items("photo_urls", photos.len(), PHOTOS_MAX);
    for (i, url) in photos.iter().enumerate() {
        v.text(&format!("photo_urls[{i}]"), url, &PHOTO_URL);
    }
}

impl NewPet {
    /// Checks every field, reporting all problems at once.
    pub fn validate(&self) -> Result<()> {
        let mut v = Validator::default();
        v.text("name", &self.name, &PET_NAME);
        v.text("species", &self.species, &SPECIES);
        if let Some(breed) = &self.breed {
            v.text("breed", breed, &BREED);
        }
        if let Some(age) = self.age {
            validate_age(&mut v, age);
        }
        validate_lists(&mut v, &self.tags, &self.photo_urls);
        self.price.validate("price", &mut v);
        v.finish()
    }

    /// A new pet from these fields (not validated: see [`NewPet::validate`]), with a
    /// fresh id, created at `now`.
    pub fn into_pet(self, now: DateTime<Utc>) -> Pet {
        Pet {
            id: PetId::generate(),
            name: self.name.trim().to_owned(),
            species: self.species.trim().to_lowercase(),
            breed: self.breed.map(|b| b.trim().to_owned()),
            age: self.age,
            status: self.status.unwrap_or(PetStatus::Available),
            tags: normalise_tags(&self.tags),
            photo_urls: self.photo_urls,
            price: self.price,
            created_at: now,
            updated_at: now,
            version: 1,
        }
    }
}

impl PetPatch {
    /// Whether the patch changes nothing.
    pub fn is_empty(&self) -> bool {
        *self == PetPatch::default()
    }

    /// Checks every present field.
    pub fn validate(&self) -> Result<()> {
        let mut v = Validator::default();
        if let Some(name) = &self.name {
            v.text("name", name, &PET_NAME);
        }
        if let Some(species) = &self.species {
            v.text("species", species, &SPECIES);
        }
        if let Some(Some(breed)) = &self.breed {
            v.text("breed", breed, &BREED);
        }
        if let Some(Some(age)) = self.age {
            validate_age(&mut v, age);
        }
        validate_lists(
            &mut v,
            self.tags.as_deref().unwrap_or_default(),
            self.photo_urls.as_deref().unwrap_or_default(),
        );
        if let Some(price) = &self.price {
            price.validate("price", &mut v);
        }
        v.finish()
    }

    /// The pet with this patch applied (not yet versioned).
    pub(crate) fn apply(self, mut pet: Pet) -> Pet {
        if let Some(name) = self.name {
            pet.name = name.trim().to_owned();
        }
        if let Some(species) = self.species {
            pet.species = species.trim().to_lowercase();
        }
        if let Some(breed) = self.breed {
            pet.breed = breed.map(|b| b.trim().to_owned());
        }
        if let Some(age) = self.age {
            pet.age = age;
        }
        if let Some(status) = self.status {
            pet.status = status;
        }
        if let Some(tags) = self.tags {
            pet.tags = normalise_tags(&tags);
        }
        if let Some(photos) = self.photo_urls {
            pet.photo_urls = photos;
        }
        if let Some(price) = self.price {
            pet.price = price;
        }
        pet
    }
}

impl From<NewPet> for PetPatch {
    /// A full replace expressed as a patch (absent optional fields are cleared).
    fn from(p: NewPet) -> Self {
        PetPatch {
            name: Some(p.name),
            species: Some(p.species),
            breed: Some(p.breed),
            age: Some(p.age),
            status: p.status,
            tags: Some(p.tags),
            photo_urls: Some(p.photo_urls),
            price: Some(p.price),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;

    fn new_pet(name: &str) -> NewPet {
        NewPet {
            name: name.into(),
            species: "dog".into(),
            breed: None,
            age: Some(2),
            status: None,
            tags: vec!["Friendly".into(), "friendly".into()],
            photo_urls: vec![],
            price: Money::parse("10.00", Currency::USD).unwrap(),
        }
    }

    #[test]
    fn name_must_be_1_to_50_chars() {
        assert!(new_pet("Rex").validate().is_ok());
        let err = new_pet("").validate().unwrap_err();
        assert_eq!(err.field_errors()[0].field, "name");
        assert!(new_pet(&"x".repeat(51)).validate().is_err());
        assert!(new_pet(&"é".repeat(50)).validate().is_ok());
    }

    #[test]
    fn all_problems_are_reported_together() {
        let mut p = new_pet("");
        p.species = "d0g".into();
        p.price = Money::new(rust_decimal::Decimal::NEGATIVE_ONE, Currency::USD);
        p.photo_urls = vec!["ftp://x".into()];
        let err = p.validate().unwrap_err();
        let fields: Vec<_> = err
            .field_errors()
            .iter()
            .map(|f| f.field.as_str())
            .collect();
        assert_eq!(fields, ["name", "species", "photo_urls[0]", "price.amount"]);
    }

    #[test]
    fn tags_are_normalised() {
        let pet = new_pet("Rex").into_pet(Utc::now());
        assert_eq!(pet.tags, ["friendly"]);
        assert_eq!(pet.status, PetStatus::Available);
    }

    #[test]
    fn statuses_print_and_parse_as_their_wire_names() {
        let printed: Vec<String> = PetStatus::ALL.iter().map(|s| s.to_string()).collect();
        assert_eq!(printed, ["available", "pending", "sold"]);
        for status in PetStatus::ALL {
            assert_eq!(status.as_str().parse::<PetStatus>().unwrap(), status);
        }
        assert!("adopted".parse::<PetStatus>().is_err());
    }

    /// A text search matches the species, the breed or a tag alone.
    #[test]
    fn a_text_search_matches_any_one_field() {
        let mut new = new_pet("Rex");
        new.breed = Some("Labrador".into());
        let pet = new.into_pet(Utc::now());
        for q in ["DO", "labra", "FRIEND", "rex"] {
            assert!(PetQuery::default().q(q).matches(&pet), "{q}");
        }
        assert!(!PetQuery::default().q("grumpy").matches(&pet));
    }

    /// A patch checks every field it sets, and only those.
    #[test]
    fn a_patch_checks_the_fields_it_sets() {
        assert!(PetPatch::default().validate().is_ok());
        let patch = PetPatch {
            name: Some(String::new()),
            age: Some(Some(AGE_MAX + 1)),
            tags: Some(vec!["ok".into(), " ".into()]),
            ..PetPatch::default()
        };
        let err = patch.validate().unwrap_err();
        let fields: Vec<_> = err
            .field_errors()
            .iter()
            .map(|f| f.field.as_str())
            .collect();
        assert_eq!(fields, ["name", "age", "tags[1]"]);
    }

    /// A full replace as a patch sets every field, clearing the absent optional ones.
    #[test]
    fn a_replace_is_a_patch_of_every_field() {
        let new = new_pet("Rex");
        let patch = PetPatch::from(new.clone());
        let expected = PetPatch {
            name: Some("Rex".into()),
            species: Some("dog".into()),
            breed: Some(None),
            age: Some(Some(2)),
            status: None,
            tags: Some(new.tags.clone()),
            photo_urls: Some(vec![]),
            price: Some(new.price),
        };
        assert_eq!(patch, expected);
    }

    #[test]
    fn merge_patch_distinguishes_null_from_absent() {
        let patch: PetPatch = serde_json::from_str(r#"{"breed": null}"#).unwrap();
        assert_eq!(patch.breed, Some(None));
        assert!(!patch.is_empty());
        let patch: PetPatch = serde_json::from_str(r#"{}"#).unwrap();
        assert!(patch.is_empty());
        assert!(serde_json::from_str::<PetPatch>(r#"{"colour": "red"}"#).is_err());
    }
}
