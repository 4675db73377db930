//! The behaviour suite every [`Store`] / [`EventLog`](crate::EventLog) backend runs:
//! one test per rule of the traits' `# Behavior` sections.
//!
//! ```ignore
//! petstore_core::store_behaviour_tests!(|config| my_backend::Store::new(config));
//! ```
//!
//! The factory gets a [`LogConfig`] and returns a fresh, empty store; for a backend
//! that connects asynchronously, write `async` before it and return a future (with
//! `optional async`, a future of `Option<store>`: `None` skips the rule, for a backend
//! whose database is not configured):
//!
//! ```ignore
//! petstore_core::store_behaviour_tests!(async |config| async move {
//!     my_backend::Store::connect(url, config).await.unwrap()
//! });
//! ```
//!
//! The calling crate needs `tokio` (with `macros` and `rt-multi-thread`) as a
//! dev-dependency.
//!
//! It also holds [`skip`] (and [`env_or_skip`], [`database_url`], [`program_or_skip`]),
//! the one way every test crate skips a test whose broker, database or tool is missing:
//! with [`REQUIRE_ALL`] set, as in CI, a skip is a failure.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures_util::StreamExt;

use crate::backend::{Change, Expect, IdempotencyRecord, Store, Write};
use crate::{
    Channel, Currency, ErrorKind, Event, EventData, EventFilter, EventType, LogConfig, Money,
    NewPet, Order, OrderId, OrderQuery, OrderStatus, Pet, PetQuery, PetStatus, ResumeToken,
};

mod recording;
mod skip;
pub use recording::{Commits, Faults, RecordingStore};
pub use skip::{
    DATABASE_URL, REQUIRE_ALL, database_url, env_or_skip, every_test_required, program_or_skip,
    skip,
};

const WAIT: Duration = Duration::from_secs(10);

fn sample_pet(name: &str, status: PetStatus) -> Pet {
    let mut pet = NewPet {
        name: name.to_owned(),
        species: "dog".to_owned(),
        breed: None,
        age: None,
        status: Some(status),
        tags: vec!["tag".to_owned()],
        photo_urls: vec![],
        price: Money::parse("1.00", Currency::USD).expect("valid"),
    }
    .into_pet(Utc::now());
    pet.status = status;
    pet
}

fn put_pet(pet: &Pet) -> Change {
    Change::new()
        .write(Write::PutPet {
            pet: pet.clone(),
            expect: Expect::Absent,
        })
        .event(EventData::PetCreated(pet.clone()))
}

fn sample_order(pet: &Pet, customer: &str) -> Order {
    Order {
        id: OrderId::generate(),
        pet_id: pet.id.clone(),
        quantity: 1,
        total: Money::parse("1.00", Currency::USD).expect("valid"),
        status: OrderStatus::Placed,
        customer: customer.into(),
        payment_id: None,
        created_at: Utc::now(),
        updated_at: Utc::now(),
        version: 1,
    }
}

async fn append_n<S: Store>(store: &S, n: usize) -> Vec<Arc<Event>> {
    let mut out = Vec::new();
    for i in 0..n {
        out.extend(
            store
                .commit(
                    put_pet(&sample_pet(&format!("p{i}"), PetStatus::Available)),
                    "/test",
                )
                .await
                .expect("commit"),
        );
    }
    out
}

fn offsets(events: &[Arc<Event>]) -> Vec<u64> {
    events.iter().map(|e| e.offset().offset).collect()
}

async fn next_event(sub: &mut crate::Subscription) -> Arc<Event> {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("an event within the timeout")
        .expect("the stream is open")
        .expect("not an error")
}

/// A fresh log starts at offset 0 and each event adds one.
pub async fn head_starts_at_zero_and_counts_events<S: Store>(store: S) {
    assert_eq!(store.head().await.unwrap().offset, 0);
    append_n(&store, 3).await;
    assert_eq!(store.head().await.unwrap().offset, 3);
}

