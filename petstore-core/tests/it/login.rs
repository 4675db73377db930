//! The cost of a login is bounded: one password check per request, and login budgets
//! per username and per client address that hold even with rate limiting off.

use std::net::IpAddr;
use std::time::Duration;

use petstore_core::*;

fn store(login: LoginConfig) -> PetStore {
    let config = ServiceConfig::default().login(login);
    PetStore::new(
        MemoryStore::default(),
        TokenAuthority::random(Duration::from_secs(60)),
        config,
    )
}

async fn seeded(login: LoginConfig) -> PetStore {
    let store = store(login);
    petstore_core::seed::seed(&store).await.unwrap();
    store
}

fn creds(user: &str, password: &str) -> Credentials {
    serde_json::from_value(serde_json::json!({"username": user, "password": password})).unwrap()
}

fn from(ip: &str) -> RequestContext {
    RequestContext::new().with_client_ip(ip.parse::<IpAddr>().unwrap())
}

#[tokio::test]
async fn a_request_makes_at_most_one_password_check() {
    let store = seeded(LoginConfig::default()).await;
    let outcome = from("10.0.0.1")
        .scope(async {
            let first = store.issue_token(&creds("alice", "alice-password")).await;
            let second = store.issue_token(&creds("alice", "alice-password")).await;
            (first, second)
        })
        .await;
    assert!(outcome.0.is_ok());
    let err = outcome.1.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited);
    // Another request may check again.
    from("10.0.0.1")
        .scope(store.issue_token(&creds("alice", "alice-password")))
        .await
        .unwrap();
}

#[tokio::test]
async fn each_username_has_a_login_budget() {
    let store = seeded(LoginConfig::default().per_username(3)).await;
    for i in 0..3 {
        let err = from(&format!("10.0.0.{i}"))
            .scope(store.issue_token(&creds("alice", "wrong-password")))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unauthenticated);
    }
    // Even the right password, from another address, waits now.
    let err = from("10.0.9.9")
        .scope(store.issue_token(&creds("alice", "alice-password")))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited);
    assert!(err.retry_after().is_some());
    // Other users are not affected.
    from("10.0.9.9")
        .scope(store.issue_token(&creds("admin", "admin-password")))
        .await
        .unwrap();
}

#[tokio::test]
async fn each_client_address_has_a_login_budget() {
    let store = seeded(LoginConfig::default().per_client(4)).await;
    for i in 0..4 {
        let err = from("192.0.2.7")
            .scope(store.issue_token(&creds(&format!("user{i}"), "whatever-pw")))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unauthenticated);
    }
    let err = from("192.0.2.7")
        .scope(store.issue_token(&creds("alice", "alice-password")))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited);
    from("192.0.2.8")
        .scope(store.issue_token(&creds("alice", "alice-password")))
        .await
        .unwrap();
}

#[tokio::test]
async fn seeding_twice_adds_the_catalogue_once() {
    let store = seeded(LoginConfig::default()).await;
    let head = store.head().await.unwrap();
    petstore_core::seed::seed(&store).await.unwrap();
    assert_eq!(store.head().await.unwrap(), head);
    let pets = store
        .pets(&Principal::anonymous(), &PetQuery::default().limit(100))
        .await
        .unwrap();
    assert_eq!(pets.data.len(), petstore_core::seed::sample_pets().len());
}
