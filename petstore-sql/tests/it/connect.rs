//! Connecting: URLs, file creation, migrations on first and later starts, an
//! unreachable server, and (PostgreSQL) the live tail across instances.

use std::time::Duration;

use petstore_core::{ErrorKind, EventFilter, EventLog, LogConfig};
use petstore_sql::{Dialect, SqlOptions, SqlStore};

use crate::support::{
    connect, new_pet, next_event, on_both, postgres_cluster, postgres_url, service, sqlite_url,
    staff,
};

#[tokio::test]
async fn unsupported_urls_are_refused() {
    for url in [
        "mysql://localhost/db",
        "petstore.db",
        "sqlite::memory:",
        "sqlite://?mode=memory",
    ] {
        let err = SqlStore::connect(url, LogConfig::default())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{url}: {err:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_file_and_its_folder_are_created() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("petstore-sql")
        .join(uuid::Uuid::new_v4().simple().to_string())
        .join("nested");
    let file = dir.join("store.db");
    assert!(!dir.exists());
    let store = connect(
        &format!("sqlite://{}", file.display()),
        LogConfig::default(),
    )
    .await;
    assert_eq!(store.dialect(), Dialect::Sqlite);
    assert!(file.is_file());
    assert_eq!(store.head().await.unwrap().offset, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_unavailable() {
    // A port nobody listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = SqlStore::connect_with(
        &format!("postgres://postgres@127.0.0.1:{port}/petstore"),
        LogConfig::default(),
        SqlOptions::default().acquire_timeout(Duration::from_millis(500)),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_starting_together_agree_on_one_epoch() {
    let Some(cluster) = postgres_cluster() else {
        return;
    };
    let url = postgres_url(&cluster).await;
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { connect(&url, LogConfig::default()).await })
        })
        .collect();
    let mut epochs = Vec::new();
    for s in starts {
        epochs.push(s.await.unwrap().head().await.unwrap().epoch);
    }
    epochs.dedup();
    assert_eq!(epochs.len(), 1, "{epochs:?}");
    // And a SQLite file opened twice keeps its epoch.
    let url = sqlite_url();
    let first = connect(&url, LogConfig::default())
        .await
        .head()
        .await
        .unwrap();
    let second = connect(&url, LogConfig::default())
        .await
        .head()
        .await
        .unwrap();
    assert_eq!(first, second);
}

/// A write on one instance reaches live subscribers on another: the follower there
/// is woken by NOTIFY (test stores poll every 30 s, so a pass is not the poll).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_one_instance_is_live_on_another() {
    let Some(cluster) = postgres_cluster() else {
        return;
    };
    let url = postgres_url(&cluster).await;
    let a = connect(&url, LogConfig::default()).await;
    let b = connect(&url, LogConfig::default()).await;
    let mut on_b = b.subscribe(None, EventFilter::all()).await.unwrap();
    let mut on_a = a.subscribe(None, EventFilter::all()).await.unwrap();
    let pet = service(a.clone())
        .create_pet(&staff(), new_pet("Rex"))
        .await
        .unwrap();
    let seen_b = next_event(&mut on_b).await;
    let seen_a = next_event(&mut on_a).await;
    assert_eq!(seen_b.subject(), pet.id.as_str());
    assert_eq!(
        seen_b.json(),
        seen_a.json(),
        "the same id, offset and envelope"
    );
    // And the other way round, several times in a row.
    let svc_b = service(b.clone());
    for i in 0..5 {
        svc_b
            .create_pet(&staff(), new_pet(&format!("B{i}")))
            .await
            .unwrap();
        assert_eq!(next_event(&mut on_a).await.offset().offset, 2 + i);
    }
}

/// A database that a newer release migrated further is refused, not written to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_from_a_newer_release_is_refused() {
    use sqlx::Connection;
    let url = sqlite_url();
    drop(connect(&url, LogConfig::default()).await);
    let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99990101000000, 'from the future', TRUE, x'00', 0)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    let err = SqlStore::connect(&url, LogConfig::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Internal, "{err:?}");
    assert!(err.message().contains("schema"), "{err:?}");
}

// A database written by a release before `pet_counts` (schema 3, pets of every
// status) is upgraded at the next start: the migration counts the pets already there,
// and its triggers keep counting the writes after it.
on_both!(
    the_pet_counts_migration_counts_the_pets_already_stored,
    |url| {
        use petstore_core::PetStatus;
        use petstore_core::backend::Store as _;
        use sqlx::Connection;

        let store = connect(&url, LogConfig::default()).await;
        let svc = service(store.clone());
        let mut ids = Vec::new();
        for i in 0..5 {
            ids.push(
                svc.create_pet(&staff(), new_pet(&format!("P{i}")))
                    .await
                    .unwrap()
                    .id,
            );
        }
        for (id, status) in [
            (&ids[0], PetStatus::Sold),
            (&ids[1], PetStatus::Pending),
            (&ids[2], PetStatus::Sold),
        ] {
            let mut row = sqlx::AnyConnection::connect(&url).await.unwrap();
            sqlx::query("UPDATE pets SET status = $1 WHERE id = $2")
                .bind(status.as_str())
                .bind(id.as_str())
                .execute(&mut row)
                .await
                .unwrap();
        }
        store.close().await;

        // Back to schema 3: no counts, no triggers, migration 4 not applied.
        let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
        let downgrade = if url.starts_with("sqlite:") {
            "DROP TRIGGER pets_counted_on_insert; DROP TRIGGER pets_counted_on_delete; \
         DROP TRIGGER pets_counted_on_update; DROP TABLE pet_counts; \
         DELETE FROM _sqlx_migrations WHERE version = 4"
        } else {
            "DROP TRIGGER pets_counted ON pets; DROP FUNCTION pet_counts_follow(); \
         DROP TABLE pet_counts; DELETE FROM _sqlx_migrations WHERE version = 4"
        };
        sqlx::raw_sql(downgrade).execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();

        let store = connect(&url, LogConfig::default()).await;
        let inventory = store.inventory().await.unwrap().items;
        assert_eq!(
            (inventory.available, inventory.pending, inventory.sold),
            (2, 1, 2)
        );
        // And writes after the upgrade are counted.
        let svc = service(store.clone());
        svc.create_pet(&staff(), new_pet("after")).await.unwrap();
        svc.delete_pet(&staff(), &ids[0], None).await.unwrap();
        let inventory = store.inventory().await.unwrap().items;
        assert_eq!(
            (inventory.available, inventory.pending, inventory.sold),
            (3, 1, 1)
        );
    }
);
