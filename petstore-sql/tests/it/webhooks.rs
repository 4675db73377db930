//! petstore-webhooks' behaviour suite for `SqlWebhookStore`, on both databases, and
//! what a restart must keep.

/// SQLite: every rule, each on a new file.
mod sqlite {
    use petstore_core::LogConfig;
    use petstore_sql::SqlWebhookStore;

    use crate::support::{connect, sqlite_url};

    petstore_webhooks::webhook_store_behaviour_tests!(|| async {
        SqlWebhookStore::new(&connect(&sqlite_url(), LogConfig::default()).await)
    });
}

/// PostgreSQL: every rule, each on a new database (skipped, saying so, when no
/// cluster is configured).
mod postgres {
    use petstore_core::LogConfig;
    use petstore_sql::SqlWebhookStore;

    use crate::support::{connect, postgres_cluster, postgres_url};

    petstore_webhooks::webhook_store_behaviour_tests!(
        optional
            || async {
                let cluster = postgres_cluster()?;
                let store = connect(&postgres_url(&cluster).await, LogConfig::default()).await;
                Some(SqlWebhookStore::new(&store))
            }
    );
}
