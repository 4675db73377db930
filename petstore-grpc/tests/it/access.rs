//! Every mutating call needs its scope: `UNAUTHENTICATED` without a token or with a bad
//! one, `PERMISSION_DENIED` with a token lacking the scope, and nothing changes.
//!
//! The methods come from the served descriptor set, so a new RPC cannot escape this
//! test: one it does not know fails it.

use petstore_core::{NewOrder, OrderQuery, PetQuery, Principal, Scope};
use petstore_grpc::pb;
use prost::Message as _;
use prost_types::FileDescriptorSet;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Status};

use crate::support::{TestServer, next, within};

/// The calls that only read: open to anonymous callers while reads are open.
const READS: [&str; 6] = [
    "PetService/GetPet",
    "PetService/ListPets",
    "PetService/WatchPets",
    "StoreService/GetOrder",
    "StoreService/GetInventory",
    "StoreService/WatchOrders",
];

/// Every method of package `petstore.v1`, as `Service/Method`.
fn methods() -> Vec<String> {
    let set = FileDescriptorSet::decode(pb::FILE_DESCRIPTOR_SET).unwrap();
    let file = set
        .file
        .iter()
        .find(|f| f.package() == "petstore.v1")
        .unwrap();
    file.service
        .iter()
        .flat_map(|s| {
            s.method
                .iter()
                .map(move |m| format!("{}/{}", s.name(), m.name()))
        })
        .collect()
}

fn request<T>(message: T, authorization: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(a) = authorization {
        request
            .metadata_mut()
            .insert("authorization", a.parse().unwrap());
    }
    request
}

/// Everything a refused call must leave alone: the log head and every resource.
async fn state(server: &TestServer) -> (String, Value, Value) {
    let system = Principal::system("test");
    let head = server.store.head().await.unwrap().to_string();
    let pets = server
        .store
        .pets(&system, &PetQuery::default().limit(100))
        .await
        .unwrap();
    let orders = server
        .store
        .orders(&system, &OrderQuery::default().limit(100))
        .await
        .unwrap();
    (
        head,
        serde_json::to_value(pets.data).unwrap(),
        serde_json::to_value(orders.data).unwrap(),
    )
}

/// Makes a valid `method` call on real resources; `None` for a method this test does
/// not know.
async fn call(
    server: &TestServer,
    method: &str,
    auth: Option<&str>,
    pet: &str,
    order: &str,
) -> Option<Result<(), Status>> {
    let pet_msg = || pb::Pet {
        id: pet.to_owned(),
        name: "Max".to_owned(),
        ..Default::default()
    };
    let result = match method {
        "PetService/CreatePet" => server
            .pets()
            .await
            .create_pet(request(
                pb::CreatePetRequest {
                    name: "Max".to_owned(),
                    species: "dog".to_owned(),
                    price: Some(pb::Money {
                        amount: "5.00".to_owned(),
                        currency: "USD".to_owned(),
                    }),
                    ..Default::default()
                },
                auth,
            ))
            .await
            .map(drop),
        "PetService/UpdatePet" => server
            .pets()
            .await
            .update_pet(request(
                pb::UpdatePetRequest {
                    pet: Some(pet_msg()),
                    ..Default::default()
                },
                auth,
            ))
            .await
            .map(drop),
        "PetService/DeletePet" => server
            .pets()
            .await
            .delete_pet(request(
                pb::DeletePetRequest {
                    id: pet.to_owned(),
                    expected_version: None,
                },
                auth,
            ))
            .await
            .map(drop),
        "StoreService/PlaceOrder" => server
            .orders()
            .await
            .place_order(request(
                pb::PlaceOrderRequest {
                    pet_id: pet.to_owned(),
                    quantity: None,
                },
                auth,
            ))
            .await
            .map(drop),
        "StoreService/CancelOrder" => server
            .orders()
            .await
            .cancel_order(request(
                pb::CancelOrderRequest {
                    id: order.to_owned(),
                },
                auth,
            ))
            .await
            .map(drop),
        "StoreService/PayOrder" => server
            .orders()
            .await
            .pay_order(request(
                pb::PayOrderRequest {
                    id: order.to_owned(),
                    payment_token: None,
                },
                auth,
            ))
            .await
            .map(drop),
        "ChatService/Chat" => {
            // Opening needs a token; each message posted needs chat:write.
            let (send, rx) = mpsc::channel(1);
            let opened = within(
                server
                    .chat()
                    .await
                    .chat(request(ReceiverStream::new(rx), auth)),
            )
            .await;
            match opened {
                Err(status) => Err(status),
                Ok(response) => {
                    let mut messages = response.into_inner();
                    send.send(pb::ChatSend {
                        room: "support".to_owned(),
                        text: "hi".to_owned(),
                    })
                    .await
                    .unwrap();
                    next(&mut messages).await.map(drop)
                }
            }
        }
        _ => return None,
    };
    Some(result)
}

#[tokio::test]
async fn every_mutating_rpc_needs_its_scope_and_changes_nothing() {
    let server = TestServer::start().await;
    let pet = server.add_pet("Rex", "dog").await.id.to_string();
    let held = server.add_pet("Tom", "cat").await;
    let order = server
        .store
        .place_order(&Principal::system("test"), NewOrder::new(held.id), None)
        .await
        .unwrap()
        .order
        .id
        .to_string();
    let before = state(&server).await;

    let scopes = [
        ("PetService/CreatePet", Scope::PetsWrite),
        ("PetService/UpdatePet", Scope::PetsWrite),
        ("PetService/DeletePet", Scope::PetsWrite),
        ("StoreService/PlaceOrder", Scope::OrdersWrite),
        ("StoreService/CancelOrder", Scope::OrdersWrite),
        ("StoreService/PayOrder", Scope::OrdersWrite),
        ("ChatService/Chat", Scope::ChatWrite),
    ];
    let mut tested = 0;
    for method in methods() {
        if READS.contains(&method.as_str()) {
            continue;
        }
        let scope = scopes
            .iter()
            .find(|(m, _)| *m == method)
            .map(|(_, s)| *s)
            .unwrap_or_else(|| panic!("{method} is not covered: add it with its scope"));
        let attempt = async |auth: Option<&str>| {
            call(&server, &method, auth, &pet, &order)
                .await
                .unwrap_or_else(|| panic!("{method} is not covered: add a valid call"))
                .expect_err(&format!("{method} must be refused"))
        };

        let refused = attempt(None).await;
        assert_eq!(
            refused.code(),
            Code::Unauthenticated,
            "{method}: {refused:?}"
        );
        let refused = attempt(Some("Bearer not.a.jwt")).await;
        assert_eq!(
            refused.code(),
            Code::Unauthenticated,
            "{method}: {refused:?}"
        );

        // Every other scope, but not this one (nor admin, which grants all).
        let others: Vec<Scope> = Scope::ALL
            .into_iter()
            .filter(|s| *s != scope && *s != Scope::Admin)
            .collect();
        let refused = attempt(Some(&server.bearer("mallory", others))).await;
        assert_eq!(
            refused.code(),
            Code::PermissionDenied,
            "{method}: {refused:?}"
        );
        assert!(
            refused.message().contains(scope.as_str()),
            "{method}: {refused:?}"
        );
        tested += 1;
    }
    assert_eq!(tested, scopes.len(), "every mutating call was tried");
    assert_eq!(
        state(&server).await,
        before,
        "a refused call changed something"
    );
}
