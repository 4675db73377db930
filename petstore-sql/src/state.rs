//! The state tables: conditional writes and the reads of the `Store` trait.
//!
//! Each row keeps the columns that queries filter or order by, plus `doc`, the whole
//! domain object as JSON (what reads return). Listings let SQL narrow by the indexed
//! columns and leave the last word to the domain's own `PetQuery::matches` /
//! `OrderQuery::matches`, so they filter exactly as the in-memory store does.

use std::fmt::Write as _;

use chrono::{TimeDelta, Utc};
use petstore_core::backend::{Expect, IdempotencyRecord, Write};
use petstore_core::{
    Error, ErrorKind, Inventory, Order, OrderId, OrderQuery, Payment, PaymentId, Pet, PetId,
    PetQuery, PetStatus, Result, User,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::{AnyConnection, Row};

use crate::error::{corrupt, db_error, to_i64};

/// Idempotency records are kept this long (as in the in-memory store).
const IDEMPOTENCY_TTL: TimeDelta = TimeDelta::hours(24);

/// Rows per statement while a listing looks for matches that SQL could not check.
const SCAN_PAGE: usize = 200;

fn to_doc(value: &impl Serialize) -> Result<String> {
    serde_json::to_string(value).map_err(Error::internal)
}

fn from_doc<T: DeserializeOwned>(doc: &str, what: &str) -> Result<T> {
    serde_json::from_str(doc).map_err(|e| corrupt(what, e))
}

/// The order in which a change takes its row locks: by table, then key. Concurrent
/// changes touching the same rows lock them in the same order and cannot deadlock
/// (the log head, locked last by every change, cannot close a cycle).
pub(crate) fn lock_order(write: &Write) -> (u8, String) {
    match write {
        Write::PutPet { pet, .. } => (0, pet.id.to_string()),
        Write::DeletePet { id, .. } => (0, id.to_string()),
        Write::PutOrder { order, .. } => (1, order.id.to_string()),
        Write::PutPayment(p) => (2, p.id.to_string()),
        Write::PutUser(u) => (3, u.username.clone()),
        Write::PutIdempotency { key, .. } => (4, key.clone()),
        _ => (5, String::new()),
    }
}

/// Applies one write inside the caller's transaction. A write whose expectation does
/// not hold touches no row and fails with [`Error::stale_write`]; the caller rolls
/// back.
pub(crate) async fn apply(conn: &mut AnyConnection, write: &Write) -> Result<()> {
    let (touched, what) = match write {
        Write::PutPet { pet, expect } => (put_pet(conn, pet, *expect).await?, pet.id.to_string()),
        Write::DeletePet { id, version } => {
            let n = sqlx::query("DELETE FROM pets WHERE id = $1 AND version = $2")
                .bind(id.as_str())
                .bind(to_i64(*version)?)
                .execute(&mut *conn)
                .await
                .map_err(db_error)?
                .rows_affected();
            (n, id.to_string())
        }
        Write::PutOrder { order, expect } => {
            (put_order(conn, order, *expect).await?, order.id.to_string())
        }
        Write::PutPayment(p) => {
            let n = sqlx::query(
                "INSERT INTO payments (id, order_id, doc) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
            )
            .bind(p.id.as_str())
            .bind(p.order_id.as_str())
            .bind(to_doc(p)?)
            .execute(&mut *conn)
            .await
            .map_err(db_error)?
            .rows_affected();
            (n, p.id.to_string())
        }
        Write::PutUser(u) => (put_user(conn, u).await?, u.username.clone()),
        Write::PutIdempotency { key, record } => (
            put_idempotency(conn, key, record).await?,
            "idempotency key".to_owned(),
        ),
        other => {
            return Err(Error::new(
                ErrorKind::Internal,
                format!("petstore-sql does not know this write: {other:?}"),
            ));
        }
    };
    if touched == 0 {
        return Err(Error::stale_write(what));
    }
    Ok(())
}

async fn put_pet(conn: &mut AnyConnection, pet: &Pet, expect: Expect) -> Result<u64> {
    let (sql, old) = match expect {
        Expect::Absent => (
            "INSERT INTO pets (id, status, species_key, version, doc) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (id) DO NOTHING",
            None,
        ),
        Expect::Version(v) => (
            "UPDATE pets SET status = $2, species_key = $3, version = $4, doc = $5 \
             WHERE id = $1 AND version = $6",
            Some(to_i64(v)?),
        ),
    };
    let mut query = sqlx::query(sql)
        .bind(pet.id.as_str())
        .bind(pet.status.as_str())
        .bind(pet.species.to_ascii_lowercase())
        .bind(to_i64(pet.version)?)
        .bind(to_doc(pet)?);
    if let Some(old) = old {
        query = query.bind(old);
    }
    Ok(query.execute(conn).await.map_err(db_error)?.rows_affected())
}

async fn put_order(conn: &mut AnyConnection, order: &Order, expect: Expect) -> Result<u64> {
    let (sql, old) = match expect {
        Expect::Absent => (
            "INSERT INTO orders (id, status, pet_id, customer, version, doc) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
            None,
        ),
        Expect::Version(v) => (
            "UPDATE orders SET status = $2, pet_id = $3, customer = $4, version = $5, doc = $6 \
             WHERE id = $1 AND version = $7",
            Some(to_i64(v)?),
        ),
    };
    let mut query = sqlx::query(sql)
        .bind(order.id.as_str())
        .bind(order.status.as_str())
        .bind(order.pet_id.as_str())
        .bind(order.customer.as_str())
        .bind(to_i64(order.version)?)
        .bind(to_doc(order)?);
    if let Some(old) = old {
        query = query.bind(old);
    }
    Ok(query.execute(conn).await.map_err(db_error)?.rows_affected())
}

async fn put_user(conn: &mut AnyConnection, user: &User) -> Result<u64> {
    // `doc` is the user as it serialises (without the hash); the hash has its column
    // and joins the document again when the user is read.
    Ok(sqlx::query(
        "INSERT INTO users (username, password_hash, doc) VALUES ($1, $2, $3) \
         ON CONFLICT (username) DO NOTHING",
    )
    .bind(user.username.as_str())
    .bind(user.password_hash())
    .bind(to_doc(user)?)
    .execute(conn)
    .await
    .map_err(db_error)?
    .rows_affected())
}

async fn put_idempotency(
    conn: &mut AnyConnection,
    key: &str,
    record: &IdempotencyRecord,
) -> Result<u64> {
    let cutoff = (Utc::now() - IDEMPOTENCY_TTL).timestamp_millis();
    // `seed:` keys say that a store was seeded once: they never expire, or a restart a
    // day later would add the sample catalogue again.
    sqlx::query("DELETE FROM idempotency WHERE created_at < $1 AND key NOT LIKE 'seed:%'")
        .bind(cutoff)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    Ok(sqlx::query(
        "INSERT INTO idempotency (key, created_at, doc) VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING",
    )
    .bind(key)
    .bind(record.created_at.timestamp_millis())
    .bind(to_doc(record)?)
    .execute(conn)
    .await
    .map_err(db_error)?
    .rows_affected())
}

/// The `doc` of the row of `table` whose `key_column` is `key`.
async fn doc_by_key<T: DeserializeOwned>(
    conn: &mut AnyConnection,
    table: &str,
    key_column: &str,
    key: &str,
) -> Result<Option<T>> {
    let sql = format!("SELECT doc FROM {table} WHERE {key_column} = $1");
    let doc: Option<String> = sqlx::query_scalar(&sql)
        .bind(key)
        .fetch_optional(conn)
        .await
        .map_err(db_error)?;
    doc.map(|d| from_doc(&d, table)).transpose()
}

pub(crate) async fn pet(conn: &mut AnyConnection, id: &PetId) -> Result<Option<Pet>> {
    doc_by_key(conn, "pets", "id", id.as_str()).await
}

pub(crate) async fn order(conn: &mut AnyConnection, id: &OrderId) -> Result<Option<Order>> {
    doc_by_key(conn, "orders", "id", id.as_str()).await
}

pub(crate) async fn payment(conn: &mut AnyConnection, id: &PaymentId) -> Result<Option<Payment>> {
    doc_by_key(conn, "payments", "id", id.as_str()).await
}

pub(crate) async fn idempotency(
    conn: &mut AnyConnection,
    key: &str,
) -> Result<Option<IdempotencyRecord>> {
    doc_by_key(conn, "idempotency", "key", key).await
}

pub(crate) async fn user(conn: &mut AnyConnection, username: &str) -> Result<Option<User>> {
    let row = sqlx::query("SELECT password_hash, doc FROM users WHERE username = $1")
        .bind(username)
        .fetch_optional(conn)
        .await
        .map_err(db_error)?;
    let Some(row) = row else { return Ok(None) };
    // The hash is kept out of `doc` (users serialise without it) and joins it here.
    let mut doc: serde_json::Value =
        from_doc(&row.try_get::<String, _>("doc").map_err(db_error)?, "user")?;
    if let Some(obj) = doc.as_object_mut() {
        let hash: String = row.try_get("password_hash").map_err(db_error)?;
        obj.insert("password_hash".to_owned(), hash.into());
    }
    serde_json::from_value(doc)
        .map(Some)
        .map_err(|e| corrupt("user", e))
}

/// A `SELECT id, doc FROM table WHERE ...` with equality filters on indexed columns,
/// walked in id order.
struct Scan {
    table: &'static str,
    filters: Vec<(&'static str, String)>,
}

impl Scan {
    fn new(table: &'static str) -> Self {
        Self {
            table,
            filters: Vec::new(),
        }
    }

    fn eq(mut self, column: &'static str, value: Option<String>) -> Self {
        if let Some(v) = value {
            self.filters.push((column, v));
        }
        self
    }

    /// Up to `limit` objects after `after` (exclusive) that pass the SQL filters and
    /// `keep`, in id order.
    async fn run<T: DeserializeOwned>(
        &self,
        conn: &mut AnyConnection,
        after: Option<&str>,
        limit: usize,
        id_of: impl Fn(&T) -> &str,
        keep: impl Fn(&T) -> bool,
    ) -> Result<Vec<T>> {
        let mut sql = format!("SELECT doc FROM {} WHERE 1 = 1", self.table);
        for (i, (column, _)) in self.filters.iter().enumerate() {
            let _ = write!(sql, " AND {column} = ${}", i + 1);
        }
        let k = self.filters.len();
        let with_cursor = format!("{sql} AND id > ${} ORDER BY id LIMIT ${}", k + 1, k + 2);
        let without_cursor = format!("{sql} ORDER BY id LIMIT ${}", k + 1);

        let mut out = Vec::new();
        let mut cursor = after.map(str::to_owned);
        // While `keep` rejects rows SQL let through, fetch more than is missing.
        let mut page = limit.max(1);
        while out.len() < limit {
            let sql = if cursor.is_some() {
                &with_cursor
            } else {
                &without_cursor
            };
            let mut query = sqlx::query_scalar::<_, String>(sql);
            for (_, value) in &self.filters {
                query = query.bind(value.as_str());
            }
            if let Some(c) = &cursor {
                query = query.bind(c.clone());
            }
            let docs = query
                .bind(to_i64(page as u64)?)
                .fetch_all(&mut *conn)
                .await
                .map_err(db_error)?;
            let full = docs.len() == page;
            for doc in docs {
                let item: T = from_doc(&doc, self.table)?;
                cursor = Some(id_of(&item).to_owned());
                if out.len() < limit && keep(&item) {
                    out.push(item);
                }
            }
            if !full {
                break;
            }
            page = SCAN_PAGE.max(limit - out.len());
        }
        Ok(out)
    }
}

pub(crate) async fn pets(
    conn: &mut AnyConnection,
    query: &PetQuery,
    after: Option<&PetId>,
    limit: usize,
) -> Result<Vec<Pet>> {
    Scan::new("pets")
        .eq("status", query.status.map(|s| s.as_str().to_owned()))
        // `matches` compares species ignoring ASCII case; the column holds it lowered.
        .eq(
            "species_key",
            query.species.as_deref().map(str::to_ascii_lowercase),
        )
        .run(
            conn,
            after.map(PetId::as_str),
            limit,
            |p: &Pet| p.id.as_str(),
            |p| query.matches(p),
        )
        .await
}

pub(crate) async fn orders(
    conn: &mut AnyConnection,
    query: &OrderQuery,
    after: Option<&OrderId>,
    limit: usize,
) -> Result<Vec<Order>> {
    Scan::new("orders")
        .eq("status", query.status.map(|s| s.as_str().to_owned()))
        .eq("pet_id", query.pet_id.as_ref().map(|p| p.to_string()))
        .eq("customer", query.customer.clone())
        .run(
            conn,
            after.map(OrderId::as_str),
            limit,
            |o: &Order| o.id.as_str(),
            |o| query.matches(o),
        )
        .await
}

/// Pets per status: the `pet_counts` rows that the database's triggers keep in step
/// with `pets` in every transaction that changes a pet (three rows read, however many
/// pets are stored).
pub(crate) async fn inventory(conn: &mut AnyConnection) -> Result<Inventory> {
    let rows = sqlx::query("SELECT status, n FROM pet_counts")
        .fetch_all(conn)
        .await
        .map_err(db_error)?;
    let mut inventory = Inventory::default();
    for row in rows {
        let status: String = row.try_get("status").map_err(db_error)?;
        let n: i64 = row.try_get("n").map_err(db_error)?;
        let n = u64::try_from(n).map_err(|_| corrupt("pet count", n))?;
        match status.parse::<PetStatus>() {
            Ok(PetStatus::Available) => inventory.available = n,
            Ok(PetStatus::Pending) => inventory.pending = n,
            Ok(PetStatus::Sold) => inventory.sold = n,
            Err(_) => return Err(corrupt("pet status", status)),
        }
    }
    Ok(inventory)
}
