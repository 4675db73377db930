//! The PostgreSQL cluster of the PostgreSQL rows: named by `DATABASE_URL` (a
//! `postgres://` URL) or by `PETSTORE_TEST_DATABASE_URL`, the variable the tests use
//! (`eval "$(scripts/start-postgres)"` starts a private cluster and sets it). Each row
//! works in databases of its own, created here and dropped after.

use anyhow::Context as _;
use sqlx::Connection as _;

/// The variables that may name the cluster, in the order they are read.
pub(crate) const ENV: [&str; 2] = ["DATABASE_URL", "PETSTORE_TEST_DATABASE_URL"];

/// Why a PostgreSQL row does not run when no cluster is named.
pub(crate) const NOT_SET: &str = "not run: neither DATABASE_URL (postgres://...) nor PETSTORE_TEST_DATABASE_URL is set (eval \"$(scripts/start-postgres)\" starts a cluster)";

/// The cluster's URL, if one is named.
pub(crate) fn cluster() -> Option<String> {
    ENV.iter().find_map(|var| {
        std::env::var(var)
            .ok()
            .filter(|url| url.starts_with("postgres://") || url.starts_with("postgresql://"))
    })
}

/// Creates a new, empty database on `cluster`; returns its URL.
pub(crate) async fn new_database(cluster: &str) -> anyhow::Result<String> {
    petstore_sql::testing::create_postgres_database(cluster, "petstore_bench")
        .await
        .context("CREATE DATABASE on the PostgreSQL cluster")
}

/// Drops the database of `url` (made by [`new_database`]), whoever is still connected.
pub(crate) async fn drop_database(cluster: &str, url: &str) {
    let Some(name) = database_of(url) else {
        return;
    };
    if let Ok(mut admin) = sqlx::PgConnection::connect(cluster).await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut admin)
            .await;
        admin.close().await.ok();
    }
}

/// The database a URL made by [`new_database`] names.
fn database_of(url: &str) -> Option<&str> {
    let base = url.split('?').next()?;
    let name = base.split_once("://")?.1.split_once('/')?.1;
    name.starts_with("petstore_bench_").then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_databases_the_bench_made_are_dropped() {
        assert_eq!(
            database_of("postgres://u@h:1/petstore_bench_x?sslmode=disable"),
            Some("petstore_bench_x")
        );
        assert_eq!(database_of("postgres://u@h:1/postgres"), None);
    }
}
