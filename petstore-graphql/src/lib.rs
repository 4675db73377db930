#![doc = include_str!("../README.md")]

mod config;
mod error;
mod graphiql;
mod http;
mod limits;
mod schema;
mod types;
mod ws;

pub use config::GraphQlConfig;
pub use http::router;
pub use schema::{Context, Mutation, Query, Schema, Subscription, schema, sdl};

/// Measures `query` as the router does before running it (nesting, depth, complexity,
/// the introspection switch), with `max_depth`, `max_complexity` and `introspection`
/// as in [`GraphQlConfig`] and `variable` giving integer variables: `Ok` with the kind
/// of the selected operation (`query`, `mutation`, `subscription`; `None` when none
/// can be selected), `Err` with the error's `extensions.code`. For fuzzing; not a
/// stable API.
#[doc(hidden)]
pub fn __check_limits(
    query: &str,
    operation_name: Option<&str>,
    max_depth: usize,
    max_complexity: usize,
    introspection: bool,
    variable: &dyn Fn(&str) -> Option<i64>,
) -> Result<Option<&'static str>, &'static str> {
    let config = GraphQlConfig::default()
        .max_depth(max_depth)
        .max_complexity(max_complexity)
        .introspection(introspection);
    limits::Limits::new(&config)
        .check(query, operation_name, variable)
        .map(|kind| {
            kind.map(|k| match k {
                limits::OperationKind::Query => "query",
                limits::OperationKind::Mutation => "mutation",
                limits::OperationKind::Subscription => "subscription",
            })
        })
        .map_err(|rejection| rejection.code)
}
