//! Reflection, health, limits, deadlines, dropped clients and graceful shutdown.

use std::time::Duration;

use petstore_core::{PetQuery, Principal, Scope};
use petstore_grpc::{GrpcConfig, pb};
use tonic::{Code, Request};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::support::{TestServer, authed, eventually, next, within};

const PETSTORE_SERVICES: [&str; 3] = [
    "petstore.v1.PetService",
    "petstore.v1.StoreService",
    "petstore.v1.ChatService",
];

#[tokio::test]
async fn reflection_v1_lists_services_and_serves_their_files() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let server = TestServer::start().await;
    let mut client = ServerReflectionClient::new(server.channel().await);
    let requests = [
        MessageRequest::ListServices(String::new()),
        MessageRequest::FileContainingSymbol("petstore.v1.PetService".to_owned()),
    ]
    .map(|m| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(m),
    });
    let mut responses = client
        .server_reflection_info(futures_util::stream::iter(requests))
        .await
        .unwrap()
        .into_inner();

    let Some(MessageResponse::ListServicesResponse(list)) =
        next(&mut responses).await.unwrap().message_response
    else {
        panic!("a service list was expected");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    for name in PETSTORE_SERVICES.into_iter().chain([
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ]) {
        assert!(
            names.iter().any(|n| n == name),
            "{name} missing from {names:?}"
        );
    }

    let Some(MessageResponse::FileDescriptorResponse(files)) =
        next(&mut responses).await.unwrap().message_response
    else {
        panic!("a file descriptor was expected");
    };
    use prost::Message as _;
    let file =
        prost_types::FileDescriptorProto::decode(&files.file_descriptor_proto[0][..]).unwrap();
    assert_eq!(file.package(), "petstore.v1");
    assert!(file.service.iter().any(|s| s.name() == "PetService"));
}

