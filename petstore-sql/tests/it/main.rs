//! petstore-sql against real databases: SQLite always, PostgreSQL when
//! `PETSTORE_TEST_DATABASE_URL` names a cluster (`scripts/start-postgres`).

mod behaviour;
mod concurrency;
mod connect;
mod durable;
mod leases;
mod listings;
mod log_property;
mod retention;
mod support;
mod webhooks;
