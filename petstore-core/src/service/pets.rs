//! Pets: the catalogue and the inventory.

use chrono::Utc;

use super::PetStore;
use super::page::{Page, paginate};
use crate::auth::{Principal, Scope};
use crate::backend::{Change, Expect, Snapshot, Write};
use crate::error::{Error, ErrorKind, Result};
use crate::event::EventData;
use crate::id::PetId;
use crate::order::{Order, OrderQuery};
use crate::pet::{Inventory, NewPet, Pet, PetPatch, PetQuery, PetStatus};

impl PetStore {
    /// One pet.
    #[tracing::instrument(level = "debug", name = "pet", skip_all, fields(sub = who.subject(), id = %id))]
    pub async fn pet(&self, who: &Principal, id: &PetId) -> Result<Pet> {
        self.authorize_read(who, Scope::PetsRead)?;
        self.store()
            .pet(id)
            .await?
            .ok_or_else(|| Error::not_found("pet", id))
    }

    /// Searches pets; pages follow `next_cursor`.
    #[tracing::instrument(level = "debug", name = "pets", skip_all, fields(sub = who.subject()))]
    pub async fn pets(&self, who: &Principal, query: &PetQuery) -> Result<Page<Pet>> {
        self.authorize_read(who, Scope::PetsRead)?;
        paginate(
            query.limit,
            query.cursor.as_deref(),
            |after: Option<PetId>, n| async move {
                self.store().pets(query, after.as_ref(), n).await
            },
        )
        .await
    }

    /// Adds a pet.
    #[tracing::instrument(level = "info", name = "create_pet", skip_all, fields(sub = who.subject()))]
    pub async fn create_pet(&self, who: &Principal, new: NewPet) -> Result<Pet> {
        who.require(Scope::PetsWrite)?;
        new.validate()?;
        let pet = new.into_pet(Utc::now());
        self.commit(
            Change::new()
                .write(Write::PutPet {
                    pet: pet.clone(),
                    expect: Expect::Absent,
                })
                .event(EventData::PetCreated(pet.clone())),
        )
        .await?;
        Ok(pet)
    }

    /// Replaces a pet's fields (`PUT`). `if_match` is the expected version.
    #[tracing::instrument(level = "info", name = "replace_pet", skip_all, fields(sub = who.subject(), id = %id))]
    pub async fn replace_pet(
        &self,
        who: &Principal,
        id: &PetId,
        new: NewPet,
        if_match: impl Into<IfMatch>,
    ) -> Result<Pet> {
        who.require(Scope::PetsWrite)?;
        new.validate()?;
        self.change_pet(id, PetPatch::from(new), if_match.into())
            .await
    }

    /// Changes some of a pet's fields (`PATCH`, JSON merge patch).
    #[tracing::instrument(level = "info", name = "update_pet", skip_all, fields(sub = who.subject(), id = %id))]
    pub async fn update_pet(
        &self,
        who: &Principal,
        id: &PetId,
        patch: PetPatch,
        if_match: impl Into<IfMatch>,
    ) -> Result<Pet> {
        who.require(Scope::PetsWrite)?;
        patch.validate()?;
        self.change_pet(id, patch, if_match.into()).await
    }

    /// Sets a pet's status.
    #[tracing::instrument(level = "info", name = "set_pet_status", skip_all, fields(sub = who.subject(), id = %id, status = ?status))]
    pub async fn set_pet_status(
        &self,
        who: &Principal,
        id: &PetId,
        status: PetStatus,
    ) -> Result<Pet> {
        self.update_pet(
            who,
            id,
            PetPatch {
                status: Some(status),
                ..PetPatch::default()
            },
            IfMatch::none(),
        )
        .await
    }

    /// The active order holding `pet`, if any.
    async fn active_order(&self, pet: &PetId) -> Result<Option<Order>> {
        let query = OrderQuery {
            pet_id: Some(pet.clone()),
            ..OrderQuery::default()
        };
        let mut after = None;
        loop {
            let page = self
                .store()
                .orders(&query, after.as_ref(), 100)
                .await?
                .items;
            if let Some(o) = page.iter().find(|o| o.status.is_active()) {
                return Ok(Some(o.clone()));
            }
            match page.last() {
                Some(last) if page.len() == 100 => after = Some(last.id.clone()),
                _ => return Ok(None),
            }
        }
    }

