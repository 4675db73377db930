//! The core's behaviour suite for every `Store` backend, on both databases.

/// SQLite: every rule, each on a new file.
mod sqlite {
    use crate::support::{connect, sqlite_url};

    petstore_core::store_behaviour_tests!(async |config| async move {
        connect(&sqlite_url(), config).await
    });
}

/// PostgreSQL: every rule, each on a new database, skipped (saying so) when no cluster
/// is configured.
mod postgres {
    use crate::support::{connect, postgres_cluster, postgres_url};

    petstore_core::store_behaviour_tests!(optional async |config| async move {
        let cluster = postgres_cluster()?;
        Some(connect(&postgres_url(&cluster).await, config).await)
    });
}
