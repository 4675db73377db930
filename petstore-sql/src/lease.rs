//! Leases: a named right to do once-per-cluster work (deliver one webhook endpoint's
//! events, run the bridge to a shared MQTT broker), held by one instance at a time
//! until it lapses or is released.

use std::time::Duration;

use chrono::{DateTime, Utc};
use petstore_core::{Error, Result};
use sqlx::Row;

use crate::SqlStore;
use crate::error::{corrupt, db_error, to_i64, to_u64};

/// Longest name or holder accepted.
const MAX_NAME: usize = 200;
/// Longest lease accepted: a dead holder blocks the work this long at most.
const MAX_TTL: Duration = Duration::from_secs(3600);

/// A granted lease.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lease {
    /// What it is for.
    pub name: String,
    /// Who holds it.
    pub holder: String,
    /// Grows by one with every new tenure (another holder, or a holder whose lease had
    /// lapsed), never within one: a fencing token for the work done under it.
    pub generation: u64,
    /// When it lapses unless renewed (the database's clock).
    pub expires_at: DateTime<Utc>,
}

fn check(field: &str, value: &str) -> Result<()> {
    if value.is_empty() || value.len() > MAX_NAME {
        return Err(Error::invalid_field(
            field,
            format!("must be 1 to {MAX_NAME} bytes"),
        ));
    }
    Ok(())
}

impl SqlStore {
    /// Acquires the lease `name` for `holder`, or renews it if `holder` has it, for
    /// `ttl` from now. `None` while another holder's lease has not lapsed.
    ///
    /// One statement decides (an upsert whose update applies only when the row is the
    /// caller's or has expired), so of two instances racing for a lapsed lease exactly
    /// one wins. Times are the database's, so instances' clocks need not agree.
    pub async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>> {
        check("name", name)?;
        check("holder", holder)?;
        if ttl.is_zero() || ttl > MAX_TTL {
            return Err(Error::invalid_field(
                "ttl",
                format!("must be more than 0 and at most {} s", MAX_TTL.as_secs()),
            ));
        }
        let now = self.shared().dialect.now_ms();
        let sql = format!(
            "INSERT INTO leases (name, holder, expires_at, generation) VALUES ($1, $2, {now} + $3, 1) \
             ON CONFLICT (name) DO UPDATE SET \
               holder = excluded.holder, \
               expires_at = excluded.expires_at, \
               generation = CASE WHEN leases.holder = excluded.holder AND leases.expires_at > {now} \
                            THEN leases.generation ELSE leases.generation + 1 END \
             WHERE leases.holder = excluded.holder OR leases.expires_at <= {now} \
             RETURNING generation, expires_at"
        );
        let row = sqlx::query(&sql)
            .bind(name)
            .bind(holder)
            .bind(to_i64(ttl.as_millis() as u64)?)
            .fetch_optional(&self.shared().pool)
            .await
            .map_err(db_error)?;
        let Some(row) = row else { return Ok(None) };
        let generation = to_u64(
            row.try_get("generation").map_err(db_error)?,
            "lease generation",
        )?;
        let expires_ms: i64 = row.try_get("expires_at").map_err(db_error)?;
        let expires_at = DateTime::from_timestamp_millis(expires_ms)
            .ok_or_else(|| corrupt("lease expiry", expires_ms))?;
        Ok(Some(Lease {
            name: name.to_owned(),
            holder: holder.to_owned(),
            generation,
            expires_at,
        }))
    }

    /// Gives up `holder`'s lease `name` so another instance may take it at once;
    /// `false` if `holder` did not hold it. The row stays (lapsed), so the next
    /// tenure's generation is still higher.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<bool> {
        check("name", name)?;
        check("holder", holder)?;
        let sql = format!(
            "UPDATE leases SET expires_at = {now} - 1 WHERE name = $1 AND holder = $2 AND expires_at > {now}",
            now = self.shared().dialect.now_ms()
        );
        let done = sqlx::query(&sql)
            .bind(name)
            .bind(holder)
            .execute(&self.shared().pool)
            .await
            .map_err(db_error)?;
        Ok(done.rows_affected() > 0)
    }
}