/// Commit applies writes and returns its events with consecutive offsets.
pub async fn commit_assigns_consecutive_offsets<S: Store>(store: S) {
    let pet = sample_pet("a", PetStatus::Available);
    let change = put_pet(&pet).event(EventData::PetUpdated(pet.clone()));
    let events = store.commit(change, "/test").await.unwrap();
    assert_eq!(offsets(&events), [1, 2]);
    assert!(events.iter().all(|e| e.source() == "/test"));
    assert_eq!(
        events.iter().map(|e| e.event_type()).collect::<Vec<_>>(),
        [EventType::PetCreated, EventType::PetUpdated]
    );
    assert_eq!(store.pet(&pet.id).await.unwrap(), Some(pet.clone()));
    // Read back, an event is the one the commit returned: same id, time, payload.
    let read = store.read(None, 10, &EventFilter::all()).await.unwrap();
    assert_eq!(read.events, events);
    assert_eq!(read.events[0].json(), events[0].json());
}

/// A failed expectation writes nothing and appends nothing.
pub async fn failed_expectation_changes_nothing<S: Store>(store: S) {
    let pet = sample_pet("a", PetStatus::Available);
    store.commit(put_pet(&pet), "/test").await.unwrap();
    let other = sample_pet("b", PetStatus::Available);
    // `other` is valid, `pet` again with Expect::Absent is stale: the whole change fails.
    let change = put_pet(&other).write(Write::PutPet {
        pet: pet.clone(),
        expect: Expect::Absent,
    });
    let err = store.commit(change, "/test").await.unwrap_err();
    assert!(err.is_stale_write(), "{err:?}");
    assert_eq!(store.pet(&other.id).await.unwrap(), None);
    assert_eq!(store.head().await.unwrap().offset, 1);

    let mut changed = pet.clone();
    changed.version = 2;
    let wrong_version = Change::new().write(Write::PutPet {
        pet: changed,
        expect: Expect::Version(7),
    });
    assert!(
        store
            .commit(wrong_version, "/test")
            .await
            .unwrap_err()
            .is_stale_write()
    );
    let delete_wrong = Change::new().write(Write::DeletePet {
        id: pet.id.clone(),
        version: 9,
    });
    assert!(
        store
            .commit(delete_wrong, "/test")
            .await
            .unwrap_err()
            .is_stale_write()
    );
    assert_eq!(store.pet(&pet.id).await.unwrap().unwrap().version, 1);
}

/// Idempotency records can be written once and read back.
pub async fn idempotency_keys_are_write_once<S: Store>(store: S) {
    let record = IdempotencyRecord {
        fingerprint: "f".into(),
        resource: "ord_1".into(),
        created_at: Utc::now(),
    };
    let put = || {
        Change::new().write(Write::PutIdempotency {
            key: "k".into(),
            record: record.clone(),
        })
    };
    assert_eq!(store.idempotency("k").await.unwrap(), None);
    store.commit(put(), "/test").await.unwrap();
    assert_eq!(store.idempotency("k").await.unwrap(), Some(record.clone()));
    assert!(
        store
            .commit(put(), "/test")
            .await
            .unwrap_err()
            .is_stale_write()
    );
}

