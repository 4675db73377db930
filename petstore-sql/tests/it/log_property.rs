//! The core's event-log property on the SQL log: concurrent writers (spread over two
//! instances of the store on PostgreSQL), subscribers starting at random points on
//! every instance: each sees exactly the offsets after its start, in order, the same
//! envelope for each offset everywhere, and polling reassembles the same sequence.

use petstore_core::LogConfig;
use petstore_core::testing::log_has_no_gap_or_duplicate;
use proptest::test_runner::{Config, TestRunner};

use crate::support::{connect, postgres_cluster, postgres_url, service, sqlite_url};

async fn run(url: String, instances: usize, writers: usize, per_writer: usize, starts: Vec<u64>) {
    let mut services = Vec::new();
    for _ in 0..instances {
        services.push(service(connect(&url, LogConfig::default()).await));
    }
    log_has_no_gap_or_duplicate(&services, writers, per_writer, &starts).await;
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
                .block_on(run(url(), instances, writers, per_writer, starts));
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
