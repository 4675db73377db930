//! The core's event-log property, on the SQL log: concurrent writers (spread over
//! several instances on PostgreSQL), subscribers starting at random points on every
//! instance: each sees exactly the offsets after its start, in order, the same event
//! for each offset everywhere, and polling reassembles the same sequence.

use std::collections::BTreeMap;
use std::time::Duration;

use petstore_core::{EventFilter, EventId, LogConfig, ResumeToken};
use proptest::test_runner::{Config, TestRunner};

use crate::support::{
    connect, new_pet, next_event, postgres_cluster, postgres_url, service, sqlite_url, staff,
};

async fn run_log(
    url: String,
    instances: usize,
    writers: usize,
    per_writer: usize,
    starts: Vec<u64>,
) {
    let mut services = Vec::new();
    for _ in 0..instances {
        services.push(service(connect(&url, LogConfig::default()).await));
    }
    let total = (writers * per_writer) as u64;
    let history = 5u64;
    for _ in 0..history {
        services[0]
            .create_pet(&staff(), new_pet("H"))
            .await
            .unwrap();
    }
    let epoch = services[0].head().await.unwrap().epoch;
    let mut subs = Vec::new();
    for (i, start) in starts.iter().enumerate() {
        let since = ResumeToken::new(epoch, start % (history + 1));
        let sub = services[i % instances]
            .subscribe(&staff(), Some(since), EventFilter::all())
            .await
            .unwrap();
        subs.push((since.offset, sub));
    }
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let store = services[w % instances].clone();
            tokio::spawn(async move {
                for i in 0..per_writer {
                    store
                        .create_pet(&staff(), new_pet(&format!("W{w}-{i}")))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    let end = history + total;
    let mut ids: BTreeMap<u64, EventId> = BTreeMap::new();
    for (from, mut sub) in subs {
        for expect in from + 1..=end {
            let event = next_event(&mut sub).await;
            assert_eq!(
                event.offset.offset, expect,
                "no gap, no duplicate, in order"
            );
            let id = ids.entry(expect).or_insert_with(|| event.id.clone());
            assert_eq!(*id, event.id, "one event per offset on every instance");
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    for svc in &services {
        let mut seen = Vec::new();
        let mut since = None;
        loop {
            let batch = svc
                .events(&staff(), since, 3, EventFilter::all(), Duration::ZERO)
                .await
                .unwrap();
            if batch.events.is_empty() {
                break;
            }
            for e in &batch.events {
                if let Some(id) = ids.get(&e.offset.offset) {
                    assert_eq!(*id, e.id);
                }
            }
            seen.extend(batch.events.iter().map(|e| e.offset.offset));
            since = Some(batch.next);
        }
        assert_eq!(seen, (1..=end).collect::<Vec<_>>());
    }
}

fn check(cases: u32, instances: usize, url: impl Fn() -> String) {
    let strategy = (
        1usize..4,
        1usize..20,
        proptest::collection::vec(0u64..10, 1..4),
    );
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&strategy, |(writers, per_writer, starts)| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap()
                .block_on(run_log(url(), instances, writers, per_writer, starts));
            Ok(())
        })
        .unwrap();
}

#[test]
fn sqlite_log_has_no_gap_or_duplicate_under_concurrency() {
    check(12, 1, sqlite_url);
}

#[test]
fn postgres_log_has_no_gap_or_duplicate_across_instances() {
    let Some(cluster) = postgres_cluster() else {
        return;
    };
    check(10, 2, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(postgres_url(&cluster))
    });
}
