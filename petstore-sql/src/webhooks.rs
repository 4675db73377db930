//! [`SqlWebhookStore`]: petstore-webhooks' durable state (endpoints, secrets, each
//! endpoint's delivery cursor, its messages and attempt log) in the store's database,
//! so that a restart, or another instance taking over delivery, goes on where delivery
//! stood.
//!
//! Every method is one transaction. The writes of one endpoint that must not race
//! (queueing against the pending bound, the order of messages and attempts) first take
//! the endpoint's next sequence number, `UPDATE webhook_endpoints SET next_seq =
//! next_seq + 1`, which locks its row until the transaction ends: they run one at a
//! time per endpoint, on every instance.

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use petstore_core::{Error, Result, ResumeToken, TypePattern};
use petstore_webhooks::backend::{
    Advance, Attempt, AttemptId, AttemptOutcome, Endpoint, EndpointId, Limits, Message,
    MessageStatus, PreviousSecret, Queue, Url, WebhookSecret, WebhookStore,
};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::SqlStore;
use crate::error::{corrupt, db_error, to_i64, to_u64};

const ENDPOINT_COLUMNS: &str = "id, url, description, events, enabled, disabled_reason, \
     failing_since, secret, previous_secret, previous_expires_at, cursor, last_gap, revision, \
     version, created_at, updated_at";

const MESSAGE_COLUMNS: &str = "endpoint_id, message_id, event_type, log_offset, body, status, \
     attempts, step, created_at, last_attempt_at, next_attempt_at, last_status_code, last_error";

const ATTEMPT_COLUMNS: &str = "id, endpoint_id, message_id, event_type, attempt, url, \
     started_at, status_code, latency_ms, outcome, error, response_body";

/// A [`WebhookStore`] in the database of a [`SqlStore`] (SQLite or PostgreSQL): what
/// `petstore_webhooks::Webhooks::with_store` takes so that endpoints, secrets, cursors,
/// pending deliveries and the attempt log survive restarts and are shared by every
/// instance on one PostgreSQL. Cheap to clone.
#[derive(Clone)]
pub struct SqlWebhookStore {
    store: SqlStore,
}

impl fmt::Debug for SqlWebhookStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlWebhookStore")
            .field("store", &self.store)
            .finish()
    }
}

impl SqlWebhookStore {
    /// The webhook state kept in `store`'s database (its tables are created by the
    /// store's migrations).
    pub fn new(store: &SqlStore) -> Self {
        Self {
            store: store.clone(),
        }
    }
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn opt_micros(t: Option<DateTime<Utc>>) -> Option<i64> {
    t.map(micros)
}

fn from_micros(v: i64, what: &str) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(v).ok_or_else(|| corrupt(what, v))
}

fn opt_from_micros(v: Option<i64>, what: &str) -> Result<Option<DateTime<Utc>>> {
    v.map(|v| from_micros(v, what)).transpose()
}

fn get<'r, T>(row: &'r AnyRow, column: &str) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get(column).map_err(db_error)
}

fn parse<T: std::str::FromStr>(text: &str, what: &str) -> Result<T> {
    text.parse().map_err(|_| corrupt(what, text))
}

fn small<T: TryFrom<i64>>(v: i64, what: &str) -> Result<T> {
    T::try_from(v).map_err(|_| corrupt(what, v))
}

fn endpoint_from_row(row: &AnyRow) -> Result<Endpoint> {
    let events: String = get(row, "events")?;
    let events: Vec<TypePattern> =
        serde_json::from_str(&events).map_err(|e| corrupt("webhook event patterns", e))?;
    let previous_secret = match (
        get::<Option<String>>(row, "previous_secret")?,
        get::<Option<i64>>(row, "previous_expires_at")?,
    ) {
        (Some(secret), Some(expires)) => Some(PreviousSecret {
            secret: parse::<WebhookSecret>(&secret, "webhook secret")?,
            expires_at: from_micros(expires, "secret expiry")?,
        }),
        _ => None,
    };
    Ok(Endpoint {
        id: parse(&get::<String>(row, "id")?, "webhook endpoint id")?,
        url: parse::<Url>(&get::<String>(row, "url")?, "webhook URL")?,
        description: get(row, "description")?,
        events,
        enabled: get::<i64>(row, "enabled")? != 0,
        disabled_reason: get(row, "disabled_reason")?,
        failing_since: opt_from_micros(get(row, "failing_since")?, "failing_since")?,
        secret: parse(&get::<String>(row, "secret")?, "webhook secret")?,
        previous_secret,
        cursor: parse::<ResumeToken>(&get::<String>(row, "cursor")?, "webhook cursor")?,
        last_gap: get(row, "last_gap")?,
        revision: to_u64(get(row, "revision")?, "revision")?,
        version: to_u64(get(row, "version")?, "version")?,
        created_at: from_micros(get(row, "created_at")?, "created_at")?,
        updated_at: from_micros(get(row, "updated_at")?, "updated_at")?,
    })
}

