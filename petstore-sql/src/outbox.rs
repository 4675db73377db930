//! The outbox: the `events` table and the `log_head` row that numbers it.

use std::fmt::Write as _;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use petstore_core::backend::{EventParts, NewEvent};
use petstore_core::{Event, EventData, EventId, EventType, Result, ResumeToken, TraceParent};
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::{Any, AnyConnection, Row};

use crate::dialect::Dialect;
use crate::error::{corrupt, db_error, to_i64, to_u64};

/// Rows per statement when a reader, a replay or the follower walks the log.
pub(crate) const PAGE: u64 = 256;

/// Physical deletion runs when the head crosses a multiple of this (readers enforce
/// the retention window exactly; the table may hold up to this many rows more).
const DELETE_EVERY: u64 = 64;

const COLUMNS: &str = "log_offset, id, type, subject, source, time, data, traceparent";

/// Creates the log head with a random epoch the first time; returns `(epoch, head)`.
/// Concurrent first starts agree: only one insert wins.
pub(crate) async fn init(conn: &mut AnyConnection) -> Result<(u64, u64)> {
    let candidate = u64::from_le_bytes(
        uuid::Uuid::new_v4().as_bytes()[..8]
            .try_into()
            .unwrap_or_default(),
    );
    sqlx::query(
        "INSERT INTO log_head (id, epoch, head) VALUES (1, $1, 0) ON CONFLICT (id) DO NOTHING",
    )
    // The epoch is an opaque 64-bit value; BIGINT holds its bits.
    .bind(candidate as i64)
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    let row = sqlx::query("SELECT epoch, head FROM log_head WHERE id = 1")
        .fetch_one(&mut *conn)
        .await
        .map_err(db_error)?;
    let epoch: i64 = row.try_get("epoch").map_err(db_error)?;
    let head: i64 = row.try_get("head").map_err(db_error)?;
    Ok((epoch as u64, to_u64(head, "log head")?))
}

/// The offset of the newest event.
pub(crate) async fn head(conn: &mut AnyConnection) -> Result<u64> {
    let head: i64 = sqlx::query_scalar("SELECT head FROM log_head WHERE id = 1")
        .fetch_one(conn)
        .await
        .map_err(db_error)?;
    to_u64(head, "log head")
}

/// The offset of the newest event and of the oldest row still in the table (`None`
/// when it is empty), read in one statement.
pub(crate) async fn head_and_oldest(conn: &mut AnyConnection) -> Result<(u64, Option<u64>)> {
    let row = sqlx::query(
        "SELECT head, (SELECT MIN(log_offset) FROM events) AS oldest FROM log_head WHERE id = 1",
    )
    .fetch_one(conn)
    .await
    .map_err(db_error)?;
    let head = to_u64(row.try_get("head").map_err(db_error)?, "log head")?;
    let oldest: Option<i64> = row.try_get("oldest").map_err(db_error)?;
    Ok((head, oldest.map(|o| to_u64(o, "event offset")).transpose()?))
}

/// Numbers `events` and inserts them, inside the caller's transaction; returns them as
/// appended.
///
/// Updating the single head row takes its row lock until the transaction ends, so
/// committers that append are serialised here: the next one reads the head this one
/// committed. Offsets therefore have no gap (a rolled-back transaction gives its
/// numbers back with its update) and grow in commit order. On PostgreSQL the update
/// and the insert are one statement (a data-modifying `WITH`), so the lock is held for
/// that statement and the commit only; SQLite has no such statement and serialises
/// its writers anyway.
pub(crate) async fn append(
    conn: &mut AnyConnection,
    dialect: Dialect,
    events: Vec<NewEvent>,
    source: &str,
    time: DateTime<Utc>,
    epoch: u64,
    retention: u64,
) -> Result<Vec<Event>> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let n = events.len() as u64;
    let ids: Vec<EventId> = events.iter().map(|_| EventId::generate()).collect();
    // Stored with every digit chrono keeps, so the envelope read back is the same text.
    let time_text = time.to_rfc3339_opts(SecondsFormat::AutoSi, true);
    let new_head = match dialect {
        Dialect::Postgres => {
            // $1 is the count; each event's eight values follow, the first of them its
            // place in the batch (1..=n), from which SQL numbers it.
            let mut sql = String::from(
                "WITH head AS (UPDATE log_head SET head = head + $1 WHERE id = 1 RETURNING head) \
                 INSERT INTO events (log_offset, id, type, subject, source, time, data, traceparent) \
                 SELECT head.head - $1 + v.k, v.id, v.type, v.subject, v.source, v.time, v.data, v.traceparent \
                 FROM head, (VALUES ",
            );
            push_rows(&mut sql, events.len(), 2, "::BIGINT");
            sql.push_str(
                ") AS v (k, id, type, subject, source, time, data, traceparent) RETURNING log_offset",
            );
            let mut query = sqlx::query(&sql).bind(to_i64(n)?);
            for (k, (event, id)) in (1..).zip(events.iter().zip(&ids)) {
                query = bind_event(query.bind(k), event, id, source, &time_text);
            }
            let rows = query.fetch_all(&mut *conn).await.map_err(db_error)?;
            let mut last = None;
            for row in rows {
                let offset: i64 = row.try_get("log_offset").map_err(db_error)?;
                last = last.max(Some(offset));
            }
            to_u64(
                last.ok_or_else(|| corrupt("appended events", n))?,
                "log head",
            )?
        }
        Dialect::Sqlite => {
            let new_head: i64 = sqlx::query_scalar(
                "UPDATE log_head SET head = head + $1 WHERE id = 1 RETURNING head",
            )
            .bind(to_i64(n)?)
            .fetch_one(&mut *conn)
            .await
            .map_err(db_error)?;
            let new_head = to_u64(new_head, "log head")?;
            let mut sql = format!("INSERT INTO events ({COLUMNS}) VALUES ");
            push_rows(&mut sql, events.len(), 1, "");
            let mut query = sqlx::query(&sql);
            for (offset, (event, id)) in (new_head + 1 - n..).zip(events.iter().zip(&ids)) {
                query = bind_event(query.bind(to_i64(offset)?), event, id, source, &time_text);
            }
            query.execute(&mut *conn).await.map_err(db_error)?;
            new_head
        }
    };
    let first = new_head + 1 - n;

    if (first - 1) / DELETE_EVERY != new_head / DELETE_EVERY && new_head > retention {
        sqlx::query("DELETE FROM events WHERE log_offset <= $1")
            .bind(to_i64(new_head - retention)?)
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
    }
    let source: Arc<str> = source.into();
    Ok((first..)
        .zip(events.into_iter().zip(ids))
        .map(|(offset, (new, id))| {
            EventParts {
                id,
                source: Arc::clone(&source),
                time,
                offset: ResumeToken::new(epoch, offset),
                data: new.data,
                traceparent: new.traceparent,
            }
            .build()
        })
        .collect())
}

