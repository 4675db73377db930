//! What differs between SQLite and PostgreSQL: everything else is one SQL text (both
//! accept `$1` placeholders, `ON CONFLICT` and `RETURNING`).

use petstore_core::{Error, Result};

/// The database behind a [`crate::SqlStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// One process, one file.
    Sqlite,
    /// Any number of instances on one server.
    Postgres,
}

impl Dialect {
    /// The `backend` label of the store's metrics.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
        }
    }

    /// The dialect a connection URL names.
    pub(crate) fn from_url(url: &str) -> Result<Self> {
        let scheme = url.split_once(':').map_or("", |(s, _)| s);
        match scheme {
            "sqlite" => Ok(Dialect::Sqlite),
            "postgres" | "postgresql" => Ok(Dialect::Postgres),
            _ => Err(Error::invalid_field(
                "database_url",
                "must start with `sqlite://` or `postgres://`",
            )),
        }
    }

    /// Opens a writing transaction. SQLite takes the write lock at `BEGIN IMMEDIATE`
    /// (a deferred transaction that upgrades later can fail with SQLITE_BUSY instead of
    /// waiting). PostgreSQL stays at READ COMMITTED: conditional writes re-check their
    /// `WHERE version = ...` against the newest committed row after waiting for its lock.
    pub(crate) fn begin_write(self) -> &'static str {
        match self {
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            Dialect::Postgres => "BEGIN",
        }
    }

    /// Opens a reading transaction that sees one snapshot for all its statements, so
    /// that a listing and the log position read with it agree.
    pub(crate) fn begin_read(self) -> &'static str {
        match self {
            // WAL mode: a deferred transaction reads one snapshot from its first read on.
            Dialect::Sqlite => "BEGIN",
            Dialect::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
        }
    }

    /// The database clock in milliseconds since the Unix epoch: leases compare times
    /// of one clock, whichever instance writes them.
    pub(crate) fn now_ms(self) -> &'static str {
        match self {
            Dialect::Sqlite => "CAST(unixepoch('subsec') * 1000 AS INTEGER)",
            Dialect::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_their_dialect() {
        assert_eq!(
            Dialect::from_url("sqlite://data/petstore.db").unwrap(),
            Dialect::Sqlite
        );
        assert_eq!(
            Dialect::from_url("postgres://u@localhost/db").unwrap(),
            Dialect::Postgres
        );
        assert_eq!(
            Dialect::from_url("postgresql://localhost").unwrap(),
            Dialect::Postgres
        );
        for bad in ["mysql://x", "", "sqlite", "file:x.db"] {
            assert!(Dialect::from_url(bad).is_err(), "{bad}");
        }
    }
}