fn message_from_row(row: &AnyRow) -> Result<Message> {
    let offset: Option<String> = get(row, "log_offset")?;
    Ok(Message {
        endpoint: parse(&get::<String>(row, "endpoint_id")?, "webhook endpoint id")?,
        id: get(row, "message_id")?,
        event_type: get(row, "event_type")?,
        offset: offset
            .map(|o| parse::<ResumeToken>(&o, "message offset"))
            .transpose()?,
        body: Bytes::from(get::<Vec<u8>>(row, "body")?),
        status: parse(&get::<String>(row, "status")?, "message status")?,
        attempts: small(get(row, "attempts")?, "attempts")?,
        step: small(get(row, "step")?, "step")?,
        created_at: from_micros(get(row, "created_at")?, "created_at")?,
        last_attempt_at: opt_from_micros(get(row, "last_attempt_at")?, "last_attempt_at")?,
        next_attempt_at: opt_from_micros(get(row, "next_attempt_at")?, "next_attempt_at")?,
        last_status_code: get::<Option<i64>>(row, "last_status_code")?
            .map(|c| small(c, "status code"))
            .transpose()?,
        last_error: get(row, "last_error")?,
    })
}

fn attempt_from_row(row: &AnyRow) -> Result<Attempt> {
    Ok(Attempt {
        id: parse::<AttemptId>(&get::<String>(row, "id")?, "attempt id")?,
        endpoint: parse(&get::<String>(row, "endpoint_id")?, "webhook endpoint id")?,
        message_id: get(row, "message_id")?,
        event_type: get(row, "event_type")?,
        attempt: small(get(row, "attempt")?, "attempt")?,
        url: get(row, "url")?,
        timestamp: from_micros(get(row, "started_at")?, "started_at")?,
        status_code: get::<Option<i64>>(row, "status_code")?
            .map(|c| small(c, "status code"))
            .transpose()?,
        latency_ms: to_u64(get(row, "latency_ms")?, "latency")?,
        outcome: parse::<AttemptOutcome>(&get::<String>(row, "outcome")?, "attempt outcome")?,
        error: get(row, "error")?,
        response_body: get(row, "response_body")?,
    })
}

/// Takes the endpoint's next sequence number, locking its row until the transaction
/// ends: `(revision, seq)`, or `None` when the endpoint does not exist.
async fn lock_endpoint(conn: &mut AnyConnection, id: &EndpointId) -> Result<Option<(u64, i64)>> {
    let row = sqlx::query(
        "UPDATE webhook_endpoints SET next_seq = next_seq + 1 WHERE id = $1 \
         RETURNING revision, next_seq",
    )
    .bind(id.as_str())
    .fetch_optional(conn)
    .await
    .map_err(db_error)?;
    row.map(|row| {
        Ok((
            to_u64(get(&row, "revision")?, "revision")?,
            get::<i64>(&row, "next_seq")?,
        ))
    })
    .transpose()
}

async fn read_message(
    conn: &mut AnyConnection,
    endpoint: &EndpointId,
    id: &str,
) -> Result<Option<Message>> {
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM webhook_messages WHERE endpoint_id = $1 AND message_id = $2"
    );
    let row = sqlx::query(&sql)
        .bind(endpoint.as_str())
        .bind(id)
        .fetch_optional(conn)
        .await
        .map_err(db_error)?;
    row.as_ref().map(message_from_row).transpose()
}

