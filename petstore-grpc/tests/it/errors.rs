//! Core errors as gRPC statuses with rich details.

use petstore_core::{PetQuery, Principal, Scope};
use petstore_grpc::pb;
use tonic::Code;
use tonic_types::StatusExt as _;

use crate::support::{TestServer, authed};

fn reason(status: &tonic::Status) -> String {
    status
        .get_details_error_info()
        .map(|i| format!("{}/{}", i.domain, i.reason))
        .unwrap_or_default()
}

async fn pet_count(server: &TestServer) -> usize {
    server
        .store
        .pets(&Principal::anonymous(), &PetQuery::default().limit(100))
        .await
        .unwrap()
        .data
        .len()
}

#[tokio::test]
async fn unknown_ids_are_not_found() {
    let server = TestServer::start().await;
    let mut pets = server.pets().await;
    let err = pets
        .get_pet(pb::GetPetRequest {
            id: "pet_0000".to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(reason(&err), "petstore/NOT_FOUND");

    let err = server
        .orders()
        .await
        .get_order(authed(
            pb::GetOrderRequest {
                id: "ord_0000".to_owned(),
            },
            &server.admin(),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    let err = pets
        .get_pet(pb::GetPetRequest { id: String::new() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn invalid_input_lists_every_bad_field_and_creates_nothing() {
    let server = TestServer::start().await;
    let writer = server.bearer("editor", [Scope::PetsWrite]);
    let mut pets = server.pets().await;
    let bad = pb::CreatePetRequest {
        name: String::new(),
        species: "d0g".to_owned(),
        photo_urls: vec!["ftp://example.com/x.jpg".to_owned()],
        price: Some(pb::Money {
            amount: "ten".to_owned(),
            currency: "usd".to_owned(),
        }),
        ..Default::default()
    };
    let err = pets.create_pet(authed(bad, &writer)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(reason(&err), "petstore/INVALID_INPUT");
    let mut fields: Vec<_> = err
        .get_details_bad_request()
        .expect("google.rpc.BadRequest details")
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            "name",
            "photo_urls[0]",
            "price.amount",
            "price.currency",
            "species"
        ]
    );
    assert_eq!(pet_count(&server).await, 0);

    // A missing price is named too.
    let no_price = pb::CreatePetRequest {
        name: "Rex".to_owned(),
        species: "dog".to_owned(),
        ..Default::default()
    };
    let err = pets
        .create_pet(authed(no_price, &writer))
        .await
        .unwrap_err();
    let fields: Vec<_> = err
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(fields, ["price"]);

    // UpdatePet names nested fields by their path in the request.
    let rex = server.add_pet("Rex", "dog").await;
    let err = pets
        .update_pet(authed(
            pb::UpdatePetRequest {
                pet: Some(pb::Pet {
                    id: rex.id.to_string(),
                    name: "x".repeat(51),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["name".to_owned()],
                }),
                expected_version: None,
            },
            &writer,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        err.get_details_bad_request().unwrap().field_violations[0].field,
        "pet.name"
    );
    let err = pets
        .update_pet(authed(
            pb::UpdatePetRequest {
                pet: Some(pb::Pet {
                    id: rex.id.to_string(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["version".to_owned()],
                }),
                expected_version: None,
            },
            &writer,
        ))
        .await
        .unwrap_err();
    assert_eq!(
        err.get_details_bad_request().unwrap().field_violations[0].field,
        "update_mask"
    );
    let after = server
        .store
        .pet(&Principal::anonymous(), &rex.id)
        .await
        .unwrap();
    assert_eq!(after, rex, "nothing changed");
}

#[tokio::test]
async fn credentials_unauthenticated_and_permission_denied() {
    let server = TestServer::start().await;
    let rex = server.add_pet("Rex", "dog").await;
    let mut pets = server.pets().await;
    let create = || pb::CreatePetRequest {
        name: "Bella".to_owned(),
        species: "dog".to_owned(),
        price: Some(pb::Money {
            amount: "1.00".to_owned(),
            currency: "USD".to_owned(),
        }),
        ..Default::default()
    };

    // No token: writes are refused as unauthenticated.
    let err = pets.create_pet(create()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    // A bad token fails even an open read.
    let get = || pb::GetPetRequest {
        id: rex.id.to_string(),
    };
    for bad in ["Bearer not-a-jwt", "Basic YWxhZGRpbjpvcGVuc2VzYW1l"] {
        let err = pets.get_pet(authed(get(), bad)).await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{bad}");
        assert_eq!(reason(&err), "petstore/UNAUTHENTICATED");
    }
    let foreign =
        petstore_core::TokenAuthority::new(b"another secret", std::time::Duration::from_secs(60))
            .issue("mallory", Scope::ALL)
            .unwrap();
    let err = pets
        .get_pet(authed(get(), &format!("Bearer {}", foreign.access_token)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    // A valid token without the scope: permission denied.
    let reader = server.bearer("reader", [Scope::PetsRead, Scope::OrdersWrite]);
    let err = pets
        .create_pet(authed(create(), &reader))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(reason(&err), "petstore/FORBIDDEN");
    assert_eq!(pet_count(&server).await, 1);

    // The right scope works.
    pets.create_pet(authed(create(), &server.admin()))
        .await
        .unwrap();
    assert_eq!(pet_count(&server).await, 2);
}

#[tokio::test]
async fn state_conflicts_are_failed_precondition() {
    let server = TestServer::start().await;
    let rex = server.add_pet("Rex", "dog").await;
    let admin = server.admin();
    server
        .orders()
        .await
        .place_order(authed(
            pb::PlaceOrderRequest {
                pet_id: rex.id.to_string(),
                quantity: Some(1),
            },
            &admin,
        ))
        .await
        .unwrap();

    // A pet held by an order can neither be deleted nor made available.
    let mut pets = server.pets().await;
    let err = pets
        .delete_pet(authed(
            pb::DeletePetRequest {
                id: rex.id.to_string(),
                expected_version: None,
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(reason(&err), "petstore/CONFLICT");
    let err = pets
        .update_pet(authed(
            pb::UpdatePetRequest {
                pet: Some(pb::Pet {
                    id: rex.id.to_string(),
                    status: pb::PetStatus::Available.into(),
                    ..Default::default()
                }),
                update_mask: None,
                expected_version: None,
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let pet = server
        .store
        .pet(&Principal::anonymous(), &rex.id)
        .await
        .unwrap();
    assert_eq!(pet.status, petstore_core::PetStatus::Pending);

    // Quantity out of range: invalid argument.
    let err = server
        .orders()
        .await
        .place_order(authed(
            pb::PlaceOrderRequest {
                pet_id: rex.id.to_string(),
                quantity: Some(0),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn resume_tokens_out_of_range_or_malformed() {
    let server = TestServer::start().await;
    server.add_pet("Rex", "dog").await;
    let mut pets = server.pets().await;

    // A token of another log epoch (e.g. before a restart) cannot resume.
    let err = pets
        .watch_pets(pb::WatchPetsRequest {
            since: Some("0000000000000001-1".to_owned()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange);
    assert_eq!(reason(&err), "petstore/RESUME_EXPIRED");

    let err = server
        .orders()
        .await
        .watch_orders(authed(
            pb::WatchOrdersRequest {
                since: Some("yesterday".to_owned()),
                ..Default::default()
            },
            &server.admin(),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        err.get_details_bad_request().unwrap().field_violations[0].field,
        "since"
    );
}

/// Authenticate, authorise, then validate: with no token (or without the scope), an
/// incomplete request is refused for the credential, not for its fields, and nothing
/// about the input rules is said.
#[tokio::test]
async fn credentials_are_checked_before_the_request_is_read() {
    let server = TestServer::start().await;
    let reader = server.bearer("reader", [Scope::PetsRead]);
    let mut pets = server.pets().await;
    let incomplete = pb::CreatePetRequest {
        name: String::new(),
        ..Default::default()
    };
    let err = pets.create_pet(incomplete.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert!(err.get_details_bad_request().is_none());
    let err = pets
        .create_pet(authed(incomplete, &reader))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");

    let err = pets
        .update_pet(pb::UpdatePetRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    let err = pets
        .delete_pet(pb::DeletePetRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");

    let mut orders = server.orders().await;
    let err = orders
        .place_order(pb::PlaceOrderRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    let err = orders
        .pay_order(pb::PayOrderRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    let err = orders
        .cancel_order(pb::CancelOrderRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert_eq!(pet_count(&server).await, 0);
}
