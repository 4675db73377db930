//! Leases: one holder at a time, renewal, release, expiry, and a race with one winner.

use std::time::Duration;

use petstore_core::{ErrorKind, LogConfig};

use crate::support::{WAIT, connect, on_both};

on_both!(one_holder_at_a_time, |url| {
    let a = connect(&url, LogConfig::default()).await;
    let b = connect(&url, LogConfig::default()).await;
    let ttl = Duration::from_secs(60);

    let first = a
        .try_lease("webhooks", "a", ttl)
        .await
        .unwrap()
        .expect("free");
    assert_eq!((first.holder.as_str(), first.generation), ("a", 1));
    assert_eq!(b.try_lease("webhooks", "b", ttl).await.unwrap(), None);
    let renewed = a
        .try_lease("webhooks", "a", ttl)
        .await
        .unwrap()
        .expect("renewal");
    assert_eq!(renewed.generation, 1, "a renewal is the same tenure");
    assert!(renewed.expires_at >= first.expires_at);
    // Other names are independent.
    assert!(b.try_lease("mqtt", "b", ttl).await.unwrap().is_some());

    assert!(
        !b.release_lease("webhooks", "b").await.unwrap(),
        "not b's to release"
    );
    assert!(a.release_lease("webhooks", "a").await.unwrap());
    assert!(
        !a.release_lease("webhooks", "a").await.unwrap(),
        "already released"
    );
    let taken = b
        .try_lease("webhooks", "b", ttl)
        .await
        .unwrap()
        .expect("released");
    assert_eq!((taken.holder.as_str(), taken.generation), ("b", 2));
    assert_eq!(a.try_lease("webhooks", "a", ttl).await.unwrap(), None);
});

on_both!(a_lapsed_lease_goes_to_the_next_taker, |url| {
    let a = connect(&url, LogConfig::default()).await;
    let b = connect(&url, LogConfig::default()).await;
    let short = a
        .try_lease("bridge", "a", Duration::from_millis(200))
        .await
        .unwrap()
        .expect("free");
    // b asks until a's lease lapses (a never renews, as if it had died).
    let taken = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(lease) = b
                .try_lease("bridge", "b", Duration::from_secs(60))
                .await
                .unwrap()
            {
                return lease;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the lease lapses");
    assert!(taken.expires_at > short.expires_at);
    assert_eq!(taken.generation, short.generation + 1);
    // a comes back: it no longer holds the lease and cannot take it back.
    assert_eq!(
        a.try_lease("bridge", "a", Duration::from_secs(1))
            .await
            .unwrap(),
        None
    );
    assert!(!a.release_lease("bridge", "a").await.unwrap());
});

on_both!(racing_takers_have_one_winner, |url| {
    let store = connect(&url, LogConfig::default()).await;
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .try_lease("once", &format!("holder-{i}"), Duration::from_secs(60))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut winners = 0;
    for t in tasks {
        winners += usize::from(t.await.unwrap().is_some());
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
        let err = store.try_lease(name, holder, ttl).await.unwrap_err();
        assert_eq!(
            err.kind(),
            ErrorKind::InvalidInput,
            "{name:?} {holder:?} {ttl:?}"
        );
    }
    // Nothing was granted by the refused requests.
    assert!(
        store
            .try_lease("n", "b", Duration::from_secs(1))
            .await
            .unwrap()
            .is_some()
    );
});
