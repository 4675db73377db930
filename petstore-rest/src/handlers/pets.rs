//! `/v1/pets` and `/v1/inventory`.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use petstore_core::{NewPet, PetId, PetPatch, PetQuery};
use petstore_http::Problem;

use super::{conditional, page, resource, with_position};
use crate::extract::{BasePath, Caller, JsonBody, Params, if_match};
use crate::routes::AppState;

pub(crate) async fn list(
    State(s): State<AppState>,
    Caller(who): Caller,
    Params(query): Params<PetQuery>,
) -> Result<Response, Problem> {
    Ok(page(s.service.pets(&who, &query).await?))
}

pub(crate) async fn create(
    State(s): State<AppState>,
    Caller(who): Caller,
    BasePath(base): BasePath,
    JsonBody(new): JsonBody<NewPet>,
) -> Result<Response, Problem> {
    let pet = s.service.create_pet(&who, new).await?;
    let location = format!("{base}/v1/pets/{}", pet.id);
    Ok(resource(
        StatusCode::CREATED,
        &pet,
        &pet.version.to_string(),
        Some(location),
    ))
}

pub(crate) async fn get(
    State(s): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let id: PetId = id.parse()?;
    let pet = s.service.pet(&who, &id).await?;
    conditional(&headers, &pet, &pet.version.to_string())
}

pub(crate) async fn replace(
    State(s): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(new): JsonBody<NewPet>,
) -> Result<Response, Problem> {
    let id: PetId = id.parse()?;
    let version = if_match(&headers)?;
    let pet = s.service.replace_pet(&who, &id, new, version).await?;
    Ok(resource(
        StatusCode::OK,
        &pet,
        &pet.version.to_string(),
        None,
    ))
}

pub(crate) async fn update(
    State(s): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(patch): JsonBody<PetPatch>,
) -> Result<Response, Problem> {
    let id: PetId = id.parse()?;
    let version = if_match(&headers)?;
    let pet = s.service.update_pet(&who, &id, patch, version).await?;
    Ok(resource(
        StatusCode::OK,
        &pet,
        &pet.version.to_string(),
        None,
    ))
}

pub(crate) async fn delete(
    State(s): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let id: PetId = id.parse()?;
    let version = if_match(&headers)?;
    s.service.delete_pet(&who, &id, version).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(crate) async fn inventory(
    State(s): State<AppState>,
    Caller(who): Caller,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let snapshot = s.service.inventory(&who).await?;
    // The log position changes whenever the counts can: a valid (if eager) validator.
    let tag = snapshot.position.to_string();
    let response = conditional(&headers, &snapshot.items, &tag)?;
    Ok(with_position(response, Some(snapshot.position)))
}
