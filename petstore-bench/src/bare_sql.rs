//! The bare baseline of the storage rows: an axum `POST /v1/pets` whose handler runs
//! one sqlx transaction inserting the same pet row and event row the full stack
//! writes (the same tables, columns and indexes as petstore-sql's schema, the log head
//! advanced in the transaction), and answers 201 with the pet. Nothing else: no
//! authentication, validation, idempotency, fan-out, metrics or logs.

use std::net::SocketAddr;
use std::str::FromStr as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use chrono::{SecondsFormat, Utc};
use serde_json::{Map, Value};
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{PgPool, SqlitePool};

/// Pooled connections: petstore-sql's default, so that both sides have as many.
const POOL: u32 = 10;

/// The tables the row and the event go to, as in petstore-sql's migrations.
const SQLITE_SCHEMA: &str = "
CREATE TABLE log_head (id INTEGER PRIMARY KEY CHECK (id = 1), epoch INTEGER NOT NULL, head INTEGER NOT NULL CHECK (head >= 0));
CREATE TABLE events (log_offset INTEGER PRIMARY KEY, id TEXT NOT NULL, type TEXT NOT NULL, subject TEXT NOT NULL, source TEXT NOT NULL, time TEXT NOT NULL, data TEXT NOT NULL, traceparent TEXT);
CREATE TABLE pets (id TEXT PRIMARY KEY, status TEXT NOT NULL, species_key TEXT NOT NULL, version INTEGER NOT NULL, doc TEXT NOT NULL);
CREATE INDEX pets_by_status ON pets (status, id);
CREATE INDEX pets_by_species ON pets (species_key, id);
INSERT INTO log_head (id, epoch, head) VALUES (1, 1, 0);
";

const POSTGRES_SCHEMA: &str = r#"
CREATE TABLE log_head (id INTEGER PRIMARY KEY CHECK (id = 1), epoch BIGINT NOT NULL, head BIGINT NOT NULL CHECK (head >= 0));
CREATE TABLE events (log_offset BIGINT PRIMARY KEY, id TEXT NOT NULL, type TEXT NOT NULL, subject TEXT NOT NULL, source TEXT NOT NULL, time TEXT NOT NULL, data TEXT NOT NULL, traceparent TEXT);
CREATE TABLE pets (id TEXT COLLATE "C" PRIMARY KEY, status TEXT NOT NULL, species_key TEXT NOT NULL, version BIGINT NOT NULL, doc TEXT NOT NULL);
CREATE INDEX pets_by_status ON pets (status, id);
CREATE INDEX pets_by_species ON pets (species_key, id);
INSERT INTO log_head (id, epoch, head) VALUES (1, 1, 0);
"#;

const ADVANCE_HEAD: &str = "UPDATE log_head SET head = head + 1 WHERE id = 1 RETURNING head";
const INSERT_PET: &str =
    "INSERT INTO pets (id, status, species_key, version, doc) VALUES ($1, $2, $3, $4, $5)";
const INSERT_EVENT: &str = "INSERT INTO events (log_offset, id, type, subject, source, time, data, traceparent) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)";

/// The database of the bare side.
enum Db {
    /// One writer at a time, queued in the process (as petstore-sql does) rather than
    /// in SQLite's busy handler; `BEGIN IMMEDIATE` takes the write lock at once.
    Sqlite {
        pool: SqlitePool,
        writer: tokio::sync::Mutex<()>,
    },
    Postgres(PgPool),
}

struct Bare {
    db: Db,
    ids: AtomicU64,
}

/// One write, ready to insert.
struct Write<'a> {
    id: &'a str,
    species_key: &'a str,
    doc: &'a str,
    event_id: &'a str,
    time: &'a str,
}

impl Bare {
    async fn insert(&self, w: &Write<'_>) -> sqlx::Result<()> {
        macro_rules! transaction {
            ($tx:expr) => {{
                let mut tx = $tx;
                let offset: i64 = sqlx::query_scalar(ADVANCE_HEAD).fetch_one(&mut *tx).await?;
                sqlx::query(INSERT_PET)
                    .bind(w.id)
                    .bind("available")
                    .bind(w.species_key)
                    .bind(1_i64)
                    .bind(w.doc)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(INSERT_EVENT)
                    .bind(offset)
                    .bind(w.event_id)
                    .bind("pet.created")
                    .bind(format!("pets/{}", w.id))
                    .bind("/petstore")
                    .bind(w.time)
                    .bind(w.doc)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await
            }};
        }
        match &self.db {
            Db::Sqlite { pool, writer } => {
                let _turn = writer.lock().await;
                transaction!(pool.begin_with("BEGIN IMMEDIATE").await?)
            }
            Db::Postgres(pool) => transaction!(pool.begin().await?),
        }
    }
}

/// Starts the bare server on a new SQLite file at `path` (WAL, sqlx's default
/// `synchronous = FULL`, as the full stack's store).
pub(crate) async fn sqlite(path: &std::path::Path) -> anyhow::Result<SocketAddr> {
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal);
    let pool = SqlitePoolOptions::new()
        .max_connections(POOL)
        .test_before_acquire(false)
        .connect_with(options)
        .await
        .context("opening the bare side's SQLite file")?;
    sqlx::raw_sql(SQLITE_SCHEMA).execute(&pool).await?;
    serve(Db::Sqlite {
        pool,
        writer: tokio::sync::Mutex::new(()),
    })
    .await
}

/// Starts the bare server on the (new, empty) PostgreSQL database at `url`.
pub(crate) async fn postgres(url: &str) -> anyhow::Result<SocketAddr> {
    let pool = PgPoolOptions::new()
        .max_connections(POOL)
        .test_before_acquire(false)
        .connect(url)
        .await
        .context("connecting the bare side to PostgreSQL")?;
    sqlx::raw_sql(POSTGRES_SCHEMA).execute(&pool).await?;
    serve(Db::Postgres(pool)).await
}

async fn serve(db: Db) -> anyhow::Result<SocketAddr> {
    let app = Router::new()
        .route("/v1/pets", axum::routing::post(create))
        .with_state(Arc::new(Bare {
            db,
            ids: AtomicU64::new(0),
        }));
    crate::bare::serve_axum(app, true).await
}

/// Parses the pet, gives it an id, a status, a version and timestamps, stores it and
/// its `pet.created` event in one transaction, and answers 201 with it.
async fn create(
    State(bare): State<Arc<Bare>>,
    axum::Json(mut pet): axum::Json<Map<String, Value>>,
) -> Response {
    let n = bare.ids.fetch_add(1, Ordering::Relaxed);
    let id = format!("pet_bare{n:020}");
    let event_id = format!("evt_bare{n:020}");
    let time = Utc::now().to_rfc3339_opts(SecondsFormat::AutoSi, true);
    let species_key = pet
        .get("species")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_ascii_lowercase();
    pet.insert("id".into(), id.clone().into());
    pet.insert("status".into(), "available".into());
    pet.insert("version".into(), 1.into());
    pet.insert("createdAt".into(), time.clone().into());
    pet.insert("updatedAt".into(), time.clone().into());
    let doc = match serde_json::to_string(&pet) {
        Ok(doc) => doc,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    let write = Write {
        id: &id,
        species_key: &species_key,
        doc: &doc,
        event_id: &event_id,
        time: &time,
    };
    match bare.insert(&write).await {
        Ok(()) => (
            StatusCode::CREATED,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            doc,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
