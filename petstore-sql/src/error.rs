//! sqlx errors in the core's terms.

use std::time::Duration;

use petstore_core::{Error, ErrorKind};

/// Maps a database error: a lost race between transactions is a stale write (the
/// service re-reads and retries), an unreachable or overloaded database is
/// `Unavailable`, anything else `Internal` (its text stays in the server log).
pub(crate) fn db_error(e: sqlx::Error) -> Error {
    match &e {
        sqlx::Error::Database(db) => match db.code().as_deref() {
            // PostgreSQL: serialization_failure, deadlock_detected.
            // (No source attached: the source is what marks an error as a stale write.)
            Some("40001" | "40P01") => {
                tracing::debug!(error = %e, "transaction lost a race; the service retries");
                Error::stale_write("a row")
            }
            // SQLite: SQLITE_BUSY and SQLITE_LOCKED (and their extended codes) after the
            // busy timeout; PostgreSQL: too_many_connections, cannot_connect_now.
            Some("5" | "6" | "261" | "262" | "517" | "53300" | "57P03") => unavailable(e),
            _ => Error::internal(e),
        },
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => unavailable(e),
        _ => Error::internal(e),
    }
}

fn unavailable(e: sqlx::Error) -> Error {
    Error::new(ErrorKind::Unavailable, "the database is unavailable")
        .with_retry_after(Duration::from_secs(1))
        .with_source(e)
}

/// A stored value that does not decode: the database holds something this code did
/// not write.
pub(crate) fn corrupt(what: &str, detail: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::Internal,
        format!("stored {what} does not decode: {detail}"),
    )
}

/// Converts a non-negative count or offset for a BIGINT column.
pub(crate) fn to_i64(v: u64) -> Result<i64, Error> {
    i64::try_from(v).map_err(|_| Error::new(ErrorKind::Internal, format!("{v} is out of range")))
}

/// Converts a BIGINT column back; negative values were never written.
pub(crate) fn to_u64(v: i64, what: &str) -> Result<u64, Error> {
    u64::try_from(v).map_err(|_| corrupt(what, format_args!("negative value {v}")))
}
