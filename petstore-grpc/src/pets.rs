//! `petstore.v1.PetService`.

use futures_util::{StreamExt as _, stream};
use petstore_core::{
    Channel, Error, FieldError, NewPet, Page, Pet, PetId, PetPatch, PetQuery, PetStore, Principal,
    Scope,
};
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};

use crate::auth::principal;
use crate::convert;
use crate::error::{nest_fields, status};
use crate::pb;
use crate::streams::{Guarded, Streams};

/// Pets fetched per store read while streaming `ListPets`.
const PAGE: u32 = 100;

#[derive(Debug, Clone)]
pub(crate) struct PetApi {
    service: PetStore,
    streams: Streams,
}

impl PetApi {
    pub(crate) fn new(store: PetStore, streams: Streams) -> Self {
        Self {
            service: store,
            streams,
        }
    }
}

/// Reads a pet id; empty is an invalid argument, a malformed one does not exist.
pub(crate) fn pet_id(field: &str, id: &str) -> Result<PetId, Status> {
    if id.is_empty() {
        return Err(status(Error::invalid_field(field, "is required")));
    }
    id.parse().map_err(status)
}

fn list_query(r: &pb::ListPetsRequest) -> Result<PetQuery, Error> {
    let mut query = PetQuery::default();
    if let Some(s) =
        convert::parse_pet_status("status", r.status).map_err(|f| Error::invalid(vec![f]))?
    {
        query = query.status(s);
    }
    query.species = r.species.clone();
    query.tag = r.tag.clone();
    query.q = r.q.clone();
    if r.limit == Some(0) {
        return Err(Error::invalid_field("limit", "must be at least 1"));
    }
    query.limit = Some(r.limit.map_or(PAGE, |l| l.min(PAGE)));
    Ok(query)
}

fn new_pet(r: pb::CreatePetRequest) -> Result<NewPet, Error> {
    let mut errors = Vec::new();
    let status = convert::parse_pet_status("status", r.status).unwrap_or_else(|f| {
        errors.push(f);
        None
    });
    let price = convert::parse_money("price", r.price.as_ref(), &mut errors);
    let new = NewPet {
        name: r.name,
        species: r.species,
        breed: r.breed,
        age: r.age,
        status,
        tags: r.tags,
        photo_urls: r.photo_urls,
        price: price.unwrap_or(petstore_core::Money::new(
            Default::default(),
            petstore_core::Currency::USD,
        )),
    };
    if errors.is_empty() {
        return Ok(new);
    }
    // Report the wire-level problems together with the domain's own.
    if let Err(domain) = new.validate() {
        let more: Vec<FieldError> = domain
            .field_errors()
            .iter()
            .filter(|f| !errors.iter().any(|e| f.field.starts_with(&e.field)))
            .cloned()
            .collect();
        errors.extend(more);
    }
    Err(Error::invalid(errors))
}

/// The fields `UpdatePet` may change, by mask path.
const MUTABLE: [&str; 8] = [
    "name",
    "species",
    "breed",
    "age",
    "status",
    "tags",
    "photo_urls",
    "price",
];

fn pet_patch(pet: &pb::Pet, mask: Option<&prost_types::FieldMask>) -> Result<PetPatch, Error> {
    let paths: Vec<&str> = match mask {
        Some(m) if !m.paths.is_empty() => m.paths.iter().map(String::as_str).collect(),
        // No mask: every field set to a non-default value.
        _ => MUTABLE
            .into_iter()
            .filter(|f| match *f {
                "name" => !pet.name.is_empty(),
                "species" => !pet.species.is_empty(),
                "breed" => pet.breed.is_some(),
                "age" => pet.age.is_some(),
                "status" => pet.status != 0,
                "tags" => !pet.tags.is_empty(),
                "photo_urls" => !pet.photo_urls.is_empty(),
                _ => pet.price.is_some(),
            })
            .collect(),
    };
    let mut patch = PetPatch::default();
    let mut errors = Vec::new();
    for path in paths {
        match path {
            "name" => patch.name = Some(pet.name.clone()),
            "species" => patch.species = Some(pet.species.clone()),
            "breed" => patch.breed = Some(pet.breed.clone()),
            "age" => patch.age = Some(pet.age),
            "status" => match convert::parse_pet_status("pet.status", pet.status) {
                Ok(Some(s)) => patch.status = Some(s),
                Ok(None) => errors.push(FieldError::new(
                    "pet.status",
                    "is in update_mask, so it must be set",
                )),
                Err(f) => errors.push(f),
            },
            "tags" => patch.tags = Some(pet.tags.clone()),
            "photo_urls" => patch.photo_urls = Some(pet.photo_urls.clone()),
            "price" => {
                patch.price = convert::parse_money("pet.price", pet.price.as_ref(), &mut errors)
            }
            other => errors.push(FieldError::new(
                "update_mask",
                format!(
                    "`{other}` is not a field that can be updated ({})",
                    MUTABLE.join(", ")
                ),
            )),
        }
    }
    if errors.is_empty() {
        Ok(patch)
    } else {
        Err(Error::invalid(errors))
    }
}

