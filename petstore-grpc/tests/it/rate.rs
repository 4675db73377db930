//! Rate limiting: `RESOURCE_EXHAUSTED` with `RetryInfo` and `retry-after` metadata,
//! quotas per token subject and per client IP.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use petstore_core::{PetQuery, PetStore, Principal, RateLimitConfig, RateLimiter, Scope};
use petstore_grpc::GrpcConfig;
use petstore_grpc::pb;
use petstore_grpc::pb::store_service_client::StoreServiceClient;
use tonic::Code;
use tonic::transport::Endpoint;
use tonic_types::StatusExt as _;

use crate::support::{TestServer, authed};

/// A server allowing three calls a minute to anyone.
async fn tiny() -> TestServer {
    let limiter = RateLimiter::new(
        RateLimitConfig::default()
            .requests(3)
            .authenticated_requests(3)
            .period(Duration::from_secs(60)),
    );
    TestServer::start_limited(
        PetStore::in_memory(),
        GrpcConfig::default(),
        Some(Arc::new(limiter)),
    )
    .await
}

fn create() -> pb::CreatePetRequest {
    pb::CreatePetRequest {
        name: "Rex".to_owned(),
        species: "dog".to_owned(),
        price: Some(pb::Money {
            amount: "5.00".to_owned(),
            currency: "USD".to_owned(),
        }),
        ..Default::default()
    }
}

async fn pet_count(server: &TestServer) -> usize {
    server
        .store
        .pets(&Principal::system("test"), &PetQuery::default().limit(100))
        .await
        .unwrap()
        .data
        .len()
}

fn metadata<'a>(status: &'a tonic::Status, key: &str) -> &'a str {
    status
        .metadata()
        .get(key)
        .unwrap_or_else(|| panic!("no {key} metadata: {status:?}"))
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn the_fourth_call_in_a_minute_is_resource_exhausted_and_creates_nothing() {
    let server = tiny().await;
    let alice = server.bearer("alice", [Scope::PetsWrite]);
    let mut pets = server.pets().await;
    for _ in 0..3 {
        pets.create_pet(authed(create(), &alice)).await.unwrap();
    }
    assert_eq!(pet_count(&server).await, 3);

    let refused = pets.create_pet(authed(create(), &alice)).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    let details = refused.get_error_details();
    assert_eq!(details.error_info().unwrap().reason, "RATE_LIMITED");
    // One call's worth refills every 20 s (less what the test took so far).
    let delay = details.retry_info().unwrap().retry_delay.unwrap();
    assert!(
        delay > Duration::from_secs(15) && delay <= Duration::from_secs(20),
        "{delay:?}"
    );
    let secs: u64 = metadata(&refused, "retry-after").parse().unwrap();
    assert_eq!(secs, delay.as_secs() + u64::from(delay.subsec_nanos() > 0));
    assert_eq!(
        metadata(&refused, "ratelimit-policy"),
        "\"authenticated\";q=3;w=60"
    );
    let reset: u64 = metadata(&refused, "ratelimit")
        .strip_prefix("\"authenticated\";r=0;t=")
        .expect("nothing remains")
        .parse()
        .unwrap();
    assert!(
        (55..=60).contains(&reset),
        "full again in about a minute: {reset}"
    );
    assert_eq!(
        pet_count(&server).await,
        3,
        "the refused call created nothing"
    );
    // Every petstore service shares the quota.
    let refused = server
        .orders()
        .await
        .get_inventory(authed(pb::GetInventoryRequest {}, &alice))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);

    // Another principal has its own quota.
    let bob = server.bearer("bob", [Scope::PetsWrite]);
    pets.create_pet(authed(create(), &bob)).await.unwrap();
    assert_eq!(pet_count(&server).await, 4);
}

#[tokio::test]
async fn anonymous_callers_are_counted_per_client_ip() {
    let server = tiny().await;
    let mut here = server.orders().await;
    for _ in 0..3 {
        here.get_inventory(pb::GetInventoryRequest {})
            .await
            .unwrap();
    }
    let refused = here
        .get_inventory(pb::GetInventoryRequest {})
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert_eq!(
        metadata(&refused, "ratelimit-policy"),
        "\"anonymous\";q=3;w=60"
    );
    // A forged token does not escape the count of its address.
    let refused = here
        .get_inventory(authed(pb::GetInventoryRequest {}, "Bearer not.a.jwt"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);

    // Another address has its own bucket.
    let channel = Endpoint::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .local_address(Some(IpAddr::from([127, 0, 0, 2])))
        .connect()
        .await
        .unwrap();
    let mut there = StoreServiceClient::new(channel);
    there
        .get_inventory(pb::GetInventoryRequest {})
        .await
        .unwrap();

    // Health is never limited.
    let mut health = tonic_health::pb::health_client::HealthClient::new(
        Endpoint::from_shared(format!("http://{}", server.addr))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    let check = health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await;
    assert!(check.is_ok(), "{check:?}");
}

#[tokio::test]
async fn rate_limiting_is_off_by_default() {
    let server = TestServer::start().await;
    let mut orders = server.orders().await;
    for _ in 0..10 {
        orders
            .get_inventory(pb::GetInventoryRequest {})
            .await
            .unwrap();
    }
}