#[tokio::test]
async fn reflection_v1alpha_lists_services() {
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;

    let server = TestServer::start().await;
    let mut client = ServerReflectionClient::new(server.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client
        .server_reflection_info(futures_util::stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        next(&mut responses).await.unwrap().message_response
    else {
        panic!("a service list was expected");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    for name in PETSTORE_SERVICES
        .into_iter()
        .chain(["grpc.reflection.v1alpha.ServerReflection"])
    {
        assert!(
            names.iter().any(|n| n == name),
            "{name} missing from {names:?}"
        );
    }
}

#[tokio::test]
async fn health_is_serving_and_turns_not_serving_on_shutdown() {
    let mut server = TestServer::start().await;
    let mut health = HealthClient::new(server.channel().await);
    for service in [""].into_iter().chain(PETSTORE_SERVICES) {
        let status = health
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .unwrap()
            .into_inner()
            .status();
        assert_eq!(status, ServingStatus::Serving, "{service:?}");
    }
    let err = health
        .check(HealthCheckRequest {
            service: "no.such.Service".to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // Open streams when the shutdown begins: a health watch and a pet watch.
    let mut watch = health
        .watch(HealthCheckRequest {
            service: "petstore.v1.PetService".to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        next(&mut watch).await.unwrap().status(),
        ServingStatus::Serving
    );
    let mut pets = server
        .pets()
        .await
        .watch_pets(pb::WatchPetsRequest::default())
        .await
        .unwrap()
        .into_inner();

    let stopped = server.shut_down();
    let (result, ()) = tokio::join!(stopped, async {
        assert_eq!(
            next(&mut watch).await.unwrap().status(),
            ServingStatus::NotServing
        );
        let err = next(&mut pets).await.unwrap_err();
        assert_eq!(err.code(), Code::Unavailable);
    });
    // Both streams ended, so the drain finished without waiting for the grace period.
    result.unwrap();
}

#[tokio::test]
async fn oversized_messages_are_refused_before_the_store() {
    let server = TestServer::start_with(GrpcConfig::default().max_message_size(16 * 1024)).await;
    let mut pets = server.pets().await;
    let huge = pb::CreatePetRequest {
        name: "x".repeat(32 * 1024),
        species: "dog".to_owned(),
        price: Some(pb::Money {
            amount: "1.00".to_owned(),
            currency: "USD".to_owned(),
        }),
        ..Default::default()
    };
    let err = pets
        .create_pet(authed(huge, &server.admin()))
        .await
        .unwrap_err();
    assert!(
        matches!(err.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{err:?}"
    );
    let page = server
        .store
        .pets(&Principal::anonymous(), &PetQuery::default())
        .await
        .unwrap();
    assert!(page.data.is_empty());
    // Normal calls on the same connection still work.
    server.add_pet("Rex", "dog").await;
    let mut list = pets
        .list_pets(pb::ListPetsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next(&mut list).await.unwrap().name, "Rex");
}

#[tokio::test]
async fn streams_honour_the_client_deadline() {
    let server = TestServer::start().await;
    let mut pets = server.pets().await;
    let mut request = Request::new(pb::WatchPetsRequest::default());
    request.set_timeout(Duration::from_millis(300));
    let mut watch = pets.watch_pets(request).await.unwrap().into_inner();
    let err = next(&mut watch).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded);
    eventually("the expired stream is released", || server.open.get() == 0).await;
}

#[tokio::test]
async fn a_dropped_client_frees_its_streams() {
    let server = TestServer::start().await;
    let alice = server.bearer("alice", [Scope::ChatWrite]);
    let channel = server.channel().await;
    let mut pets = pb::pet_service_client::PetServiceClient::new(channel.clone());
    let watch = pets
        .watch_pets(pb::WatchPetsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::ChatSend>(1);
    let chat = pb::chat_service_client::ChatServiceClient::new(channel)
        .chat(authed(
            tokio_stream::wrappers::ReceiverStream::new(rx),
            &alice,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(server.open.get(), 2);

    // Cancelling one call (the connection stays up) frees its stream...
    drop(watch);
    eventually("the cancelled watch is released", || server.open.get() == 1).await;
    // ...and closing the connection frees the rest.
    drop((chat, tx, pets));
    eventually("the chat of the closed connection is released", || {
        server.open.get() == 0
    })
    .await;

    // The server is still fine.
    let mut list = server
        .pets()
        .await
        .list_pets(pb::ListPetsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(within(list.message()).await.unwrap().is_none());
}

#[tokio::test]
async fn routes_share_a_port_with_an_axum_app() {
    let store = petstore_core::PetStore::in_memory();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let grpc =
        petstore_grpc::GrpcServer::new(store.clone(), GrpcConfig::default(), shutdown.clone());
    let app = grpc
        .routes()
        .await
        .into_axum_router()
        .route("/hello", axum::routing::get(|| async { "hello" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = tokio::spawn(async move { axum::serve(listener, app).await });

    let pet = store
        .create_pet(
            &Principal::system("test"),
            crate::support::new_pet("Rex", "dog"),
        )
        .await
        .unwrap();
    let mut pets = pb::pet_service_client::PetServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let got = within(pets.get_pet(pb::GetPetRequest {
        id: pet.id.to_string(),
    }))
    .await
    .unwrap()
    .into_inner();
    assert_eq!(got.name, "Rex");
    // Authentication applies there too.
    let err = pets
        .get_pet(authed(
            pb::GetPetRequest {
                id: pet.id.to_string(),
            },
            "Bearer forged",
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let mut health = HealthClient::new(
        tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    let status = health
        .check(HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner()
        .status();
    assert_eq!(status, ServingStatus::Serving);
    // Cancelling the shutdown token drains the routes too: health turns NOT_SERVING.
    let mut watch = health
        .watch(HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        within(watch.message()).await.unwrap().unwrap().status(),
        ServingStatus::Serving
    );
    shutdown.cancel();
    assert_eq!(
        within(watch.message()).await.unwrap().unwrap().status(),
        ServingStatus::NotServing
    );
    served.abort();
}

#[tokio::test]
async fn during_the_drain_delay_health_is_not_serving_and_new_calls_still_work() {
    // Shorter than `WAIT`, which bounds `shut_down`.
    let drain = Duration::from_secs(3);
    let mut server = TestServer::start_with(GrpcConfig::default().drain_delay(drain)).await;
    let pet = server.add_pet("Rex", "dog").await;
    let mut health = HealthClient::new(server.channel().await);
    let mut watch = health
        .watch(HealthCheckRequest {
            service: "petstore.v1.PetService".to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        next(&mut watch).await.unwrap().status(),
        ServingStatus::Serving
    );
    let addr = server.addr;
    let began = tokio::time::Instant::now();
    let (stopped, ()) = tokio::join!(server.shut_down(), async {
        assert_eq!(
            next(&mut watch).await.unwrap().status(),
            ServingStatus::NotServing
        );
        // The listener is still open: a new connection and a call succeed.
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .expect("the listener accepts during the drain delay");
        let got = petstore_grpc::pb::pet_service_client::PetServiceClient::new(channel)
            .get_pet(pb::GetPetRequest {
                id: pet.id.to_string(),
            })
            .await
            .expect("calls are served during the drain delay")
            .into_inner();
        assert_eq!(got.name, "Rex");
        assert!(
            began.elapsed() < drain,
            "the call must land inside the drain delay for this test to mean anything"
        );
    });
    stopped.unwrap();
    assert!(
        began.elapsed() >= drain,
        "the listener closed before the drain delay"
    );
}