enum Step {
    Ready(Page<Pet>),
    Fetch(PetQuery),
    Done,
}

/// Streams every page, reading the next page only once the previous one is sent.
fn list_stream(
    store: PetStore,
    who: Principal,
    first: Page<Pet>,
    query: PetQuery,
) -> impl futures_util::Stream<Item = Result<pb::Pet, Status>> + Send + 'static {
    stream::unfold(Step::Ready(first), move |step| {
        let (store, who, mut query) = (store.clone(), who.clone(), query.clone());
        async move {
            let page = match step {
                Step::Done => return None,
                Step::Ready(page) => page,
                Step::Fetch(q) => match store.pets(&who, &q).await {
                    Ok(page) => page,
                    Err(e) => return Some((vec![Err(status(e))], Step::Done)),
                },
            };
            let next = match page.next_cursor {
                Some(cursor) => {
                    query.cursor = Some(cursor);
                    Step::Fetch(query)
                }
                None => Step::Done,
            };
            Some((
                page.data.iter().map(|p| Ok(convert::pet(p))).collect(),
                next,
            ))
        }
    })
    .flat_map(stream::iter)
}

#[tonic::async_trait]
impl pb::pet_service_server::PetService for PetApi {
    async fn get_pet(
        &self,
        request: Request<pb::GetPetRequest>,
    ) -> Result<Response<pb::Pet>, Status> {
        let who = principal(&request);
        let id = pet_id("id", &request.get_ref().id)?;
        let pet = self.service.pet(&who, &id).await.map_err(status)?;
        Ok(Response::new(convert::pet(&pet)))
    }

    type ListPetsStream = Guarded<pb::Pet>;

    async fn list_pets(
        &self,
        request: Request<pb::ListPetsRequest>,
    ) -> Result<Response<Self::ListPetsStream>, Status> {
        let who = principal(&request);
        let query = list_query(request.get_ref()).map_err(status)?;
        let first = self.service.pets(&who, &query).await.map_err(status)?;
        let position = first.position;
        let pets = list_stream(self.service.clone(), who, first, query);
        let pets = match request.get_ref().limit {
            Some(limit) => pets.take(limit as usize).left_stream(),
            None => pets.right_stream(),
        };
        let mut response = Response::new(self.streams.guard(pets, request.metadata()));
        if let Some(position) = position
            && let Ok(value) = MetadataValue::try_from(position.to_string())
        {
            response.metadata_mut().insert("petstore-position", value);
        }
        Ok(response)
    }

    async fn create_pet(
        &self,
        request: Request<pb::CreatePetRequest>,
    ) -> Result<Response<pb::Pet>, Status> {
        let who = principal(&request);
        // Authenticate and authorise before reading the request: a caller without the
        // scope learns nothing about the validation rules.
        who.require(Scope::PetsWrite).map_err(status)?;
        let new = new_pet(request.into_inner()).map_err(status)?;
        let pet = self.service.create_pet(&who, new).await.map_err(status)?;
        Ok(Response::new(convert::pet(&pet)))
    }

    async fn update_pet(
        &self,
        request: Request<pb::UpdatePetRequest>,
    ) -> Result<Response<pb::Pet>, Status> {
        let who = principal(&request);
        who.require(Scope::PetsWrite).map_err(status)?;
        let r = request.into_inner();
        let Some(pet) = r.pet else {
            return Err(status(Error::invalid_field("pet", "is required")));
        };
        let id = pet_id("pet.id", &pet.id)?;
        let patch = pet_patch(&pet, r.update_mask.as_ref()).map_err(status)?;
        let pet = self
            .service
            .update_pet(&who, &id, patch, r.expected_version)
            .await
            .map_err(|e| status(nest_fields(e, "pet.")))?;
        Ok(Response::new(convert::pet(&pet)))
    }

    async fn delete_pet(
        &self,
        request: Request<pb::DeletePetRequest>,
    ) -> Result<Response<()>, Status> {
        let who = principal(&request);
        who.require(Scope::PetsWrite).map_err(status)?;
        let r = request.get_ref();
        let id = pet_id("id", &r.id)?;
        self.service
            .delete_pet(&who, &id, r.expected_version)
            .await
            .map_err(status)?;
        Ok(Response::new(()))
    }

    type WatchPetsStream = Guarded<pb::Event>;

    async fn watch_pets(
        &self,
        request: Request<pb::WatchPetsRequest>,
    ) -> Result<Response<Self::WatchPetsStream>, Status> {
        let who = principal(&request);
        let r = request.get_ref();
        let since = convert::since(r.since.as_deref()).map_err(status)?;
        let channel = match r.pet_id.as_deref() {
            None | Some("") => Channel::Pets,
            Some(id) => Channel::Pet(
                id.parse::<PetId>()
                    .map_err(|_| status(Error::invalid_field("pet_id", "is not a pet id")))?,
            ),
        };
        let events = self
            .streams
            .watch(
                &self.service,
                &who,
                since,
                &r.types,
                channel,
                request.metadata(),
            )
            .await?;
        Ok(Response::new(events))
    }
}