/// Listings are in id order after the cursor, filtered, with the head seen.
pub async fn listings_page_in_id_order<S: Store>(store: S) {
    let mut ids = Vec::new();
    for i in 0..5 {
        let status = if i % 2 == 0 {
            PetStatus::Available
        } else {
            PetStatus::Sold
        };
        let pet = sample_pet(&format!("p{i}"), status);
        ids.push(pet.id.clone());
        store.commit(put_pet(&pet), "/test").await.unwrap();
    }
    let all = store.pets(&PetQuery::default(), None, 10).await.unwrap();
    assert_eq!(
        all.items.iter().map(|p| p.id.clone()).collect::<Vec<_>>(),
        ids
    );
    assert_eq!(all.position.offset, 5);
    let after = store
        .pets(&PetQuery::default(), Some(&ids[1]), 2)
        .await
        .unwrap();
    assert_eq!(
        after.items.iter().map(|p| p.id.clone()).collect::<Vec<_>>(),
        ids[2..4]
    );
    let sold = store
        .pets(&PetQuery::default().status(PetStatus::Sold), None, 10)
        .await
        .unwrap();
    assert_eq!(sold.items.len(), 2);

    let first = store.pet(&ids[0]).await.unwrap().unwrap();
    let order = sample_order(&first, "c");
    let other = sample_order(&first, "d");
    for o in [&order, &other] {
        store
            .commit(
                Change::new().write(Write::PutOrder {
                    order: o.clone(),
                    expect: Expect::Absent,
                }),
                "/t",
            )
            .await
            .unwrap();
    }
    let of_c = store
        .orders(&OrderQuery::default().customer("c"), None, 10)
        .await
        .unwrap();
    assert_eq!(of_c.items, vec![order.clone()]);
    let placed = store
        .orders(&OrderQuery::default().status(OrderStatus::Placed), None, 10)
        .await
        .unwrap();
    assert_eq!(placed.items, vec![order.clone(), other.clone()]);
    assert!(
        store
            .orders(
                &OrderQuery::default().status(OrderStatus::Cancelled),
                None,
                10
            )
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert_eq!(store.order(&order.id).await.unwrap(), Some(order));
}

/// The inventory equals counting the stored pets, through puts, changes and deletes.
pub async fn inventory_matches_pets<S: Store>(store: S) {
    let a = sample_pet("a", PetStatus::Available);
    let b = sample_pet("b", PetStatus::Available);
    store.commit(put_pet(&a), "/t").await.unwrap();
    store.commit(put_pet(&b), "/t").await.unwrap();
    let mut sold = a.clone();
    sold.status = PetStatus::Sold;
    sold.version = 2;
    store
        .commit(
            Change::new().write(Write::PutPet {
                pet: sold,
                expect: Expect::Version(1),
            }),
            "/t",
        )
        .await
        .unwrap();
    store
        .commit(
            Change::new().write(Write::DeletePet {
                id: b.id.clone(),
                version: 1,
            }),
            "/t",
        )
        .await
        .unwrap();
    let inv = store.inventory().await.unwrap().items;
    let pets = store
        .pets(&PetQuery::default(), None, 100)
        .await
        .unwrap()
        .items;
    assert_eq!(inv, crate::Inventory::count(&pets));
    assert_eq!((inv.available, inv.pending, inv.sold), (0, 0, 1));
}

/// Reading pages with `next` yields every event once, in order.
pub async fn read_pages_without_gap_or_duplicate<S: Store>(store: S) {
    append_n(&store, 25).await;
    let mut seen = Vec::new();
    let mut since = None;
    loop {
        let batch = store.read(since, 7, &EventFilter::all()).await.unwrap();
        if batch.events.is_empty() {
            break;
        }
        seen.extend(offsets(&batch.events));
        since = Some(batch.next);
    }
    assert_eq!(seen, (1..=25).collect::<Vec<_>>());
}

/// Filtered reads advance `next` past the events they skipped.
pub async fn filtered_read_advances_past_skipped_events<S: Store>(store: S) {
    append_n(&store, 5).await;
    let filter = EventFilter::types(["order.*".parse().unwrap()]);
    let batch = store.read(None, 100, &filter).await.unwrap();
    assert!(batch.events.is_empty());
    assert_eq!(batch.next.offset, 5);
}

/// Tokens from another epoch or older than retention are `ResumeExpired`; tokens
/// ahead of the log are `InvalidInput`.
pub async fn stale_tokens_are_refused<S: Store>(store: S) {
    append_n(&store, 10).await; // retention is 4 in this test
    let head = store.head().await.unwrap();
    let other_epoch = ResumeToken::new(head.epoch.wrapping_add(1), 1);
    assert_eq!(
        store
            .read(Some(other_epoch), 10, &EventFilter::all())
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::ResumeExpired
    );
    let too_old = ResumeToken::new(head.epoch, 2);
    assert_eq!(
        store
            .read(Some(too_old), 10, &EventFilter::all())
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::ResumeExpired
    );
    assert_eq!(
        store
            .subscribe(Some(too_old), EventFilter::all())
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::ResumeExpired
    );
    let ahead = ResumeToken::new(head.epoch, 11);
    assert_eq!(
        store
            .read(Some(ahead), 10, &EventFilter::all())
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
    // The oldest still-resumable token is just before the oldest retained event.
    let oldest_ok = ResumeToken::new(head.epoch, 6);
    assert_eq!(
        offsets(
            &store
                .read(Some(oldest_ok), 10, &EventFilter::all())
                .await
                .unwrap()
                .events
        ),
        [7, 8, 9, 10]
    );
    // Exactly at the boundary of what the backend still holds (it may keep more than
    // the retention): just before its oldest event resumes from that event, one
    // further back is expired.
    let held = store
        .read(None, 100, &EventFilter::all())
        .await
        .unwrap()
        .events;
    let first = held.first().expect("retained events").offset().offset;
    assert!(first > 2, "token 2 was refused, so event 3 is gone");
    let boundary = store
        .read(
            Some(ResumeToken::new(head.epoch, first - 1)),
            1,
            &EventFilter::all(),
        )
        .await
        .unwrap();
    assert_eq!(offsets(&boundary.events), [first]);
    assert_eq!(
        store
            .read(
                Some(ResumeToken::new(head.epoch, first - 2)),
                1,
                &EventFilter::all()
            )
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::ResumeExpired
    );
}

/// A subscription replays after `since`, then goes live, with no gap or duplicate.
pub async fn subscribe_replays_then_follows<S: Store>(store: S) {
    let first = append_n(&store, 3).await;
    let mut sub = store
        .subscribe(Some(first[0].offset()), EventFilter::all())
        .await
        .unwrap();
    append_n(&store, 2).await;
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(next_event(&mut sub).await.offset().offset);
    }
    assert_eq!(got, [2, 3, 4, 5]);
}

/// Without `since`, a subscription delivers only events appended after it started.
pub async fn subscribe_without_token_is_live_only<S: Store>(store: S) {
    append_n(&store, 2).await;
    let mut sub = store.subscribe(None, EventFilter::all()).await.unwrap();
    append_n(&store, 1).await;
    assert_eq!(next_event(&mut sub).await.offset().offset, 3);
}

/// Subscriptions deliver only events on the requested channels.
pub async fn subscriptions_filter_by_channel<S: Store>(store: S) {
    let head = store.head().await.unwrap();
    let pet = sample_pet("a", PetStatus::Available);
    let mut one = store
        .subscribe(
            Some(head),
            EventFilter::channels([Channel::Pet(pet.id.clone())]),
        )
        .await
        .unwrap();
    let mut orders = store
        .subscribe(Some(head), EventFilter::channels([Channel::Orders]))
        .await
        .unwrap();
    append_n(&store, 2).await;
    store.commit(put_pet(&pet), "/t").await.unwrap();
    store
        .commit(
            Change::new().event(EventData::OrderCreated(sample_order(&pet, "c"))),
            "/t",
        )
        .await
        .unwrap();
    assert_eq!(next_event(&mut one).await.subject(), pet.id.as_str());
    assert_eq!(
        next_event(&mut orders).await.event_type(),
        EventType::OrderCreated
    );
}

/// A subscriber that does not read is cut off with `Lagged`; writers never wait.
pub async fn slow_subscriber_lags_without_blocking_writers<S: Store>(store: S) {
    let head = store.head().await.unwrap();
    let mut slow = store
        .subscribe(Some(head), EventFilter::all())
        .await
        .unwrap();
    // subscriber_buffer is 4 in this test; 20 appends must not block.
    tokio::time::timeout(WAIT, append_n(&store, 20))
        .await
        .expect("writers are never blocked");
    let mut delivered = 0;
    let err = loop {
        match tokio::time::timeout(WAIT, slow.next())
            .await
            .expect("no hang")
        {
            Some(Ok(_)) => delivered += 1,
            Some(Err(e)) => break e,
            None => panic!("stream ended without a lag signal"),
        }
    };
    assert_eq!(err.kind(), ErrorKind::Lagged);
    assert!(delivered < 20);
    assert!(
        slow.next().await.is_none(),
        "the stream ends after the lag signal"
    );
    // The subscriber can resume from where it was (retention still covers it here? no:
    // retention is 4), so a resume from the start is refused explicitly.
    assert_eq!(
        store
            .subscribe(Some(head), EventFilter::all())
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::ResumeExpired
    );
}

/// A lease has one holder at a time; its holder renews it; a release or the end of
/// its grant frees it.
pub async fn leases_have_one_holder<S: Store>(store: S) {
    let long = Duration::from_secs(60);
    assert!(store.acquire_lease("l", "a", long).await.unwrap());
    assert!(!store.acquire_lease("l", "b", long).await.unwrap());
    assert!(
        store.acquire_lease("l", "a", long).await.unwrap(),
        "renewal"
    );
    assert!(store.acquire_lease("other", "b", long).await.unwrap());
    store.release_lease("l", "b").await.unwrap();
    assert!(
        !store.acquire_lease("l", "b", long).await.unwrap(),
        "not b's"
    );
    store.release_lease("l", "a").await.unwrap();
    assert!(
        store
            .acquire_lease("l", "b", Duration::from_millis(200))
            .await
            .unwrap()
    );
    // b's short grant runs out: a gets it (wait on the grant, bounded).
    let deadline = tokio::time::Instant::now() + WAIT;
    while !store.acquire_lease("l", "a", long).await.unwrap() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the grant never ended"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!store.acquire_lease("l", "b", long).await.unwrap());
}

/// `position_at(time)` is where the events after `time` start; older than retention
/// is `ResumeExpired`.
pub async fn position_at_finds_the_events_after_a_time<S: Store>(store: S) {
    let empty = store.position_at(Utc::now()).await.unwrap();
    assert_eq!(empty, store.head().await.unwrap());
    let before = Utc::now() - chrono::TimeDelta::seconds(60);
    append_n(&store, 2).await;
    let between = loop {
        // Events carry commit times: wait until the clock has moved past them.
        let now = Utc::now();
        let events = store
            .read(None, 10, &EventFilter::all())
            .await
            .unwrap()
            .events;
        if events.iter().all(|e| e.time() < now) {
            break now;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let later = loop {
        let events = append_n(&store, 1).await;
        if events[0].time() > between {
            break events;
        }
    };
    assert_eq!(store.position_at(before).await.unwrap().offset, 0);
    let at = store.position_at(between).await.unwrap();
    let read = store.read(Some(at), 10, &EventFilter::all()).await.unwrap();
    assert_eq!(read.events.first().map(|e| e.id()), Some(later[0].id()));
    assert_eq!(
        store.position_at(Utc::now()).await.unwrap(),
        store.head().await.unwrap()
    );
    // Retention (4 here) drops the first events: a time before them is expired.
    append_n(&store, 6).await;
    assert_eq!(
        store.position_at(before).await.unwrap_err().kind(),
        ErrorKind::ResumeExpired
    );
}

/// The log property every backend keeps under concurrency: `writers` tasks each create
/// `per_writer` pets, spread over `services` (several instances sharing one store, or
/// one), while a subscriber per entry of `starts` follows from a position in the first
/// history (spread over the services too). Every subscriber sees exactly the offsets
/// after its start, in order, with no gap and no duplicate, and polling with small
/// pages reassembles the same sequence; every service delivers the same envelope,
/// byte for byte, for each offset. The store must be empty.
pub async fn log_has_no_gap_or_duplicate(
    services: &[crate::PetStore],
    writers: usize,
    per_writer: usize,
    starts: &[u64],
) {
    use crate::{Principal, Scope};
    let staff = Principal::new("staff", [Scope::Admin]);
    let first = &services[0];
    let total = (writers * per_writer) as u64;
    // Some history first, so subscribers can start in the past.
    let history = 5u64;
    for i in 0..history {
        first
            .create_pet(&staff, sample_new_pet(&format!("H{i}")))
            .await
            .expect("history");
    }
    let epoch = first.head().await.expect("head").epoch;
    let mut subs = Vec::new();
    for (i, start) in starts.iter().enumerate() {
        let since = ResumeToken::new(epoch, start % (history + 1));
        let sub = services[i % services.len()]
            .subscribe(&staff, Some(since), EventFilter::all())
            .await
            .expect("subscribe");
        subs.push((since.offset, sub));
    }
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let service = services[w % services.len()].clone();
            let staff = staff.clone();
            tokio::spawn(async move {
                for i in 0..per_writer {
                    service
                        .create_pet(&staff, sample_new_pet(&format!("W{w}-{i}")))
                        .await
                        .expect("create");
                }
            })
        })
        .collect();
    let end = history + total;
    // Offset -> the envelope first seen for it.
    let mut envelopes = std::collections::BTreeMap::<u64, Arc<str>>::new();
    let mut same_envelope = |event: &Event| {
        let seen = envelopes
            .entry(event.offset().offset)
            .or_insert_with(|| event.json().clone());
        assert_eq!(
            seen,
            event.json(),
            "one envelope per offset on every service"
        );
    };
    for (from, mut sub) in subs {
        let mut expect = from + 1;
        while expect <= end {
            let event = next_event(&mut sub).await;
            assert_eq!(
                event.offset().offset,
                expect,
                "no gap, no duplicate, in order"
            );
            same_envelope(&event);
            expect += 1;
        }
    }
    for t in tasks {
        t.await.expect("writer");
    }
    for service in services {
        let mut seen = Vec::new();
        let mut since = None;
        loop {
            let batch = service
                .events(&staff, since, 3, EventFilter::all(), Duration::ZERO)
                .await
                .expect("poll");
            if batch.events.is_empty() {
                break;
            }
            for event in &batch.events {
                same_envelope(event);
            }
            seen.extend(batch.events.iter().map(|e| e.offset().offset));
            since = Some(batch.next);
        }
        assert_eq!(seen, (1..=end).collect::<Vec<_>>());
    }
}

fn sample_new_pet(name: &str) -> NewPet {
    NewPet {
        name: name.to_owned(),
        species: "dog".to_owned(),
        breed: None,
        age: None,
        status: None,
        tags: vec![],
        photo_urls: vec![],
        price: Money::parse("1.00", Currency::USD).expect("valid"),
    }
}

/// Small sizes that make retention and lag rules observable.
pub fn small_config() -> LogConfig {
    LogConfig::default().retention(4).subscriber_buffer(4)
}

/// Generates one `#[tokio::test]` per behaviour rule for the store built by
/// `$factory: Fn(LogConfig) -> impl Store`; with `async` before it, by a factory that
/// returns a future of the store; with `optional async`, of `Option<store>`, the test
/// passing without running the rule on `None` (a backend whose database is not
/// configured says so and returns `None`). The list of rules is here once, so a new
/// rule reaches every backend.
#[macro_export]
macro_rules! store_behaviour_tests {
    // Every form becomes a factory of `Option<store>` futures, run by one test body.
    (async $factory:expr) => {
        $crate::store_behaviour_tests!(@rules |config: $crate::LogConfig| {
            let store = ($factory)(config);
            async move { Some(store.await) }
        });
    };
    (optional async $factory:expr) => {
        $crate::store_behaviour_tests!(@rules $factory);
    };
    (@rules $factory:expr) => {
        $crate::store_behaviour_tests!(@tests $factory;
            head_starts_at_zero_and_counts_events: default,
            commit_assigns_consecutive_offsets: default,
            failed_expectation_changes_nothing: default,
            idempotency_keys_are_write_once: default,
            listings_page_in_id_order: default,
            inventory_matches_pets: default,
            read_pages_without_gap_or_duplicate: default,
            filtered_read_advances_past_skipped_events: default,
            stale_tokens_are_refused: small,
            subscribe_replays_then_follows: default,
            subscribe_without_token_is_live_only: default,
            subscriptions_filter_by_channel: default,
            slow_subscriber_lags_without_blocking_writers: small,
            leases_have_one_holder: default,
            position_at_finds_the_events_after_a_time: small,
        );
    };
    (@tests $factory:expr; $($name:ident : $config:ident),* $(,)?) => {
        mod store_behaviour {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let factory = $factory;
                    let config = $crate::store_behaviour_tests!(@config $config);
                    let Some(store) = factory(config).await else {
                        return;
                    };
                    $crate::testing::$name(store).await;
                }
            )*
        }
    };
    (@config default) => { $crate::LogConfig::default() };
    (@config small) => { $crate::testing::small_config() };
    ($factory:expr) => {
        $crate::store_behaviour_tests!(@rules |config: $crate::LogConfig| {
            let store = ($factory)(config);
            async move { Some(store) }
        });
    };
}
