//! Fresh databases for the tests: a new SQLite file each time, and on the PostgreSQL
//! cluster named by `PETSTORE_TEST_DATABASE_URL` (CI starts one with
//! `scripts/start-postgres`) a new database each time.

use std::time::Duration;

use petstore_core::LogConfig;
use petstore_sql::{SqlOptions, SqlStore};

/// Generous bound for anything that should happen "soon".
pub(crate) const WAIT: Duration = Duration::from_secs(15);

/// A URL for a new SQLite file (in Cargo's temporary folder for integration tests).
pub(crate) fn sqlite_url() -> String {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("petstore-sql");
    format!(
        "sqlite://{}/{}.db",
        dir.display(),
        uuid::Uuid::new_v4().simple()
    )
}

/// The cluster's URL (`PETSTORE_TEST_DATABASE_URL`), or `None` after saying that the
/// test skips. With `PETSTORE_REQUIRE_ALL` set (CI), a missing cluster fails the test
/// instead (`petstore_core::testing::database_url`).
#[track_caller]
pub(crate) fn postgres_cluster() -> Option<String> {
    petstore_core::testing::database_url()
}

/// Creates a new, empty database on the cluster at `cluster` and returns its URL.
pub(crate) async fn postgres_url(cluster: &str) -> String {
    petstore_sql::testing::create_postgres_database(cluster, "petstore_test")
        .await
        .expect("CREATE DATABASE on the test cluster")
}

/// Test stores poll rarely: a test that passes must have been woken, not polled.
pub(crate) fn options() -> SqlOptions {
    SqlOptions::default().poll_interval(Duration::from_secs(30))
}

pub(crate) async fn connect(url: &str, config: LogConfig) -> SqlStore {
    SqlStore::connect_with(url, config, options())
        .await
        .expect("the store connects")
}

/// Runs `$body` (an async block using the `url` it is given) as two tests: on a new
/// SQLite file, and on a new PostgreSQL database when the cluster is configured.
macro_rules! on_both {
    ($name:ident, |$url:ident| $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let $url = $crate::support::sqlite_url();
                $body
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(cluster) = $crate::support::postgres_cluster() else {
                    return;
                };
                let $url = $crate::support::postgres_url(&cluster).await;
                $body
            }
        }
    };
}
pub(crate) use on_both;

/// A service over `store` with a random token secret.
pub(crate) fn service(store: SqlStore) -> petstore_core::PetStore {
    petstore_core::PetStore::new(
        store,
        petstore_core::TokenAuthority::random(Duration::from_secs(3600)),
        petstore_core::ServiceConfig::default(),
    )
}

/// Everything but `admin`.
pub(crate) fn staff() -> petstore_core::Principal {
    use petstore_core::Scope;
    petstore_core::Principal::new(
        "staff",
        [
            Scope::PetsRead,
            Scope::PetsWrite,
            Scope::OrdersRead,
            Scope::OrdersWrite,
            Scope::ChatWrite,
        ],
    )
}

/// A valid new pet.
pub(crate) fn new_pet(name: &str) -> petstore_core::NewPet {
    petstore_core::NewPet {
        name: name.into(),
        species: "dog".into(),
        breed: None,
        age: Some(1),
        status: None,
        tags: vec![],
        photo_urls: vec![],
        price: petstore_core::Money::parse("100.00", petstore_core::Currency::USD).unwrap(),
    }
}

/// The next item of a subscription, within [`WAIT`].
pub(crate) async fn next_event(
    sub: &mut petstore_core::Subscription,
) -> std::sync::Arc<petstore_core::Event> {
    use futures_util::StreamExt;
    tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("an event within the timeout")
        .expect("the stream is open")
        .expect("not an error")
}
