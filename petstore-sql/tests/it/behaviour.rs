//! The core's behaviour suite for every `Store` backend, on both databases.

/// SQLite: the suite as the core generates it.
mod sqlite {
    use crate::support::{block_on, connect, sqlite_url};

    petstore_core::store_behaviour_tests!(|config| block_on(connect(&sqlite_url(), config)));
}

/// PostgreSQL: the same rules, each on a new database, skipped (saying so) when no
/// cluster is configured. The list follows the core's `store_behaviour_tests!`;
/// `the_postgres_list_is_the_core_list` fails when the core adds a rule.
mod postgres {
    use crate::support::{connect, postgres_cluster, postgres_url};
    use petstore_core::{LogConfig, testing};

    pub(super) const RULES: &[&str] = &[
        "head_starts_at_zero_and_counts_events",
        "commit_assigns_consecutive_offsets",
        "failed_expectation_changes_nothing",
        "idempotency_keys_are_write_once",
        "listings_page_in_id_order",
        "inventory_matches_pets",
        "read_pages_without_gap_or_duplicate",
        "filtered_read_advances_past_skipped_events",
        "stale_tokens_are_refused",
        "subscribe_replays_then_follows",
        "subscribe_without_token_is_live_only",
        "subscriptions_filter_by_channel",
        "slow_subscriber_lags_without_blocking_writers",
    ];

    macro_rules! rules {
        ($($name:ident: $config:expr),* $(,)?) => {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(cluster) = postgres_cluster() else { return };
                    let config: LogConfig = $config;
                    testing::$name(connect(&postgres_url(&cluster).await, config).await).await;
                }
            )*
            #[test]
            fn every_rule_is_listed() {
                assert_eq!(RULES, [$(stringify!($name)),*]);
            }
        };
    }

    rules! {
        head_starts_at_zero_and_counts_events: LogConfig::default(),
        commit_assigns_consecutive_offsets: LogConfig::default(),
        failed_expectation_changes_nothing: LogConfig::default(),
        idempotency_keys_are_write_once: LogConfig::default(),
        listings_page_in_id_order: LogConfig::default(),
        inventory_matches_pets: LogConfig::default(),
        read_pages_without_gap_or_duplicate: LogConfig::default(),
        filtered_read_advances_past_skipped_events: LogConfig::default(),
        stale_tokens_are_refused: testing::small_config(),
        subscribe_replays_then_follows: LogConfig::default(),
        subscribe_without_token_is_live_only: LogConfig::default(),
        subscriptions_filter_by_channel: LogConfig::default(),
        slow_subscriber_lags_without_blocking_writers: testing::small_config(),
    }
}

/// The core's macro is the list of rules; the PostgreSQL list above must name each.
#[test]
fn the_postgres_list_is_the_core_list() {
    let core = include_str!("../../../petstore-core/src/testing.rs");
    let start = core
        .find("$crate::store_behaviour_tests!(@tests $factory;")
        .expect("the core macro's rule list");
    let list = &core[start..];
    let list = &list[list.find(';').unwrap() + 1..list.find(");").unwrap()];
    let core_rules: Vec<&str> = list
        .split(',')
        .filter_map(|entry| entry.split(':').next())
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .collect();
    assert_eq!(core_rules, postgres::RULES);
}
