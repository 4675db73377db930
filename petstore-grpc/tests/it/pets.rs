//! PetService: unary calls, ListPets and WatchPets streams.

use petstore_core::{PetStatus, Principal, ResumeToken, Scope};
use petstore_grpc::pb;
use prost_types::FieldMask;
use tonic::Code;

use crate::support::{TestServer, authed, next, within};

fn create_request(name: &str) -> pb::CreatePetRequest {
    pb::CreatePetRequest {
        name: name.to_owned(),
        species: "Dog".to_owned(),
        breed: Some("Beagle".to_owned()),
        age: Some(3),
        status: pb::PetStatus::Unspecified.into(),
        tags: vec!["Friendly".to_owned()],
        photo_urls: vec!["https://example.com/rex.jpg".to_owned()],
        price: Some(pb::Money {
            amount: "250.00".to_owned(),
            currency: "USD".to_owned(),
        }),
    }
}

#[tokio::test]
async fn create_get_update_delete_round_trip() {
    let server = TestServer::start().await;
    let writer = server.bearer("editor", [Scope::PetsWrite]);
    let mut pets = server.pets().await;

    let created = pets
        .create_pet(authed(create_request("Rex"), &writer))
        .await
        .unwrap()
        .into_inner();
    assert!(created.id.starts_with("pet_"), "{}", created.id);
    assert_eq!(created.species, "dog", "the core normalises species");
    assert_eq!(created.tags, ["friendly"]);
    assert_eq!(created.status(), pb::PetStatus::Available);
    assert_eq!(created.price.as_ref().unwrap().amount, "250.00");
    assert_eq!(created.version, 1);
    assert!(created.created_at.is_some());

    // Reads are open: no token needed.
    let got = pets
        .get_pet(pb::GetPetRequest {
            id: created.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, created);

    // Masked update: only `name` and `breed` (cleared) change.
    let update = pb::UpdatePetRequest {
        pet: Some(pb::Pet {
            id: created.id.clone(),
            name: "Rex II".to_owned(),
            species: "ignored".to_owned(),
            ..Default::default()
        }),
        update_mask: Some(FieldMask {
            paths: vec!["name".to_owned(), "breed".to_owned()],
        }),
        expected_version: Some(1),
    };
    let updated = pets
        .update_pet(authed(update.clone(), &writer))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.name, "Rex II");
    assert_eq!(updated.breed, None);
    assert_eq!(updated.species, "dog");
    assert_eq!(updated.version, 2);

    // The same expected version again is stale: ABORTED, nothing changes.
    let mut stale = update;
    stale.pet.as_mut().unwrap().name = "Rex III".to_owned();
    let err = pets.update_pet(authed(stale, &writer)).await.unwrap_err();
    assert_eq!(err.code(), Code::Aborted, "{err:?}");
    let id = created.id.parse().unwrap();
    let current = server
        .store
        .pet(&Principal::anonymous(), &id)
        .await
        .unwrap();
    assert_eq!((current.name.as_str(), current.version), ("Rex II", 2));

    // Without a mask, the fields set are applied: a status change.
    let sold = pets
        .update_pet(authed(
            pb::UpdatePetRequest {
                pet: Some(pb::Pet {
                    id: created.id.clone(),
                    status: pb::PetStatus::Sold.into(),
                    ..Default::default()
                }),
                update_mask: None,
                expected_version: None,
            },
            &writer,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sold.status(), pb::PetStatus::Sold);
    assert_eq!(sold.name, "Rex II");

    pets.delete_pet(authed(
        pb::DeletePetRequest {
            id: created.id.clone(),
            expected_version: Some(sold.version),
        },
        &writer,
    ))
    .await
    .unwrap();
    let err = pets
        .get_pet(pb::GetPetRequest { id: created.id })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn list_pets_streams_every_match_across_pages() {
    let server = TestServer::start().await;
    // More than one store page (100) of dogs, and a few cats.
    for i in 0..130 {
        server.add_pet(&format!("Dog {i}"), "dog").await;
    }
    for i in 0..3 {
        server.add_pet(&format!("Cat {i}"), "cat").await;
    }
    let mut pets = server.pets().await;

    let response = pets
        .list_pets(pb::ListPetsRequest {
            species: Some("dog".to_owned()),
            ..Default::default()
        })
        .await
        .unwrap();
    let position: ResumeToken = response
        .metadata()
        .get("petstore-position")
        .expect("petstore-position header")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(position, server.store.head().await.unwrap());
    let mut stream = response.into_inner();
    let mut ids = Vec::new();
    while let Some(pet) = within(stream.message()).await.unwrap() {
        assert_eq!(pet.species, "dog");
        ids.push(pet.id);
    }
    assert_eq!(ids.len(), 130);
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, ids, "in id order, without duplicates");

    // `limit` stops the stream early; filters combine.
    let mut limited = pets
        .list_pets(pb::ListPetsRequest {
            limit: Some(5),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut n = 0;
    while within(limited.message()).await.unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 5);

    let mut cats = pets
        .list_pets(pb::ListPetsRequest {
            q: Some("cat 1".to_owned()),
            status: pb::PetStatus::Available.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let cat = next(&mut cats).await.unwrap();
    assert_eq!(cat.name, "Cat 1");
    assert!(within(cats.message()).await.unwrap().is_none());
}

#[tokio::test]
async fn watch_pets_receives_core_events_and_resumes_from_since() {
    let server = TestServer::start().await;
    let system = Principal::system("test");
    let mut pets = server.pets().await;

    let mut watch = pets
        .watch_pets(pb::WatchPetsRequest::default())
        .await
        .unwrap()
        .into_inner();
    // Once the call is open the subscription is live: these core commands show up.
    let rex = server.add_pet("Rex", "dog").await;
    server
        .store
        .set_pet_status(&system, &rex.id, PetStatus::Sold)
        .await
        .unwrap();

    let created = next(&mut watch).await.unwrap();
    assert_eq!(created.r#type, "pet.created");
    assert_eq!(created.subject, rex.id.as_str());
    assert_eq!(created.specversion, "1.0");
    assert_eq!(created.source, "/petstore");
    let Some(pb::event::Payload::Pet(pet)) = &created.payload else {
        panic!("typed pet payload expected: {created:?}");
    };
    assert_eq!(pet.name, "Rex");
    let data: serde_json::Value = serde_json::from_str(&created.data).unwrap();
    assert_eq!(data["name"], "Rex");

    let changed = next(&mut watch).await.unwrap();
    assert_eq!(changed.r#type, "pet.status_changed");
    assert_eq!(changed.previous_status.as_deref(), Some("available"));
    let (a, b): (ResumeToken, ResumeToken) = (
        created.offset.parse().unwrap(),
        changed.offset.parse().unwrap(),
    );
    assert_eq!(b.offset, a.offset + 1);

    // The client goes away; more happens meanwhile.
    drop(watch);
    let bella = server.add_pet("Bella", "dog").await;

    // Resuming from the first event's offset replays what followed it, then goes live.
    let mut resumed = pets
        .watch_pets(pb::WatchPetsRequest {
            since: Some(created.offset.clone()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let replayed = next(&mut resumed).await.unwrap();
    assert_eq!(replayed.id, changed.id);
    let missed = next(&mut resumed).await.unwrap();
    assert_eq!(
        (missed.r#type.as_str(), missed.subject.as_str()),
        ("pet.created", bella.id.as_str())
    );
    let milo = server.add_pet("Milo", "cat").await;
    let live = next(&mut resumed).await.unwrap();
    assert_eq!(live.subject, milo.id.as_str());
}

#[tokio::test]
async fn watch_pets_filters_by_pet_and_type() {
    let server = TestServer::start().await;
    let system = Principal::system("test");
    let rex = server.add_pet("Rex", "dog").await;
    let bella = server.add_pet("Bella", "dog").await;
    let mut pets = server.pets().await;

    let mut rex_status = pets
        .watch_pets(pb::WatchPetsRequest {
            pet_id: Some(rex.id.to_string()),
            types: vec!["pet.status_changed".to_owned()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // Neither Bella's change nor Rex's rename matches.
    server
        .store
        .set_pet_status(&system, &bella.id, PetStatus::Sold)
        .await
        .unwrap();
    server
        .store
        .update_pet(
            &system,
            &rex.id,
            petstore_core::PetPatch {
                name: Some("Rex II".to_owned()),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    server
        .store
        .set_pet_status(&system, &rex.id, PetStatus::Sold)
        .await
        .unwrap();
    let event = next(&mut rex_status).await.unwrap();
    assert_eq!(
        (event.r#type.as_str(), event.subject.as_str()),
        ("pet.status_changed", rex.id.as_str())
    );

    let err = pets
        .watch_pets(pb::WatchPetsRequest {
            types: vec!["pet.eaten".to_owned()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn a_watcher_too_slow_to_keep_up_is_aborted_and_can_resume() {
    use petstore_core::{LogConfig, MemoryStore, PetStore, ServiceConfig, TokenAuthority};
    use tonic_types::StatusExt as _;

    let store = PetStore::new(
        MemoryStore::new(LogConfig::default().subscriber_buffer(4)),
        TokenAuthority::random(std::time::Duration::from_secs(60)),
        ServiceConfig::default(),
    );
    let server = TestServer::start_on(store, Default::default()).await;
    let mut pets = server.pets().await;
    let mut watch = pets
        .watch_pets(pb::WatchPetsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let start = server.store.head().await.unwrap();
    // Far more events than the HTTP/2 window and the subscriber buffer hold, while
    // the client reads nothing.
    for i in 0..600 {
        server.add_pet(&format!("Pet {i}"), "dog").await;
    }
    let mut last_offset = None;
    let err = loop {
        match next(&mut watch).await {
            Ok(event) => last_offset = Some(event.offset),
            Err(status) => break status,
        }
    };
    assert_eq!(err.code(), Code::Aborted, "{err:?}");
    assert_eq!(err.get_details_error_info().unwrap().reason, "LAGGED");

    // Resuming from the last offset received picks up where the stream broke off.
    let last: ResumeToken = last_offset.map_or(start, |o| o.parse().unwrap());
    let mut resumed = pets
        .watch_pets(pb::WatchPetsRequest {
            since: Some(last.to_string()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let first = next(&mut resumed).await.unwrap();
    let first: ResumeToken = first.offset.parse().unwrap();
    assert_eq!(first.offset, last.offset + 1);
}