/// The rules of [`WebhookStore::queue`], inside a transaction that locked the endpoint
/// and took `seq`.
async fn queue_locked(
    conn: &mut AnyConnection,
    seq: i64,
    message: &Message,
    limits: &Limits,
) -> Result<Queue> {
    let existing = read_message(&mut *conn, &message.endpoint, &message.id).await?;
    if existing
        .as_ref()
        .is_some_and(|m| m.status == MessageStatus::Pending)
    {
        return Ok(Queue::Pending);
    }
    let pending: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM webhook_messages WHERE endpoint_id = $1 AND status = 'pending'",
    )
    .bind(message.endpoint.as_str())
    .fetch_one(&mut *conn)
    .await
    .map_err(db_error)?;
    if to_u64(pending, "pending count")? >= limits.pending as u64 {
        return Ok(Queue::Full);
    }
    if let Some(mut stored) = existing {
        // Reopened: from the start of the retry schedule, in its old place.
        sqlx::query(
            "UPDATE webhook_messages SET status = 'pending', step = 0, next_attempt_at = $3 \
             WHERE endpoint_id = $1 AND message_id = $2",
        )
        .bind(message.endpoint.as_str())
        .bind(message.id.as_str())
        .bind(opt_micros(message.next_attempt_at))
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
        stored.status = MessageStatus::Pending;
        stored.step = 0;
        stored.next_attempt_at = message.next_attempt_at;
        return Ok(Queue::Queued(Box::new(stored)));
    }
    let sql = format!(
        "INSERT INTO webhook_messages ({MESSAGE_COLUMNS}, seq) \
         VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $8, $9, $10, $11, $12, $13)"
    );
    sqlx::query(&sql)
        .bind(message.endpoint.as_str())
        .bind(message.id.as_str())
        .bind(message.event_type.as_str())
        .bind(message.offset.map(|o| o.to_string()))
        .bind(message.body.to_vec())
        .bind(i64::from(message.attempts))
        .bind(i64::from(message.step))
        .bind(micros(message.created_at))
        .bind(opt_micros(message.last_attempt_at))
        .bind(opt_micros(message.next_attempt_at))
        .bind(message.last_status_code.map(i64::from))
        .bind(message.last_error.clone())
        .bind(seq)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    // Beyond the bound, the oldest finished messages go; pending ones stay.
    let total: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM webhook_messages WHERE endpoint_id = $1")
            .bind(message.endpoint.as_str())
            .fetch_one(&mut *conn)
            .await
            .map_err(db_error)?;
    let excess = to_u64(total, "message count")?.saturating_sub(limits.messages as u64);
    if excess > 0 {
        sqlx::query(
            "DELETE FROM webhook_messages WHERE endpoint_id = $1 AND seq IN ( \
               SELECT seq FROM webhook_messages WHERE endpoint_id = $1 AND status <> 'pending' \
               ORDER BY seq LIMIT $2)",
        )
        .bind(message.endpoint.as_str())
        .bind(to_i64(excess)?)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    }
    let mut queued = message.clone();
    queued.status = MessageStatus::Pending;
    Ok(Queue::Queued(Box::new(queued)))
}

/// Binds the settings of `endpoint` as `$2..=$15` (after the id).
fn endpoint_query<'q>(
    sql: &'q str,
    endpoint: &Endpoint,
) -> Result<sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>> {
    let events = serde_json::to_string(&endpoint.events).map_err(Error::internal)?;
    Ok(sqlx::query(sql)
        .bind(endpoint.id.as_str().to_owned())
        .bind(endpoint.url.as_str().to_owned())
        .bind(endpoint.description.clone())
        .bind(events)
        .bind(i64::from(endpoint.enabled))
        .bind(endpoint.disabled_reason.clone())
        .bind(opt_micros(endpoint.failing_since))
        .bind(endpoint.secret.expose())
        .bind(endpoint.previous_secret.as_ref().map(|p| p.secret.expose()))
        .bind(
            endpoint
                .previous_secret
                .as_ref()
                .map(|p| micros(p.expires_at)),
        )
        .bind(endpoint.cursor.to_string())
        .bind(endpoint.last_gap.clone())
        .bind(to_i64(endpoint.revision)?)
        .bind(to_i64(endpoint.version)?)
        .bind(micros(endpoint.created_at))
        .bind(micros(endpoint.updated_at)))
}

#[async_trait]
impl WebhookStore for SqlWebhookStore {
    async fn create_endpoint(&self, endpoint: &Endpoint, limit: usize) -> Result<bool> {
        let shared = self.store.shared();
        let mut w = shared.begin_write().await?;
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM webhook_endpoints")
            .fetch_one(&mut *w.tx)
            .await
            .map_err(db_error)?;
        if to_u64(count, "endpoint count")? >= limit as u64 {
            return Ok(false);
        }
        let sql = format!(
            "INSERT INTO webhook_endpoints ({ENDPOINT_COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
             ON CONFLICT (id) DO NOTHING"
        );
        let inserted = endpoint_query(&sql, endpoint)?
            .execute(&mut *w.tx)
            .await
            .map_err(db_error)?
            .rows_affected();
        w.tx.commit().await.map_err(db_error)?;
        Ok(inserted == 1)
    }