/// Appends `rows` groups of eight placeholders, numbered from `$first`, to `sql`; the
/// first placeholder of each group gets `cast`.
fn push_rows(sql: &mut String, rows: usize, first: usize, cast: &str) {
    for i in 0..rows {
        let p = first + i * 8;
        let sep = if i == 0 { "" } else { ", " };
        let _ = write!(
            sql,
            "{sep}(${}{cast}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
            p,
            p + 1,
            p + 2,
            p + 3,
            p + 4,
            p + 5,
            p + 6,
            p + 7
        );
    }
}

/// Binds an event's columns after its offset (or its place in the batch).
fn bind_event<'q>(
    query: sqlx::query::Query<'q, Any, AnyArguments<'q>>,
    event: &NewEvent,
    id: &EventId,
    source: &str,
    time: &str,
) -> sqlx::query::Query<'q, Any, AnyArguments<'q>> {
    query
        .bind(id.to_string())
        .bind(event.data.event_type().as_str())
        .bind(event.data.subject().to_owned())
        .bind(source.to_owned())
        .bind(time.to_owned())
        .bind(event.data.to_json())
        .bind(event.traceparent.as_ref().map(|t| t.as_str().to_owned()))
}

/// Up to `limit` events with offsets in `(after, until]`, in offset order. Offsets are
/// committed in order, so what one statement sees has no hole; the caller checks that
/// the first row is `after + 1` (older rows may have been deleted by retention).
pub(crate) async fn fetch(
    conn: &mut AnyConnection,
    epoch: u64,
    after: u64,
    until: u64,
    limit: u64,
) -> Result<Vec<Arc<Event>>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM events WHERE log_offset > $1 AND log_offset <= $2 ORDER BY log_offset LIMIT $3"
    );
    let rows = sqlx::query(&sql)
        .bind(to_i64(after)?)
        .bind(to_i64(until.min(i64::MAX as u64))?)
        .bind(to_i64(limit)?)
        .fetch_all(conn)
        .await
        .map_err(db_error)?;
    rows.iter().map(|row| event_from_row(row, epoch)).collect()
}

/// Rebuilds the envelope exactly as it was committed (same id, time, source, data and
/// trace context), so every instance delivers identical events.
fn event_from_row(row: &AnyRow, epoch: u64) -> Result<Arc<Event>> {
    let get = |col: &str| row.try_get::<String, _>(col).map_err(db_error);
    let offset = to_u64(row.try_get("log_offset").map_err(db_error)?, "event offset")?;
    let event_type: EventType = get("type")?
        .parse()
        .map_err(|_| corrupt("event type", offset))?;
    let time = DateTime::parse_from_rfc3339(&get("time")?)
        .map_err(|e| corrupt("event time", e))?
        .with_timezone(&Utc);
    let data =
        EventData::from_json(event_type, &get("data")?).map_err(|e| corrupt("event data", e))?;
    let id: EventId = get("id")?
        .parse()
        .map_err(|_| corrupt("event id", offset))?;
    let traceparent: Option<String> = row.try_get("traceparent").map_err(db_error)?;
    let traceparent = traceparent
        .map(|t| t.parse::<TraceParent>())
        .transpose()
        .map_err(|_| corrupt("event traceparent", offset))?;
    Ok(Arc::new(
        EventParts {
            id,
            source: get("source")?.into(),
            time,
            offset: ResumeToken::new(epoch, offset),
            data,
            traceparent,
        }
        .build(),
    ))
}
