//! petstore-sql against real databases: SQLite always, PostgreSQL when
//! `PETSTORE_TEST_DATABASE_URL` names a cluster (`scripts/start-postgres`).

mod behaviour;
mod support;