    async fn endpoint(&self, id: &EndpointId) -> Result<Option<Endpoint>> {
        let sql = format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id.as_str())
            .fetch_optional(&mut *self.store.shared().conn().await?)
            .await
            .map_err(db_error)?;
        row.as_ref().map(endpoint_from_row).transpose()
    }

    async fn endpoints(&self) -> Result<Vec<Endpoint>> {
        let sql = format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints ORDER BY id");
        let rows = sqlx::query(&sql)
            .fetch_all(&mut *self.store.shared().conn().await?)
            .await
            .map_err(db_error)?;
        rows.iter().map(endpoint_from_row).collect()
    }

    async fn update_endpoint(&self, endpoint: &Endpoint) -> Result<bool> {
        // Within a revision the cursor and the gap note belong to `advance`: the
        // stored ones stay (the right-hand sides see the row before the update).
        let sql = "UPDATE webhook_endpoints SET url = $2, description = $3, events = $4, \
             enabled = $5, disabled_reason = $6, failing_since = $7, secret = $8, \
             previous_secret = $9, previous_expires_at = $10, \
             cursor = CASE WHEN revision = $13 THEN cursor ELSE $11 END, \
             last_gap = CASE WHEN revision = $13 THEN last_gap ELSE $12 END, \
             revision = $13, version = version + 1, created_at = $15, updated_at = $16 \
             WHERE id = $1 AND version = $14";
        let shared = self.store.shared();
        let mut w = shared.begin_write().await?;
        let updated = endpoint_query(sql, endpoint)?
            .execute(&mut *w.tx)
            .await
            .map_err(db_error)?
            .rows_affected();
        w.tx.commit().await.map_err(db_error)?;
        Ok(updated == 1)
    }

    async fn delete_endpoint(&self, id: &EndpointId) -> Result<bool> {
        let shared = self.store.shared();
        let mut w = shared.begin_write().await?;
        let deleted = sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1")
            .bind(id.as_str())
            .execute(&mut *w.tx)
            .await
            .map_err(db_error)?
            .rows_affected();
        for table in ["webhook_messages", "webhook_attempts"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE endpoint_id = $1"))
                .bind(id.as_str())
                .execute(&mut *w.tx)
                .await
                .map_err(db_error)?;
        }
        w.tx.commit().await.map_err(db_error)?;
        Ok(deleted == 1)
    }

    async fn advance(
        &self,
        endpoint: &EndpointId,
        revision: u64,
        cursor: ResumeToken,
        message: Option<&Message>,
        limits: &Limits,
    ) -> Result<Advance> {
        let shared = self.store.shared();
        let mut w = shared.begin_write().await?;
        // Returning before the commit rolls back (the dropped transaction).
        let Some((stored_revision, seq)) = lock_endpoint(&mut w.tx, endpoint).await? else {
            return Ok(Advance::Gone);
        };
        if stored_revision != revision {
            return Ok(Advance::Stale);
        }
        let advance = match message {
            None => Advance::Moved,
            Some(message) => match queue_locked(&mut w.tx, seq, message, limits).await? {
                Queue::Pending => Advance::Moved,
                Queue::Queued(_) => Advance::Queued,
                Queue::Full => return Ok(Advance::Full),
            },
        };
        sqlx::query("UPDATE webhook_endpoints SET cursor = $2 WHERE id = $1")
            .bind(endpoint.as_str())
            .bind(cursor.to_string())
            .execute(&mut *w.tx)
            .await
            .map_err(db_error)?;
        w.tx.commit().await.map_err(db_error)?;
        Ok(advance)
    }

    async fn queue(&self, message: &Message, limits: &Limits) -> Result<Queue> {
        let shared = self.store.shared();
        let mut w = shared.begin_write().await?;
        let Some((_, seq)) = lock_endpoint(&mut w.tx, &message.endpoint).await? else {
            return Err(Error::not_found("webhook endpoint", &message.endpoint));
        };
        let queued = queue_locked(&mut w.tx, seq, message, limits).await?;
        if matches!(queued, Queue::Queued(_)) {
            w.tx.commit().await.map_err(db_error)?;
        }
        Ok(queued)
    }

    async fn message(&self, endpoint: &EndpointId, id: &str) -> Result<Option<Message>> {
        read_message(&mut *self.store.shared().conn().await?, endpoint, id).await
    }

    async fn messages(&self, endpoint: &EndpointId, limit: usize) -> Result<Vec<Message>> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM webhook_messages WHERE endpoint_id = $1 \
             ORDER BY seq DESC LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(endpoint.as_str())
            .bind(to_i64(limit as u64)?)
            .fetch_all(&mut *self.store.shared().conn().await?)
            .await
            .map_err(db_error)?;
        rows.iter().map(message_from_row).collect()
    }

    async fn pending(&self) -> Result<Vec<(EndpointId, String)>> {
        let rows = sqlx::query(
            "SELECT endpoint_id, message_id FROM webhook_messages WHERE status = 'pending' \
             ORDER BY endpoint_id, seq",
        )
        .fetch_all(&mut *self.store.shared().conn().await?)
        .await
        .map_err(db_error)?;
        rows.iter()
            .map(|row| {
                Ok((
                    parse(&get::<String>(row, "endpoint_id")?, "webhook endpoint id")?,
                    get(row, "message_id")?,
                ))
            })
            .collect()
    }

    async fn settle(
        &self,
        message: &Message,
        attempt: Option<&Attempt>,
        limits: &Limits,
    ) -> Result<bool> {
        let shared = self.store.shared();
        let mut w = shared.begin_write().await?;
        // The endpoint row first, as every write of an endpoint takes it.
        let Some((_, seq)) = lock_endpoint(&mut w.tx, &message.endpoint).await? else {
            return Ok(false);
        };
        let finished = message.status != MessageStatus::Pending;
        let updated = sqlx::query(
            "UPDATE webhook_messages SET status = $3, attempts = $4, step = $5, \
             last_attempt_at = $6, next_attempt_at = $7, last_status_code = $8, last_error = $9 \
             WHERE endpoint_id = $1 AND message_id = $2 AND status = 'pending'",
        )
        .bind(message.endpoint.as_str())
        .bind(message.id.as_str())
        .bind(message.status.as_str())
        .bind(i64::from(message.attempts))
        .bind(i64::from(message.step))
        .bind(opt_micros(message.last_attempt_at))
        // A finished message has no next attempt.
        .bind(if finished {
            None
        } else {
            opt_micros(message.next_attempt_at)
        })
        .bind(message.last_status_code.map(i64::from))
        .bind(message.last_error.clone())
        .execute(&mut *w.tx)
        .await
        .map_err(db_error)?
        .rows_affected();
        if updated == 0 {
            return Ok(false);
        }
        if let Some(a) = attempt {
            let sql = format!(
                "INSERT INTO webhook_attempts ({ATTEMPT_COLUMNS}, seq) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
            );
            sqlx::query(&sql)
                .bind(a.id.as_str())
                .bind(message.endpoint.as_str())
                .bind(a.message_id.as_str())
                .bind(a.event_type.as_str())
                .bind(i64::from(a.attempt))
                .bind(a.url.as_str())
                .bind(micros(a.timestamp))
                .bind(a.status_code.map(i64::from))
                .bind(to_i64(a.latency_ms)?)
                .bind(a.outcome.as_str())
                .bind(a.error.clone())
                .bind(a.response_body.clone())
                .bind(seq)
                .execute(&mut *w.tx)
                .await
                .map_err(db_error)?;
            // Keep the newest `limits.attempts`: delete what is older than the
            // `limits.attempts`-th newest (nothing while there are fewer).
            sqlx::query(
                "DELETE FROM webhook_attempts WHERE endpoint_id = $1 AND seq < ( \
                   SELECT seq FROM webhook_attempts WHERE endpoint_id = $1 \
                   ORDER BY seq DESC LIMIT 1 OFFSET $2)",
            )
            .bind(message.endpoint.as_str())
            .bind(to_i64(limits.attempts.saturating_sub(1) as u64)?)
            .execute(&mut *w.tx)
            .await
            .map_err(db_error)?;
        }
        w.tx.commit().await.map_err(db_error)?;
        Ok(true)
    }

    async fn attempts(
        &self,
        endpoint: &EndpointId,
        message: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Attempt>> {
        let filter = if message.is_some() {
            "AND message_id = $3"
        } else {
            ""
        };
        let sql = format!(
            "SELECT {ATTEMPT_COLUMNS} FROM webhook_attempts WHERE endpoint_id = $1 {filter} \
             ORDER BY seq DESC LIMIT $2"
        );
        let mut query = sqlx::query(&sql)
            .bind(endpoint.as_str())
            .bind(to_i64(limit as u64)?);
        if let Some(m) = message {
            query = query.bind(m);
        }
        let rows = query
            .fetch_all(&mut *self.store.shared().conn().await?)
            .await
            .map_err(db_error)?;
        rows.iter().map(attempt_from_row).collect()
    }
}
