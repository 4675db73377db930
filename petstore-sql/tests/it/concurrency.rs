//! The state machine and idempotency hold under concurrent commands, on PostgreSQL
//! across two instances of the store.

use petstore_core::{ErrorKind, LogConfig, NewOrder, Order, PetStatus, PetStore, Result};

use crate::support::{connect, new_pet, on_both, service, staff};

/// `n` concurrent orders for one new pet, spread over two instances on PostgreSQL (one
/// store on SQLite: one process). Returns the first instance and the outcomes.
async fn concurrent_orders(
    url: &str,
    n: usize,
    key: Option<&str>,
) -> (PetStore, Vec<Result<Order>>) {
    let instances = if url.starts_with("sqlite:") { 1 } else { 2 };
    let mut services = Vec::new();
    for _ in 0..instances {
        services.push(service(connect(url, LogConfig::default()).await));
    }
    let pet = services[0]
        .create_pet(&staff(), new_pet("Rex"))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let svc = services[i % instances].clone();
            let pet = pet.id.clone();
            let key = key.map(str::to_owned);
            tokio::spawn(async move {
                svc.place_order(&staff(), NewOrder::new(pet), key.as_deref())
                    .await
                    .map(|placed| placed.order)
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    let pet = services[0].pet(&staff(), &pet.id).await.unwrap();
    assert_eq!(pet.status, PetStatus::Pending);
    // pet.created, then one order.created and one pet.status_changed.
    assert_eq!(services[0].head().await.unwrap().offset, 3);
    (services.swap_remove(0), outcomes)
}

on_both!(
    sixteen_concurrent_orders_for_one_pet_place_exactly_one,
    |url| {
        let (_, outcomes) = concurrent_orders(&url, 16, None).await;
        let mut placed = 0;
        for outcome in outcomes {
            match outcome {
                Ok(_) => placed += 1,
                Err(e) => assert_eq!(e.kind(), ErrorKind::Conflict, "{e:?}"),
            }
        }
        assert_eq!(placed, 1);
    }
);

on_both!(
    one_idempotency_key_places_one_order_across_instances,
    |url| {
        let (svc, outcomes) = concurrent_orders(&url, 8, Some("same-key")).await;
        let mut ids = Vec::new();
        for outcome in outcomes {
            match outcome {
                Ok(order) => ids.push(order.id),
                // petstore-core reads the idempotency key before the pet: a request that
                // reads "no key yet" and then the pet its twin just held answers 409 instead
                // of the first order (reported to the lead: read the pet first). The store's
                // part, one order for one key, holds either way.
                Err(e) => assert_eq!(e.kind(), ErrorKind::Conflict, "{e:?}"),
            }
        }
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 1, "{ids:?}");
        assert_eq!(svc.order(&staff(), &ids[0]).await.unwrap().id, ids[0]);
    }
);

// Many commits at once: on SQLite the committer takes them into one transaction each
// time (group commit), each in its own savepoint. A change whose second write is stale
// must leave nothing behind (not even its first write), and must not take the others
// of its group down with it.
on_both!(
    a_failed_change_in_a_group_leaves_nothing_and_the_others_commit,
    |url| {
        use petstore_core::backend::{Change, EventLog as _, Expect, Store as _, Write};
        use petstore_core::{EventData, EventFilter, Pet, PetId};

        let store = connect(&url, LogConfig::default()).await;
        let pet = |id: PetId| Pet {
            id,
            ..new_pet("Rex").into_pet(chrono::Utc::now())
        };
        // Made before `target`, so their ids sort before its (ids grow with time).
        let mut created: Vec<Pet> = (0..48).map(|_| pet(PetId::generate())).collect();
        let target = pet(PetId::generate());
        assert!(created.iter().all(|p| p.id < target.id));
        store
            .commit(
                Change::new()
                    .write(Write::PutPet {
                        pet: target.clone(),
                        expect: Expect::Absent,
                    })
                    .event(EventData::PetCreated(target.clone())),
                "/t",
            )
            .await
            .unwrap();
        // 24 changes that each create a pet and update `target` from version 1: one
        // wins, 23 are stale after their first write (lock order puts the new pet first
        // when its id sorts first). 24 plain creates run alongside.
        let tasks: Vec<_> = (0..48)
            .map(|i| {
                let store = store.clone();
                let target = target.clone();
                let created = created.pop().unwrap();
                tokio::spawn(async move {
                    let mut change = Change::new()
                        .write(Write::PutPet {
                            pet: created.clone(),
                            expect: Expect::Absent,
                        })
                        .event(EventData::PetCreated(created.clone()));
                    if i % 2 == 0 {
                        let mut updated = target.clone();
                        updated.version = 2;
                        updated.name = format!("by {i}");
                        change = change.write(Write::PutPet {
                            pet: updated,
                            expect: Expect::Version(1),
                        });
                    }
                    (i, created.id, store.commit(change, "/t").await)
                })
            })
            .collect();
        let mut won = 0;
        let mut committed = Vec::new();
        for task in tasks {
            let (i, created, outcome) = task.await.unwrap();
            let stored = store.pet(&created).await.unwrap();
            match outcome {
                Ok(events) => {
                    assert_eq!(events.len(), 1, "change {i}");
                    assert!(stored.is_some(), "change {i} committed without its pet");
                    won += usize::from(i % 2 == 0);
                    committed.extend(events);
                }
                Err(e) => {
                    assert!(e.is_stale_write(), "change {i}: {e:?}");
                    assert_eq!(i % 2, 0, "a create with no conflict failed: {e:?}");
                    assert!(stored.is_none(), "failed change {i} left its pet behind");
                }
            }
        }
        assert_eq!(won, 1);
        assert_eq!(committed.len(), 25);
        // The log holds exactly the committed events, gapless, as returned.
        let batch = store
            .read(None, 100, &EventFilter::default())
            .await
            .unwrap();
        assert_eq!(batch.events.len(), 26);
        committed.sort_by_key(|e| e.offset());
        for (logged, returned) in batch.events[1..].iter().zip(&committed) {
            assert_eq!(logged.id(), returned.id());
            assert_eq!(logged.offset(), returned.offset());
        }
        assert_eq!(store.head().await.unwrap().offset, 26);
    }
);