    async fn change_pet(&self, id: &PetId, patch: PetPatch, if_match: IfMatch) -> Result<Pet> {
        self.retrying(|| async {
            let current = self
                .store()
                .pet(id)
                .await?
                .ok_or_else(|| Error::not_found("pet", id))?;
            if_match.check(current.version)?;
            let mut next = patch.clone().apply(current.clone());
            if next == current {
                return Ok(current);
            }
            if next.status != current.status
                && next.status != PetStatus::Pending
                && let Some(order) = self.active_order(id).await?
            {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "pet `{id}` is held by order `{}`; cancel or deliver the order instead",
                        order.id
                    ),
                ));
            }
            next.version = current.version + 1;
            next.updated_at = Utc::now();
            let status_changed = next.status != current.status;
            let mut fields_changed = next.clone();
            fields_changed.status = current.status;
            fields_changed.version = current.version;
            fields_changed.updated_at = current.updated_at;
            let mut change = Change::new().write(Write::PutPet {
                pet: next.clone(),
                expect: Expect::Version(current.version),
            });
            if fields_changed != current {
                change = change.event(EventData::PetUpdated(next.clone()));
            }
            if status_changed {
                change = change.event(EventData::PetStatusChanged {
                    pet: next.clone(),
                    previous_status: current.status,
                });
            }
            self.commit(change).await?;
            Ok(next)
        })
        .await
    }

    /// Removes a pet. A pet held by an active order cannot be removed.
    #[tracing::instrument(level = "info", name = "delete_pet", skip_all, fields(sub = who.subject(), id = %id))]
    pub async fn delete_pet(
        &self,
        who: &Principal,
        id: &PetId,
        if_match: impl Into<IfMatch>,
    ) -> Result<()> {
        who.require(Scope::PetsWrite)?;
        let if_match = if_match.into();
        self.retrying(|| async {
            let current = self
                .store()
                .pet(id)
                .await?
                .ok_or_else(|| Error::not_found("pet", id))?;
            if_match.check(current.version)?;
            if let Some(order) = self.active_order(id).await? {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!("pet `{id}` is held by order `{}`", order.id),
                ));
            }
            self.commit(
                Change::new()
                    .write(Write::DeletePet {
                        id: id.clone(),
                        version: current.version,
                    })
                    .event(EventData::PetDeleted(current)),
            )
            .await?;
            Ok(())
        })
        .await
    }

    /// Pet counts per status.
    #[tracing::instrument(level = "debug", name = "inventory", skip_all, fields(sub = who.subject()))]
    pub async fn inventory(&self, who: &Principal) -> Result<Snapshot<Inventory>> {
        self.authorize_read(who, Scope::PetsRead)?;
        self.store().inventory().await
    }

    /// Adds `pets` in one commit, once per store: the sample catalogue of a server
    /// that may restart (or run as several instances) on the same database.
    /// `Ok(false)` when an earlier call added them already.
    pub(crate) async fn create_pets_once(
        &self,
        who: &Principal,
        key: &str,
        pets: Vec<NewPet>,
    ) -> Result<bool> {
        who.require(Scope::PetsWrite)?;
        let now = Utc::now();
        let mut change = Change::new().write(Write::PutIdempotency {
            key: key.to_owned(),
            record: crate::backend::IdempotencyRecord {
                fingerprint: key.to_owned(),
                resource: String::new(),
                created_at: now,
            },
        });
        for new in pets {
            new.validate()?;
            let pet = new.into_pet(now);
            change = change
                .write(Write::PutPet {
                    pet: pet.clone(),
                    expect: Expect::Absent,
                })
                .event(EventData::PetCreated(pet));
        }
        match self.commit(change).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_stale_write() => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// A precondition on a pet's version (HTTP `If-Match`, a gRPC/GraphQL expected
/// version): the change applies only when the stored version is one of these.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IfMatch(Option<Vec<u64>>);

impl IfMatch {
    /// No precondition.
    pub fn none() -> Self {
        Self(None)
    }

    /// Any of `versions` (none of them: the precondition never holds).
    pub fn any_of(versions: impl IntoIterator<Item = u64>) -> Self {
        Self(Some(versions.into_iter().collect()))
    }

    fn check(&self, version: u64) -> Result<()> {
        match &self.0 {
            Some(accepted) if !accepted.contains(&version) => Err(Error::new(
                ErrorKind::PreconditionFailed,
                match accepted.as_slice() {
                    [one] => format!("expected version {one}, the current version is {version}"),
                    _ => format!("the current version {version} is not one of those expected"),
                },
            )),
            _ => Ok(()),
        }
    }
}

impl From<Option<u64>> for IfMatch {
    fn from(version: Option<u64>) -> Self {
        Self(version.map(|v| vec![v]))
    }
}
