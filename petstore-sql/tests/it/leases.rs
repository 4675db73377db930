//! Leases across two instances of the store: one holder at a time, renewal, release,
//! expiry, and a race with one winner.

use std::time::Duration;

use petstore_core::backend::Store;
use petstore_core::{ErrorKind, LogConfig};

use crate::support::{WAIT, connect, on_both};

on_both!(one_holder_at_a_time, |url| {
    let a = connect(&url, LogConfig::default()).await;
    let b = connect(&url, LogConfig::default()).await;
    let ttl = Duration::from_secs(60);

    assert!(a.acquire_lease("webhooks", "a", ttl).await.unwrap(), "free");
    assert!(!b.acquire_lease("webhooks", "b", ttl).await.unwrap());
    assert!(
        a.acquire_lease("webhooks", "a", ttl).await.unwrap(),
        "renewal"
    );
    // Other names are independent.
    assert!(b.acquire_lease("mqtt", "b", ttl).await.unwrap());

    // Not b's to release: a still holds it.
    b.release_lease("webhooks", "b").await.unwrap();
    assert!(!b.acquire_lease("webhooks", "b", ttl).await.unwrap());
    a.release_lease("webhooks", "a").await.unwrap();
    assert!(
        b.acquire_lease("webhooks", "b", ttl).await.unwrap(),
        "released"
    );
    assert!(!a.acquire_lease("webhooks", "a", ttl).await.unwrap());
});

on_both!(a_lapsed_lease_goes_to_the_next_taker, |url| {
    let a = connect(&url, LogConfig::default()).await;
    let b = connect(&url, LogConfig::default()).await;
    assert!(
        a.acquire_lease("bridge", "a", Duration::from_millis(200))
            .await
            .unwrap()
    );
    // b asks until a's lease lapses (a never renews, as if it had died).
    tokio::time::timeout(WAIT, async {
        while !b
            .acquire_lease("bridge", "b", Duration::from_secs(60))
            .await
            .unwrap()
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the lease lapses");
    // a comes back: it no longer holds the lease and cannot take it back, nor release
    // b's.
    assert!(
        !a.acquire_lease("bridge", "a", Duration::from_secs(1))
            .await
            .unwrap()
    );
    a.release_lease("bridge", "a").await.unwrap();
    assert!(
        !a.acquire_lease("bridge", "a", Duration::from_secs(1))
            .await
            .unwrap()
    );
});

on_both!(racing_takers_have_one_winner, |url| {
    let store = connect(&url, LogConfig::default()).await;
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .acquire_lease("once", &format!("holder-{i}"), Duration::from_secs(60))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut winners = 0;
    for t in tasks {
        winners += usize::from(t.await.unwrap());
    }
    assert_eq!(winners, 1);
});

on_both!(bad_lease_requests_are_refused, |url| {
    let store = connect(&url, LogConfig::default()).await;
    let long = "x".repeat(201);
    for (name, holder, ttl) in [
        ("", "a", Duration::from_secs(1)),
        ("n", "", Duration::from_secs(1)),
        (long.as_str(), "a", Duration::from_secs(1)),
        ("n", "a", Duration::ZERO),
        ("n", "a", Duration::from_secs(7200)),
    ] {
        let err = store.acquire_lease(name, holder, ttl).await.unwrap_err();
        assert_eq!(
            err.kind(),
            ErrorKind::InvalidInput,
            "{name:?} {holder:?} {ttl:?}"
        );
    }
    // Nothing was granted by the refused requests.
    assert!(
        store
            .acquire_lease("n", "b", Duration::from_secs(1))
            .await
            .unwrap()
    );
});
