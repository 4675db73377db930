//! Leases (`Store::acquire_lease` / `release_lease`): a named right to do
//! once-per-cluster work (deliver webhooks, run the bridge to a shared MQTT broker),
//! held by one instance at a time until it lapses or is released.

use std::time::Duration;

use petstore_core::{Error, Result, ResumeToken};

use crate::error::{corrupt, db_error, to_i64};
use crate::store::Shared;

/// Longest name or holder accepted.
const MAX_NAME: usize = 200;
/// Longest lease accepted: a dead holder blocks the work this long at most.
const MAX_TTL: Duration = Duration::from_secs(3600);

fn check(field: &str, value: &str) -> Result<()> {
    if value.is_empty() || value.len() > MAX_NAME {
        return Err(Error::invalid_field(
            field,
            format!("must be 1 to {MAX_NAME} bytes"),
        ));
    }
    Ok(())
}

/// Acquires the lease `name` for `holder`, or renews it if `holder` has it, for `ttl`
/// from now: `true` when granted, `false` while another holder's lease has not
/// lapsed.
///
/// One statement decides (an upsert whose update applies only when the row is the
/// caller's or has expired), so of two instances racing for a lapsed lease exactly one
/// wins. Times are the database's, so instances' clocks need not agree. The row's
/// `generation` grows with every new tenure (another holder, or one whose lease had
/// lapsed), never within one: for operators, how often the work changed hands.
pub(crate) async fn acquire(
    shared: &Shared,
    name: &str,
    holder: &str,
    ttl: Duration,
) -> Result<bool> {
    check("name", name)?;
    check("holder", holder)?;
    if ttl.is_zero() || ttl > MAX_TTL {
        return Err(Error::invalid_field(
            "ttl",
            format!("must be more than 0 and at most {} s", MAX_TTL.as_secs()),
        ));
    }
    let now = shared.dialect.now_ms();
    let sql = format!(
        "INSERT INTO leases (name, holder, expires_at, generation) VALUES ($1, $2, {now} + $3, 1) \
         ON CONFLICT (name) DO UPDATE SET \
           holder = excluded.holder, \
           expires_at = excluded.expires_at, \
           generation = CASE WHEN leases.holder = excluded.holder AND leases.expires_at > {now} \
                        THEN leases.generation ELSE leases.generation + 1 END \
         WHERE leases.holder = excluded.holder OR leases.expires_at <= {now} \
         RETURNING generation"
    );
    let row = sqlx::query(&sql)
        .bind(name)
        .bind(holder)
        .bind(to_i64(ttl.as_millis() as u64)?)
        .fetch_optional(&shared.pool)
        .await
        .map_err(db_error)?;
    Ok(row.is_some())
}

/// Gives up `holder`'s lease `name` so another instance may take it at once (nothing
/// happens if `holder` does not hold it). The row stays, lapsed, so the next tenure's
/// generation is still higher.
pub(crate) async fn release(shared: &Shared, name: &str, holder: &str) -> Result<()> {
    check("name", name)?;
    check("holder", holder)?;
    let sql = format!(
        "UPDATE leases SET expires_at = {now} - 1 WHERE name = $1 AND holder = $2 AND expires_at > {now}",
        now = shared.dialect.now_ms()
    );
    sqlx::query(&sql)
        .bind(name)
        .bind(holder)
        .execute(&shared.pool)
        .await
        .map_err(db_error)?;
    Ok(())
}

/// The saved position `name`, if any.
pub(crate) async fn cursor(shared: &Shared, name: &str) -> Result<Option<ResumeToken>> {
    check("name", name)?;
    let position: Option<String> =
        sqlx::query_scalar("SELECT position FROM cursors WHERE name = $1")
            .bind(name)
            .fetch_optional(&shared.pool)
            .await
            .map_err(db_error)?;
    position
        .map(|p| p.parse().map_err(|_| corrupt("cursor", p)))
        .transpose()
}

/// Saves `position` as `name`, unless the saved one is ahead of it in the same
/// epoch (a late save of a deposed holder never moves a cursor back).
pub(crate) async fn save_cursor(shared: &Shared, name: &str, position: ResumeToken) -> Result<()> {
    check("name", name)?;
    if let Some(saved) = cursor(shared, name).await?
        && saved.epoch == position.epoch
        && saved.offset > position.offset
    {
        return Ok(());
    }
    let sql = format!(
        "INSERT INTO cursors (name, position, updated_at) VALUES ($1, $2, {now}) \
         ON CONFLICT (name) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at",
        now = shared.dialect.now_ms()
    );
    sqlx::query(&sql)
        .bind(name)
        .bind(position.to_string())
        .execute(&shared.pool)
        .await
        .map_err(db_error)?;
    Ok(())
}
