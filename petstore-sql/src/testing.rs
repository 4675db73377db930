//! Databases of their own for tests and benchmarks on a shared PostgreSQL cluster
//! (feature `testing`): each test creates a new, empty database, so tests run in
//! parallel without seeing each other's rows.

use sqlx::Connection as _;

/// Creates a new, empty database named `<prefix>_<random>` on the cluster at `cluster`
/// (a `postgres://` URL whose user may create databases) and returns its URL.
pub async fn create_postgres_database(cluster: &str, prefix: &str) -> Result<String, sqlx::Error> {
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(cluster).await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await?;
    admin.close().await.ok();
    Ok(with_database(cluster, &name))
}

/// `url` with its database name replaced by `name` (the query string kept).
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let (scheme, rest) = base.split_once("://").unwrap_or(("postgres", base));
    let authority = rest.split('/').next().unwrap_or(rest);
    match query {
        Some(q) => format!("{scheme}://{authority}/{name}?{q}"),
        None => format!("{scheme}://{authority}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_replace_the_path() {
        assert_eq!(
            with_database("postgres://u@h:1/postgres", "db_x"),
            "postgres://u@h:1/db_x"
        );
        assert_eq!(
            with_database("postgres://u@h:1?sslmode=disable", "db_x"),
            "postgres://u@h:1/db_x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://u@h:1/postgres?sslmode=disable", "db_x"),
            "postgres://u@h:1/db_x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "t"), "postgres://h/t");
        assert_eq!(
            with_database("postgres://h?sslmode=disable", "t"),
            "postgres://h/t?sslmode=disable"
        );
    }
}
